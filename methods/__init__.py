"""Multi-task strategies, one per module, each a subclass of :class:`methods.base.Method`."""

from methods.base import (METHODS, Dependency, GradientRequest, LinkedRun, Method, ModelOutput, MultiTaskModel,
                          StepContext, TaskGradients, Weighting)
from methods import no_coupling, single_task  # noqa: F401  (registers the built-in methods)
from methods import dm_only, dmsca, sca_only  # noqa: F401
from methods import student_teacher  # noqa: F401
from methods import gradnorm, mgda_ub  # noqa: F401
from methods import adashare, adashare_search, task_routing  # noqa: F401
from methods import aligned_mtl, cagrad, dualproj, imtl_g, mgda, nash_mtl, pcgrad, upgrad  # noqa: F401  (TorchJD's weightings)
from methods import dwa, famo, rlw, uw  # noqa: F401  (loss weighting)

__all__ = ["METHODS", "Dependency", "GradientRequest", "LinkedRun", "Method", "ModelOutput", "MultiTaskModel",
           "StepContext", "TaskGradients", "Weighting"]
