"""AdaShare: gates on timm residual blocks, schedules, the policy losses, the weight/policy split, linked runs,
and the run ids of its two methods (``adashare_search``, ``adashare``), which the split into two kept."""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import math
import textwrap

import pytest
import torch
from torch import nn

from benchmark.backbones import create_backbone, create_heads
from benchmark.linked import dependency_configs, model_path
from benchmark.runner import RunRequest, execute, resolve_configs
from benchmark.tasks import Batch, collate, task_loss
from methods import METHODS, LinkedRun, StepContext
from methods.adashare import RETRAIN_ONLY, AdaShare
from methods.adashare_search import PREFIX, AdaShareSearch
from methods.adashare_net import (Schedule, deterministic_policy, install_gates,
                                  policy_samples, residual_blocks, sampled_policy, sharing_loss, sparsity_loss)
from reports.compare import later_stages_only
from results import ResultsStore
from tests.conftest import TINY_DB, tiny_config

CPU = torch.device("cpu")


def _build(method: AdaShare | AdaShareSearch, tiny_db, backbone: str = "resnet18", seed: int = 0):
    torch.manual_seed(seed)
    problem = tiny_db.problem()
    net, width = create_backbone(backbone)
    return method.build(net, create_heads(problem.tasks, width), problem), problem


def _block_runs(blocks: list[nn.Module]) -> list[int]:
    """Forward-hook counters on each residual block's first conv: how often each block really ran."""
    counts = [0] * len(blocks)
    for i, block in enumerate(blocks):
        block.conv1.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


def _executed_per_task(model, x) -> list[list[bool]]:
    counts = _block_runs(model.blocks)
    rows = []
    for task in model.tasks:
        before = list(counts)
        model(x, tasks=[task])
        rows.append([after > b for after, b in zip(counts, before)])
    return rows


def test_residual_blocks_are_found_from_the_model():
    assert len(residual_blocks(create_backbone("resnet18")[0])) == 8  # 4 stages x 2 BasicBlocks
    assert len(residual_blocks(create_backbone("resnet26")[0])) == 8  # 4 stages x 2 Bottlenecks
    with pytest.raises(ValueError, match="no timm ResNet block.*resnet18"):
        residual_blocks(create_backbone("smallcnn")[0])


def test_gates_keep_the_backbone_state_dict_keys(tiny_db):
    net, _ = create_backbone("resnet18")
    keys = set(net.state_dict())
    model, _ = _build(AdaShareSearch(), tiny_db)
    assert set(model.backbone.state_dict()) == keys


def test_a_skipped_block_is_the_identity_and_is_not_run():
    net, _ = create_backbone("resnet18")
    blocks = residual_blocks(net)
    gates = install_gates(blocks)
    plain, down = blocks[1], blocks[2]  # layer1.1 keeps the shape; layer2.0 halves it through its downsample
    assert plain.downsample is None and down.downsample is not None
    counts = _block_runs(blocks)
    net.eval()
    x = torch.randn(2, 64, 8, 8)
    gates[1].value = False
    assert torch.equal(plain(x), x) and counts[1] == 0
    gates[2].value = False
    assert torch.equal(down(x), down.downsample(x)) and counts[2] == 0


def test_a_soft_gate_mixes_block_and_shortcut():
    net, _ = create_backbone("resnet18")
    blocks = residual_blocks(net)
    gates = install_gates(blocks)
    net.eval()
    x = torch.randn(2, 64, 8, 8)
    down = blocks[2]
    executed, shortcut = down(x), down.downsample(x)
    gates[2].value = torch.tensor([0.3, 0.7])
    torch.testing.assert_close(down(x), 0.3 * executed + 0.7 * shortcut)


def test_schedule_temperature_and_curriculum():
    schedule = Schedule(warmup_epochs=2, curriculum_speed=3, temperature=5.0, temperature_decay=0.965)
    assert [schedule.open_blocks(e, 4) for e in range(16)] == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4]
    for epoch in range(2, 12):
        assert math.isclose(schedule.temperature_at(epoch), 5.0 * 0.965 ** (epoch - 2))
    assert schedule.temperature_at(0) == 5.0


