"""The loss-weighting methods against their papers' update rules, on a few steps of the tiny problem.

uw: the gradient of Kendall et al.'s Eq. 10 terms with respect to s_t; dwa: Eq. 2 of Liu et al. on
hand-set epoch losses; famo: the authors' algorithm written out here (their ``FAMO.get_weighted_loss``
/ ``update`` with torch's Adam) next to the method, step for step; rlw: seeded, reproducible draws.
Each also leaves a task without labels in the batch out of its update.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest
import torch

from benchmark.backbones import create_backbone, create_heads
from benchmark.tasks import collate, task_loss
from datasets.synthetic import SyntheticDb
from methods.base import StepContext
from methods.dwa import DynamicWeightAverage, dwa_weights
from methods.famo import EPS, FAMO
from methods.rlw import RandomLossWeighting
from methods.uw import UncertaintyWeighting
from methods.weighting_support import step_generator, step_seed
from tests.conftest import TINY_DB
from tests.methods.tiny_mtl import forward, tiny_batch, tiny_model, tiny_problem


def _constant_losses(values: dict[str, float]) -> dict[str, torch.Tensor]:
    return {t: torch.tensor(v) for t, v in values.items()}


# ----- uw ------------------------------------------------------------------------------------
@pytest.mark.parametrize("form, scale", [("classification", 1.0), ("regression", 0.5)])
def test_uw_gradient_and_fixed_point_follow_kendall_et_al(form, scale):
    problem = tiny_problem(2)
    method = UncertaintyWeighting(form=form)
    model = tiny_model(method, problem)
    _, ctx = forward(method, model, tiny_batch(problem), problem)
    values = {"classes": 2.0, "att0": 0.5}
    optimizer = torch.optim.SGD(method.param_groups(model)[-1]["params"], lr=0.1)
    s = {t: 0.0 for t in values}
    for _ in range(3):  # SGD on s_t: ∂/∂s [scale·exp(-s) L + s/2] = -scale·exp(-s) L + 1/2
        optimizer.zero_grad()
        out = method.losses(_constant_losses(values), ctx)
        torch.stack(list(out.values())).sum().backward()
        for i, task in enumerate(problem.task_names):
            expected = -scale * math.exp(-s[task]) * values[task] + 0.5
            assert float(method.log_variances[i].grad) == pytest.approx(expected, rel=1e-6)
            s[task] -= 0.1 * expected
        optimizer.step()
    for i, task in enumerate(problem.task_names):
        assert float(method.log_variances[i].detach()) == pytest.approx(s[task], rel=1e-6)
    for _ in range(3000):  # the fixed point: σ² = 2·scale·L (classification: σ² = L)
        optimizer.zero_grad()
        torch.stack(list(method.losses(_constant_losses(values), ctx).values())).sum().backward()
        optimizer.step()
    for task, variance in method.variances().items():
        assert variance == pytest.approx(2 * scale * values[task], rel=1e-3)


def test_uw_leaves_a_task_without_labels_alone():
    problem = tiny_problem(3)
    method = UncertaintyWeighting(log_variance_lr=0.5)
    model = tiny_model(method, problem)
    losses, ctx = forward(method, model, tiny_batch(problem, unannotated=("att0",)), problem)
    assert "uw/att0" not in losses and {"uw/classes", "uw/att1"} <= set(losses)
    torch.stack(list(losses.values())).sum().backward()
    grads = {t: p.grad for t, p in zip(method.tasks, method.log_variances)}
    assert grads["att0"] is None and grads["classes"] is not None
    assert method.param_groups(model)[-1]["lr"] == 0.5


# ----- dwa -----------------------------------------------------------------------------------
def test_dwa_weights_follow_eq_2_on_epoch_mean_losses():
    problem = tiny_problem(2)
    method = DynamicWeightAverage(temperature=2.0)
    model = tiny_model(method, problem)
    _, ctx = forward(method, model, tiny_batch(problem), problem)
    _, absent_ctx = forward(method, model, tiny_batch(problem, unannotated=("att0",)), problem)
    method.loss_sum.zero_(), method.loss_steps.zero_()  # forget the two forwards above
    epochs = [[(3.0, 1.0), (1.0, 1.0)], [(1.0, 0.8), (1.0, 1.0)], [(0.5, 0.5)]]  # (L_classes, L_att0) per step
    for epoch, steps in enumerate(epochs):
        for classes, att0 in steps:
            out = method.losses(_constant_losses({"classes": classes, "att0": att0}), ctx)
            if epoch < 2:
                assert [float(out["classes"]), float(out["att0"])] == pytest.approx([classes, att0])  # w = 1 in epochs 0, 1
        if epoch == 1:  # a step without att0 labels: its loss of 0 is not averaged in
            method.losses(_constant_losses({"classes": 1.0, "att0": 0.0}), absent_ctx)
        method.on_epoch_end(model, epoch)
        if epoch == 1:
            # L(0) = (2.0, 1.0), L(1) = (1.0, 0.9): r = (0.5, 0.9); w = 2·softmax(r / 2)
            e = [math.exp(0.5 / 2), math.exp(0.9 / 2)]
            expected = [2 * v / sum(e) for v in e]
            torch.testing.assert_close(method.weights, torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=1e-6)
            out = method.losses(_constant_losses({"classes": 1.0, "att0": 1.0}), ctx)
            assert float(out["classes"]) == pytest.approx(expected[0]) and float(out["att0"]) == pytest.approx(expected[1])
            method.loss_sum.zero_(), method.loss_steps.zero_()


def test_dwa_takes_a_ratio_of_one_for_a_task_without_epoch_mean():
    weights = dwa_weights(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]), torch.tensor([True, False]), 2.0)
    e = [math.exp(0.25), math.exp(0.5)]
    torch.testing.assert_close(weights, torch.tensor([2 * e[0] / sum(e), 2 * e[1] / sum(e)]))


# ----- famo ----------------------------------------------------------------------------------
class AuthorsFAMO:
    """The authors' FAMO (Cranial-XIX/FAMO, famo.py), written out: loss Σ z log D / c, then Adam on ∇_ξ zᵀδ."""

    def __init__(self, n_tasks: int, gamma: float, lr: float) -> None:
        self.w = torch.zeros(n_tasks, dtype=torch.float64, requires_grad=True)
        self.optimizer = torch.optim.Adam([self.w], lr=lr, weight_decay=gamma)
        self.previous: torch.Tensor | None = None

    def weighted_loss(self, losses: torch.Tensor) -> torch.Tensor:
        self.previous = losses.detach().double()
        z = torch.softmax(self.w, -1).detach()
        d = losses + EPS
        c = (z / d.detach()).sum()
        return (d.log() * z / c).sum()

    def update(self, current: torch.Tensor) -> None:
        delta = (self.previous + EPS).log() - (current.double() + EPS).log()
        with torch.enable_grad():
            grad = torch.autograd.grad(torch.softmax(self.w, -1), self.w, grad_outputs=delta)[0]
        self.optimizer.zero_grad()
        self.w.grad = grad
        self.optimizer.step()


