"""A weighting at the shared representation on a per-task-path network is refused before anything is stored."""

from __future__ import annotations

import pytest

from benchmark.runner import RunRequest, resolve_configs
from methods import METHODS, GradientRequest, TaskGradients
from methods.mgda_ub import MgdaUB
from methods.task_routing import TaskRouting


class RoutedMgda(TaskRouting):
    """Task Routing's per-task passes with MGDA-UB's weighting at z: there is no z every head reads."""

    name = "routed_mgda"

    def gradient_request(self) -> GradientRequest:
        return GradientRequest("representation")

    def weighting(self, gradients: TaskGradients):
        return MgdaUB().weighting(gradients)


class RoutedParameters(RoutedMgda):
    """The same weighting on the shared parameters: every task's pass uses them, so this is served."""

    def gradient_request(self) -> GradientRequest:
        return GradientRequest("shared_parameters")


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(METHODS._classes, "routed_mgda", RoutedMgda)  # registered for this test only
    monkeypatch.setitem(METHODS._classes, "routed_params", RoutedParameters)


def test_representation_weighting_on_a_per_task_path_network_is_refused_at_resolve(registered):
    with pytest.raises(ValueError, match="has no z"):
        resolve_configs(RunRequest(method="routed_mgda", db="synthetic", backbone="resnet18"))
    resolve_configs(RunRequest(method="routed_params", db="synthetic", backbone="resnet18"))


@pytest.mark.parametrize("name", METHODS.names())
def test_every_registered_method_declares_consistent_capabilities(name):
    method = METHODS.get(name)()
    method.check_capabilities()
    request = method.gradient_request()
    assert request is None or request.wrt in ("representation", "shared_layer", "shared_parameters")