def test_curriculum_opens_blocks_from_the_last_one(tiny_db):
    model, _ = _build(AdaShareSearch(warmup_epochs=1, curriculum_speed=1), tiny_db)
    model.train()
    assert model.gate_values(0) == [None] * 8  # warm-up: every block executed, no policy
    model.epochs_done.fill_(3)  # policy epoch 2: the last 3 blocks follow the policy
    values = model.gate_values(1)
    assert values[:5] == [None] * 5 and all(isinstance(v, torch.Tensor) and v.shape == (2,) for v in values[5:])
    assert all(math.isclose(float(v.detach().sum()), 1.0, rel_tol=1e-6) for v in values[5:])


def test_eval_policy_is_deterministic_argmax_and_training_samples(tiny_db):
    model, _ = _build(AdaShareSearch(warmup_epochs=0, curriculum_speed=1), tiny_db)
    model.epochs_done.fill_(20)  # every block open
    with torch.no_grad():
        model.policy_logits.copy_(torch.randn(2, 8, 2, generator=torch.Generator().manual_seed(1)))
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    first, second = model(x), model(x)
    assert all(torch.equal(first.logits[t], second.logits[t]) for t in model.tasks)
    expected = deterministic_policy(model.policy_logits.detach(), 8).tolist()
    assert _executed_per_task(model, x) == expected and not all(all(row) for row in expected)
    model.train()
    a, b = model(x).logits["classes"], model(x).logits["classes"]
    assert not torch.equal(a, b)  # a fresh Gumbel sample each pass


def test_sparsity_and_sharing_losses_golden():
    logits = torch.full((2, 4, 2), 0.5)
    assert math.isclose(float(sparsity_loss(logits, 4)), 2 * math.log(2), rel_tol=1e-6)
    assert float(sharing_loss(logits)) == 0.0
    logits[0, 0, 0] = 1.5  # the tasks differ by 1 in the execute logit of block 1 only
    assert math.isclose(float(sharing_loss(logits, "increasing")), 1 / 4)
    assert math.isclose(float(sharing_loss(logits, "decreasing")), 4 / 4)
    skip_favoured = torch.tensor([[[0.0, 2.0]]])
    assert float(sparsity_loss(skip_favoured, 1)) < math.log(2)  # lower when skipping is likelier


def test_policy_split_is_fixed_seeded_and_balanced():
    index = torch.arange(20000)
    split = policy_samples(index, seed=0, fraction=0.5)
    assert torch.equal(split, policy_samples(index.flip(0), 0, 0.5).flip(0))  # per sample, whatever the batch
    assert abs(float(split.float().mean()) - 0.5) < 0.02
    assert abs(float(policy_samples(index, 0, 0.2).float().mean()) - 0.2) < 0.02
    assert not torch.equal(split, policy_samples(index, seed=1, fraction=0.5))


def _policy_step(tiny_db, targets_changed_on: str | None = None):
    """One policy-epoch step on a fixed batch; optionally with the labels of one side of the split replaced."""
    method = AdaShareSearch(warmup_epochs=0)
    model, problem = _build(method, tiny_db)
    model.train()
    train_set = tiny_db.split("train", None, 16)
    batch = collate([train_set[i] for i in range(24)])
    side = policy_samples(batch.index, method.split_seed, method.policy_fraction)
    if targets_changed_on is not None:
        change = side if targets_changed_on == "policy" else ~side
        target = batch.targets["classes"].clone()
        target[change & (target >= 0)] = (target[change & (target >= 0)] + 1) % problem.task("classes").num_outputs
        batch = Batch(batch.inputs, {**batch.targets, "classes": target}, batch.masks, batch.index)
    torch.manual_seed(5)  # the same Gumbel sample in every call
    out = model(batch.inputs)
    plain = {t: task_loss(problem.task(t), out.logits[t], batch.targets[t], batch.masks[t]) for t in out.logits}
    ctx = StepContext(model, batch, out, problem, 0, 0)
    return method, model, method.losses(plain, ctx), ctx