def _task_losses(model, batch, problem):
    out = model(batch.inputs)
    return torch.stack([task_loss(problem.task(t), out.logits[t], batch.targets[t], batch.masks[t]) for t in problem.task_names])


def _double(batch):
    """``batch`` in float64: δ is a difference of nearly equal log-losses, which float32 rounding would dominate."""
    return dataclasses.replace(batch, inputs=batch.inputs.double(),
                               targets={t: v.double() if v.is_floating_point() else v for t, v in batch.targets.items()})


def test_famo_steps_like_the_authors_algorithm():
    problem, steps = tiny_problem(3), 4
    batches = [_double(tiny_batch(problem, seed=s)) for s in range(steps)]
    method = FAMO()
    model = tiny_model(method, problem).double()
    reference_model = tiny_model(FAMO(), problem).double()
    reference = AuthorsFAMO(3, gamma=0.001, lr=0.025)
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (model, reference_model)]
    for step, batch in enumerate(batches):
        losses, _ = forward(method, model, batch, problem, step=step)  # updates ξ from the previous step first
        optimizers[0].zero_grad()
        torch.stack(list(losses.values())).sum().backward()
        optimizers[0].step()
        optimizers[1].zero_grad()
        reference.weighted_loss(_task_losses(reference_model, batch, problem)).backward()
        optimizers[1].step()
        with torch.no_grad():
            reference.update(_task_losses(reference_model, batch, problem))
    method.on_epoch_end(model, 0)  # the last step's update
    torch.testing.assert_close(method.logits, reference.w.detach(), atol=1e-9, rtol=1e-7)
    assert method.logits.abs().max() > 1e-4, "the logits moved"
    for got, want in zip(model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-9)


def test_famo_sgd_is_algorithm_1_and_next_batch_uses_the_next_losses():
    problem = tiny_problem(2)
    method = FAMO(logit_optimizer="sgd", post_step_loss="next_batch", logit_lr=0.1, gamma=0.01)
    model = tiny_model(method, problem)
    forward(method, model, tiny_batch(problem, seed=0), problem)
    before = _task_losses(model, tiny_batch(problem, seed=0), problem).detach().double()
    after = _task_losses(model, tiny_batch(problem, seed=1), problem).detach().double()
    forward(method, model, tiny_batch(problem, seed=1), problem, step=1)
    delta = (before + EPS).log() - (after + EPS).log()
    z = torch.softmax(torch.zeros(2, dtype=torch.float64), 0)
    expected = -0.1 * (z * (delta - (z * delta).sum()) + 0.01 * 0.0)  # ξ_1 = ξ_0 − β(∇_ξ zᵀδ + γ ξ_0), ξ_0 = 0
    torch.testing.assert_close(method.logits, expected)


def test_famo_weights_and_update_skip_a_task_without_labels():
    problem = tiny_problem(3)
    method = FAMO()
    model = tiny_model(method, problem)
    batch = tiny_batch(problem, unannotated=("att0",))
    losses, ctx = forward(method, model, batch, problem)
    raw = _task_losses(model, batch, problem).detach().double()
    z = torch.softmax(torch.zeros(2, dtype=torch.float64), 0) / (raw[[0, 2]] + EPS)
    weights = {t: float(losses[t].detach()) / float(raw[i]) for i, t in enumerate(problem.task_names) if t != "att0"}
    assert weights == pytest.approx({"classes": float(z[0] / z.sum()), "att1": float(z[1] / z.sum())}, rel=1e-5)
    assert float(losses["att0"].detach()) == 0.0
    method.on_epoch_end(model, 0)  # the update: att0's logit and Adam state stay untouched
    assert method.logits[1] == 0 and method.adam_steps.tolist() == [1, 0, 1]