def test_weights_learn_from_their_samples_and_the_policy_from_the_others(tiny_db):
    method, model, losses, ctx = _policy_step(tiny_db)
    assert set(losses) == {"classes", "attributes", PREFIX + "classes", PREFIX + "attributes", "sparsity", "sharing"}
    logits = model.policy_logits
    weights = [p for p in model.parameters() if p is not logits]
    weight_total = losses["classes"] + losses["attributes"]
    policy_total = sum(v for k, v in losses.items() if k not in model.tasks)
    expected_w = torch.autograd.grad(weight_total, weights, retain_graph=True, allow_unused=True)
    expected_p = torch.autograd.grad(policy_total, logits, retain_graph=True)[0]
    method.backward(losses, ctx)
    torch.testing.assert_close(logits.grad, expected_p)
    for param, grad in zip(weights, expected_w):
        assert (param.grad is None) == (grad is None)
        if grad is not None:
            torch.testing.assert_close(param.grad, grad)
    # each side's terms do not see the other side's labels
    _, _, policy_changed, _ = _policy_step(tiny_db, "policy")
    _, _, weight_changed, _ = _policy_step(tiny_db, "weights")
    assert torch.equal(policy_changed["classes"], losses["classes"]) and policy_changed[PREFIX + "classes"] != losses[PREFIX + "classes"]
    assert torch.equal(weight_changed[PREFIX + "classes"], losses[PREFIX + "classes"]) and weight_changed["classes"] != losses["classes"]


def test_warmup_trains_the_weights_on_every_sample_and_leaves_the_policy(tiny_db):
    method = AdaShareSearch(warmup_epochs=1)
    model, problem = _build(method, tiny_db)
    groups = method.param_groups(model)
    assert groups[1] == {"params": [model.policy_logits], "lr": 0.01, "weight_decay": 5e-4}
    task_losses = {"classes": model.policy_logits.sum() * 0.0}
    assert method.losses(task_losses, StepContext(model, None, None, problem, 0, 0)) is task_losses  # type: ignore[arg-type]
    method.on_epoch_end(model, 0)
    assert int(method.learned_blocks) == 0 and int(model.epochs_done) == 1
    method.on_epoch_end(model, 1)
    assert int(method.learned_blocks) == 1 and torch.equal(method.learned_logits, model.policy_logits.detach())


def _search_with(logits: torch.Tensor, open_blocks: int) -> LinkedRun:
    search = AdaShareSearch()
    search.register_buffer("learned_logits", logits)
    search.register_buffer("learned_blocks", torch.tensor(open_blocks))
    return LinkedRun("policy_run", "search-run", {}, search, None)  # type: ignore[arg-type]


def test_the_retraining_runs_exactly_the_attached_policy(tiny_db):
    logits = torch.randn(2, 8, 2, generator=torch.Generator().manual_seed(3))
    method = AdaShare()
    method.attach("policy_run", _search_with(logits, 6))
    model, _ = _build(method, tiny_db)
    expected = deterministic_policy(logits, 6)
    assert expected[:, :2].all() and not expected.all()  # blocks the curriculum never opened are executed
    assert torch.equal(model.policy, expected.to(torch.int8))
    model.eval()
    assert _executed_per_task(model, torch.randn(2, 3, 32, 32)) == expected.tolist()
    clone = copy.deepcopy(model)  # the loop keeps deep copies of state; the copy routes on its own gates
    assert _executed_per_task(clone, torch.randn(2, 3, 32, 32)) == expected.tolist()