# ----- rlw -----------------------------------------------------------------------------------
def test_rlw_weights_are_a_seeded_softmax_of_normal_draws():
    problem = tiny_problem(3)
    method = RandomLossWeighting()
    tiny_model(method, problem, seed=7)  # build records the run's seed (torch.initial_seed)
    assert int(method.seed) == 7
    draws = torch.randn(3, generator=step_generator(7, 5), dtype=torch.float64)
    torch.testing.assert_close(method.weights([True] * 3, 5), torch.softmax(draws, 0))
    again = RandomLossWeighting()
    tiny_model(again, problem, seed=7)
    assert torch.equal(again.weights([True] * 3, 5), method.weights([True] * 3, 5))  # another process, a resume
    assert not torch.equal(method.weights([True] * 3, 6), method.weights([True] * 3, 5))
    assert step_seed(7, 5) != step_seed(8, 4)
    partial = method.weights([True, False, True], 5)
    assert partial[1] == 0 and float(partial.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(partial[[0, 2]], torch.softmax(draws[[0, 2]], 0))


def test_rlw_losses_use_the_steps_weights():
    problem = tiny_problem(2)
    method = RandomLossWeighting()
    model = tiny_model(method, problem)
    batch = tiny_batch(problem)
    losses, ctx = forward(method, model, batch, problem, step=3)
    raw = _task_losses(model, batch, problem)
    weights = method.weights([True, True], 3)
    for i, task in enumerate(problem.task_names):
        assert float(losses[task].detach()) == pytest.approx(float(weights[i] * raw[i].detach()), rel=1e-6)


def test_famo_post_step_forward_leaves_batchnorm_running_statistics_and_the_pending_graph_alone():
    db = SyntheticDb(**TINY_DB)
    problem = db.problem()
    method = FAMO()
    backbone, width = create_backbone("smallcnn")  # has BatchNorm
    model = method.build(backbone, create_heads(problem.tasks, width), problem)
    data = db.split("train", None, 16)
    batches = [collate([data[i] for i in range(8 * k, 8 * k + 8)]) for k in range(2)]
    forward(method, model, batches[0], problem)
    out = model(batches[1].inputs)  # step 1's forward: the running statistics move once
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    losses = {t: task_loss(problem.task(t), out.logits[t], batches[1].targets[t], batches[1].masks[t]) for t in out.logits}
    weighted = method.losses(losses, StepContext(model, batches[1], out, problem, 1, 0))  # step 0's extra forward
    assert stats and all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    torch.stack(list(weighted.values())).sum().backward()  # the pending graph is still valid
    assert method.adam_steps.tolist() == [1, 1]


@pytest.mark.parametrize("lr, refused", [(0.0, True), (-0.5, True), (1e-9, False), (0.5, False), (None, False)])
def test_uw_refuses_a_log_variance_lr_that_is_not_positive(lr, refused):
    if refused:
        with pytest.raises(ValueError, match=r"uw: log_variance_lr must be > 0"):
            UncertaintyWeighting(log_variance_lr=lr)
    else:
        assert UncertaintyWeighting(log_variance_lr=lr).log_variance_lr == lr


# ----- dwa: defaults, refused values, epoch means, which ratios are known, the log ----------
def _dwa(n_tasks: int = 2, absent: tuple[str, ...] = ("classes", "att0"), **options):
    """A built ``dwa``, its model, and a step context per batch kind: all tasks annotated (None) or one of ``absent``
    without labels."""
    problem = tiny_problem(n_tasks)
    method = DynamicWeightAverage(**options)
    model = tiny_model(method, problem)
    contexts = {None: forward(method, model, tiny_batch(problem), problem)[1]}
    for task in absent:
        contexts[task] = forward(method, model, tiny_batch(problem, unannotated=(task,)), problem)[1]
    method.loss_sum.zero_(), method.loss_steps.zero_()  # forget the forwards above
    return method, model, contexts


def _dwa_epoch(method, model, contexts, epoch: int, steps) -> None:
    """One epoch of ``steps``, each (the task the batch leaves unannotated or None, {task: loss}), then its end."""
    for absent, values in steps:
        method.losses(_constant_losses(values), contexts[absent])
    method.on_epoch_end(model, epoch)


def _eq_2(ratios: list[float], temperature: float) -> torch.Tensor:
    """w_t = T·exp(r_t / τ) / Σ_i exp(r_i / τ), written out."""
    e = [math.exp(r / temperature) for r in ratios]
    return torch.tensor([len(e) * v / sum(e) for v in e], dtype=torch.float64)


def test_dwa_default_temperature_is_the_papers_2():
    """Liu et al. set τ = 2; with r = (0.5, 1.5): w = 2·softmax(r / 2) = (2 / (1 + e^0.5), 2·e^0.5 / (1 + e^0.5))."""
    method, model, contexts = _dwa()
    assert method.temperature == 2.0 and method.hparams() == {"temperature": 2.0}
    _dwa_epoch(method, model, contexts, 0, [(None, {"classes": 2.0, "att0": 1.0})])
    _dwa_epoch(method, model, contexts, 1, [(None, {"classes": 1.0, "att0": 1.5})])
    e = math.exp(0.5)
    torch.testing.assert_close(method.weights, torch.tensor([2 / (1 + e), 2 * e / (1 + e)], dtype=torch.float64))
    assert method.weights.tolist() == pytest.approx([0.7550813, 1.2449187], abs=1e-7)


@pytest.mark.parametrize("temperature, refused", [(0.0, True), (-0.5, True), (1e-9, False), (0.5, False)])
def test_dwa_refuses_a_temperature_that_is_not_positive(temperature, refused):
    if refused:
        with pytest.raises(ValueError, match=rf"dwa: temperature must be > 0, got {temperature}"):
            DynamicWeightAverage(temperature=temperature)
    else:
        assert DynamicWeightAverage(temperature=temperature).temperature == temperature


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_dwa_weights_are_exactly_one_in_the_first_two_epochs(n_tasks):
    """Eq. 2 starts at epoch index 2: after epoch 0 only one epoch mean exists and w stays 1, exactly."""
    method, model, contexts = _dwa(n_tasks, absent=(f"att{n_tasks - 2}",))
    names = list(method.tasks)
    values = {t: 0.5 + 0.25 * i for i, t in enumerate(names)}
    _dwa_epoch(method, model, contexts, 0, [(None, values), (names[-1], values | {names[-1]: 0.0})])
    assert method.weights.tolist() == [1.0] * n_tasks
    losses = {t: torch.tensor(v, dtype=torch.float64) for t, v in values.items()}
    out = method.losses(losses, contexts[None])
    assert all(float(out[t]) == values[t] for t in names)  # w_t·L_t = L_t in float64 too


def test_dwa_epoch_means_count_only_the_annotated_steps_and_one_step_counts():
    """L_t(e) = (sum of t's losses) / (t's annotated steps), 1 step as well as 2; a step without t's labels is left out."""
    method, model, contexts = _dwa()
    # epoch 0: classes (3 + 1) / 2 = 2 over two steps; att0 1 / 1 = 1 over its one annotated step (the 0 is not counted)
    _dwa_epoch(method, model, contexts, 0, [(None, {"classes": 3.0, "att0": 1.0}),
                                            ("att0", {"classes": 1.0, "att0": 0.0})])
    assert method.epoch_means[1].tolist() == [2.0, 1.0] and method.has_mean[1].tolist() == [True, True]
    assert method.loss_sum.tolist() == [0.0, 0.0] and method.loss_steps.tolist() == [0.0, 0.0]
    # epoch 1: classes 1.5 / 1 over one step; att0 (0.8 + 0.6) / 2 = 0.7 over two
    _dwa_epoch(method, model, contexts, 1, [("att0", {"classes": 1.5, "att0": 0.0}),
                                            ("classes", {"classes": 0.0, "att0": 0.8}),
                                            ("classes", {"classes": 0.0, "att0": 0.6})])
    torch.testing.assert_close(method.epoch_means, torch.tensor([[2.0, 1.0], [1.5, 0.7]], dtype=torch.float64))
    torch.testing.assert_close(method.weights, _eq_2([1.5 / 2.0, 0.7 / 1.0], 2.0))  # r = (0.75, 0.7)


def test_dwa_a_task_with_a_mean_in_only_one_of_the_two_epochs_gets_a_ratio_of_one():
    """att0 is annotated in epoch 0 only, att1 in epoch 1 only: neither has both L(e-2) and L(e-1), so r = 1 for both
    (not att0's 0 / 1 = 0 from the 0 stored for an epoch without its labels)."""
    method, model, contexts = _dwa(3, absent=("att0", "att1"))
    _dwa_epoch(method, model, contexts, 0, [("att1", {"classes": 2.0, "att0": 1.0, "att1": 0.0})])
    _dwa_epoch(method, model, contexts, 1, [("att0", {"classes": 1.0, "att0": 0.0, "att1": 0.5})])
    assert method.has_mean.tolist() == [[True, True, False], [True, False, True]]
    assert method.epoch_means.tolist() == [[2.0, 1.0, 0.0], [1.0, 0.0, 0.5]]
    torch.testing.assert_close(method.weights, _eq_2([0.5, 1.0, 1.0], 2.0))


def test_dwa_a_previous_epoch_mean_of_exactly_zero_gives_a_ratio_of_one():
    """att0 was annotated in epoch 0 with a loss of exactly 0: L(e-1) / 0 is no ratio, r = 1 (not inf, not NaN)."""
    method, model, contexts = _dwa()
    _dwa_epoch(method, model, contexts, 0, [(None, {"classes": 2.0, "att0": 0.0})])
    _dwa_epoch(method, model, contexts, 1, [(None, {"classes": 1.0, "att0": 0.6})])
    assert method.has_mean.tolist() == [[True, True], [True, True]]
    torch.testing.assert_close(method.weights, _eq_2([0.5, 1.0], 2.0))


def test_dwa_logs_the_next_epochs_weights_to_four_decimals(caplog):
    """At the end of epoch index e the weights of epoch e + 1 are set and logged: 1 after epoch 0; after epoch 1,
    r = (0.5, 1.5) and τ = 2 give (2 / (1 + e^0.5), 2·e^0.5 / (1 + e^0.5)) = (0.755081..., 1.244918...)."""
    method, model, contexts = _dwa()
    with caplog.at_level(logging.INFO, logger="methods.dwa"):
        _dwa_epoch(method, model, contexts, 0, [(None, {"classes": 2.0, "att0": 1.0})])
        _dwa_epoch(method, model, contexts, 1, [(None, {"classes": 1.0, "att0": 1.5})])
    assert [r.getMessage() for r in caplog.records if r.name == "methods.dwa"] == [
        "dwa: task weights for epoch 1: {'classes': 1.0, 'att0': 1.0}",
        "dwa: task weights for epoch 2: {'classes': 0.7551, 'att0': 1.2449}",
    ]


# ----- rlw: the run's seed, a task missing from the losses -----------------------------------
@pytest.mark.parametrize("run_seed", [12345, 2**62 + 7, 2**63 + 5])
def test_rlw_takes_the_runs_seed_as_torch_gives_it_folded_into_int64(run_seed):
    """build() stores torch.initial_seed() (what train() seeded) modulo 2**63, the int64 buffer's range: a seed
    above 2**63 (torch takes any uint64) is folded, one below kept as it is; the draws come from that seed."""
    method = RandomLossWeighting()
    with torch.random.fork_rng(devices=[]):
        tiny_model(method, tiny_problem(2), seed=run_seed)  # seeds torch with run_seed, then builds
    assert int(method.seed) == run_seed % 2**63
    draws = torch.randn(2, generator=step_generator(run_seed % 2**63, 4), dtype=torch.float64)
    torch.testing.assert_close(method.weights([True, True], 4), torch.softmax(draws, 0))


def test_rlw_a_task_missing_from_the_losses_is_weighted_like_a_task_without_labels():
    """att0 has no loss at all (not in the dict): λ_att0 = 0 and the softmax runs over classes and att1, whose weights
    sum to 1, as when att0 is in the dict but unannotated in the batch."""
    problem = tiny_problem(3)
    method = RandomLossWeighting()
    model = tiny_model(method, problem, seed=3)
    _, ctx = forward(method, model, tiny_batch(problem), problem, step=2)
    _, absent_ctx = forward(method, model, tiny_batch(problem, unannotated=("att0",)), problem, step=2)
    draws = torch.randn(3, generator=step_generator(3, 2), dtype=torch.float64)
    expected = torch.softmax(draws[[0, 2]], 0)  # (λ_classes, λ_att1)
    out = method.losses(_constant_losses({"classes": 1.0, "att1": 1.0}), ctx)
    assert set(out) == {"classes", "att1"}
    assert [float(out["classes"]), float(out["att1"])] == pytest.approx(expected.tolist(), rel=1e-6)
    unannotated = method.losses(_constant_losses({"classes": 1.0, "att0": 0.0, "att1": 1.0}), absent_ctx)
    assert [float(unannotated["classes"]), float(unannotated["att1"])] == pytest.approx(expected.tolist(), rel=1e-6)
    assert float(unannotated["att0"]) == 0.0