def test_sampled_retrain_policy_is_seeded():
    logits = torch.zeros(2, 8, 2)
    logits[..., 0] = torch.linspace(-3, 3, 8)
    assert torch.equal(sampled_policy(logits, 8, seed=4), sampled_policy(logits, 8, seed=4))
    decided = torch.zeros(2, 8, 2)
    decided[0, :, 0], decided[1, :, 1] = 30.0, 30.0
    assert torch.equal(sampled_policy(decided, 8, seed=4), deterministic_policy(decided, 8))


def test_attach_refusals_and_a_retraining_without_policy(tiny_db):
    with pytest.raises(ValueError, match="learned no policy"):
        AdaShare().attach("policy_run", _search_with(torch.zeros(2, 8, 2), 0))
    with pytest.raises(ValueError, match="takes only role 'policy_run'"):
        AdaShare().attach("teacher:classes", _search_with(torch.zeros(2, 8, 2), 8))
    model, _ = _build(AdaShare(), tiny_db)
    with pytest.raises(RuntimeError, match="has no policy.*python -m benchmark run --method adashare"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="takes only role 'policy_run' with an adashare policy-search run"):
        AdaShare().attach("policy_run", LinkedRun("policy_run", "retrain-run", {}, AdaShare(), None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="phase must be"):
        AdaShare(phase="retrain_now")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retrain_policy must be.*curriculum_speed must be"):
        AdaShare(retrain_policy="mode", curriculum_speed=0)  # type: ignore[arg-type]  # the search's options too
    with pytest.raises(ValueError, match="retrain_policy must be"):
        AdaShare(phase="search", retrain_policy="mode")  # type: ignore[arg-type]


# ----- the two methods and the run ids they keep ------------------------------------------------
#: Run ids of adashare retrainings and of the policy searches they link, recorded before the one class
#: that played both (through ``phase``) was split in two: stored runs and experiment files must keep them.
GOLDEN_IDS = {
    "defaults": (dict(), "3bd19fabba82787d", "398e382baba9fd21"),
    "tiny db, sparse search": (dict(db_set=[f"{k}={v}" for k, v in TINY_DB.items()],
                                    method_set=["warmup_epochs=0", "curriculum_speed=1", "sparsity_weight=50"]),
                               "586b760750e7564b", "00cced85da882a0c"),
    "sampled policy": (dict(backbone="resnet50", epochs=3, seed=2,
                            method_set=["retrain_policy=sample", "sample_seed=3", "hard_sampling=true"]),
                       "a548e24638609b7c", "0f726a4674bf20ae"),
}


@pytest.mark.parametrize("case", GOLDEN_IDS)
def test_run_ids_of_the_retraining_and_its_search_are_the_ones_stored_before_the_split(case):
    overrides, retrain_id, search_id = GOLDEN_IDS[case]
    request = RunRequest(**{**dict(method="adashare", db="synthetic", backbone="resnet18", epochs=2), **overrides})
    db, [cfg] = resolve_configs(request)
    [(role, search)] = dependency_configs(cfg, db.problem()).items()
    assert (cfg.run_id, role, search.run_id) == (retrain_id, "policy_run", search_id)
    # the search keeps its stored name (module docstring of methods/adashare.py) ...
    assert search.method == "adashare" and search.method_options["phase"] == "search"
    assert {k: search.method_options[k] for k in RETRAIN_ONLY[1:]} == {"retrain_policy": "argmax", "sample_seed": 0}
    # ... which the command line gives too, and which rebuilds as the search method
    search_sets = [s for s in request.method_set if s.partition("=")[0] not in RETRAIN_ONLY]
    _, [direct] = resolve_configs(dataclasses.replace(request, method_set=[*search_sets, "phase=search"]), db)
    assert direct.run_id == search_id
    # ... and so does asking for the search by its own name (Method.stored_as): one search, one id
    _, [by_name] = resolve_configs(dataclasses.replace(request, method="adashare_search", method_set=search_sets), db)
    assert (by_name.method, by_name.run_id) == ("adashare", search_id)
    rebuilt = METHODS.get(search.method)(**search.method_options)
    assert type(rebuilt) is AdaShareSearch and type(METHODS.get(cfg.method)(**cfg.method_options)) is AdaShare
    assert rebuilt.hparams() == search.method_options  # what it was stored with, as the contract asks of hparams()
    assert AdaShareSearch(**{k: v for k, v in search.method_options.items() if k not in RETRAIN_ONLY}).hparams() == \
        {k: v for k, v in search.method_options.items() if k not in RETRAIN_ONLY}


def test_the_two_methods_are_registered_and_share_the_search_options():
    assert METHODS.get("adashare") is AdaShare and METHODS.get("adashare_search") is AdaShareSearch
    search = {n: p.default for n, p in AdaShareSearch.hyperparameters().items()}
    retrain = {n: p.default for n, p in AdaShare.hyperparameters().items()}
    # one set of search options and defaults: a default changed in one class only would change which search is linked
    assert {k: v for k, v in retrain.items() if k not in RETRAIN_ONLY} == search
    assert AdaShare.supported_backbones == AdaShareSearch.supported_backbones


def test_no_hook_asks_which_network_or_phase_it_has():
    for cls in (AdaShare, AdaShareSearch):
        for hook in ("build", "losses", "backward", "param_groups", "on_epoch_end"):
            if hook not in vars(cls):
                continue  # the default
            tree = ast.parse(textwrap.dedent(inspect.getsource(vars(cls)[hook])))
            asks = [n for n in ast.walk(tree) if (isinstance(n, ast.Call) and getattr(n.func, "id", "") == "isinstance")
                    or (isinstance(n, ast.Attribute) and n.attr == "phase")]
            assert not asks, f"{cls.__name__}.{hook} dispatches on a type or a phase"


def test_the_retraining_depends_on_one_search_whatever_its_retrain_options(tiny_db):
    problem = tiny_db.problem()
    a = tiny_config("adashare", AdaShare().hparams(), backbone="resnet18")
    b = tiny_config("adashare", {**AdaShare().hparams(), "retrain_policy": "sample", "sample_seed": 3}, backbone="resnet18")
    [(role, search_a)], [(_, search_b)] = dependency_configs(a, problem).items(), dependency_configs(b, problem).items()
    assert role == "policy_run" and search_a.run_id == search_b.run_id and search_a.method_options["phase"] == "search"
    assert dependency_configs(search_a, problem) == {}
    c = tiny_config("adashare", {**AdaShare().hparams(), "sparsity_weight": 0.5}, backbone="resnet18")
    assert dependency_configs(c, problem)["policy_run"].run_id != search_a.run_id


def test_runner_stores_the_search_and_retrains_with_its_policy(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    request = RunRequest(method="adashare", db="synthetic", backbone="resnet18", epochs=2, db_set=[f"{k}={v}" for k, v in TINY_DB.items()],
                         method_set=["warmup_epochs=0", "curriculum_speed=1", "sparsity_weight=50"])
    db, [cfg] = resolve_configs(request)
    retrain = execute(cfg, db, store, CPU, progress=False)
    [search] = [r for r in store.runs(method="adashare") if r.run_id != retrain.run_id]
    assert retrain.status == search.status == "completed" and retrain.links["policy_run"]["run_id"] == search.run_id
    assert search.config["method_options"]["phase"] == "search"
    saved_search = torch.load(model_path(tmp_path, search.run_id), weights_only=True)
    saved_retrain = torch.load(model_path(tmp_path, retrain.run_id), weights_only=True)
    learned = saved_search["method"]["learned_logits"]
    assert int(saved_search["method"]["learned_blocks"]) == 2
    expected = deterministic_policy(learned, 2)
    assert not expected.all()  # the strong sparsity weight made the search skip blocks: the check is not vacuous
    assert torch.equal(saved_retrain["model"]["policy"], expected.to(torch.int8))
    assert [r.run_id for r in later_stages_only(store.runs(method="adashare"))] == [retrain.run_id]
