"""Time mtlbench's gradient and loss weightings against TorchJD's own step on the same model, batch and optimizer.

A script, not a test: timings depend on the machine. For each TorchJD-backed method (``upgrad``,
``pcgrad``, ``cagrad``, ``nash_mtl``, ``imtl_g``, ``aligned_mtl``, ``dualproj``, ``mgda``) it times
three training steps, each on its own copy of one network (same backbone, heads and initial weights,
Adam at lr 1e-3, fp32, one process), and ``no_coupling`` as the common baseline:

- **mtlbench, shared_parameters**: the training loop's own step (:func:`benchmark.train.train_step`,
  through ``step_time.py``) with ``gradients=shared_parameters``: the Jacobian of the task losses with
  respect to every backbone parameter, TorchJD's own form.
- **mtlbench, representation**: the same with the default ``gradients=representation`` (g_t at z, one
  backbone backward).
- **TorchJD**: TorchJD 0.18's native step for the same aggregator and hyperparameters: forward, task
  losses, ``torchjd.autojac.mtl_backward(losses, features=z, tasks_params=heads, shared_params=backbone)``,
  ``jac_to_grad(backbone, aggregator)``, ``optimizer.step()``.
- **no_coupling**: the training loop's step of summed losses.

For each loss weighting that TorchJD also implements, as a scalarizer (``uw``, ``dwa``, ``rlw``, ``famo``:
``torchjd.scalarization`` ``UW``, ``DWA``, ``Random``, ``FAMO``), it times two, in a second table:

- **mtlbench**: the training loop's step (``uw`` with ``form=regression``, TorchJD's form: ½e^{-s}L + ½s;
  the default ``classification`` form costs the same);
- **TorchJD**: forward, task losses, ``scalarizer(losses).backward()``, ``optimizer.step()`` (the
  scalarizer's parameters in the optimizer, as TorchJD's ``UW`` asks), and for ``FAMO`` the losses
  recomputed on the same batch without gradient and ``scalarizer.update(...)``: the same extra forward as
  mtlbench's ``famo`` (``post_step_loss=same_batch``) makes at the start of the next step.

The batch is one fixed batch of the synthetic db in which every image carries both tasks' labels
(``overlap=1``, ``ratio=1:1``): TorchJD's step cannot mask missing labels, so this is the case in which
both compute the same losses. Every variant first takes ``--warmup`` untimed steps; then the ``--steps``
timed steps are split into ``--rounds`` turns, each turn running its share of steps for every variant in
turn (as ``python -m benchmark bench`` does), so a change of the machine's load hits every variant alike.

    python benchmarks/torchjd_cost.py --backbone smallcnn --batch-size 32 --image-size 64 --steps 20
    python benchmarks/torchjd_cost.py --backbone resnet18 --methods upgrad mgda nash_mtl --check

How to read it: every figure is the median wall time of one step in ms. ``sp / TorchJD`` is mtlbench's
``shared_parameters`` step over TorchJD's native step for the same aggregator (``mtlbench / TorchJD`` in
the loss weightings' table): at most about 1 means mtlbench costs no more than TorchJD for the same
computation. The ``x no_coupling`` columns are cost ratios to the baseline's step (above 1: slower than
summed losses), the figures of the cost column of docs/methods.md (mtlbench's default ``representation``
form). Run it on an idle machine.

``--check`` first verifies, for each method, that one step of mtlbench (``shared_parameters``) and one
TorchJD step from identical initial weights give the backbone the same gradient and the same parameter
update (to 5e-5 of the largest entry: float32 sums in another order); the heads differ by design
(mtlbench weighs them, TorchJD's ``mtl_backward`` gives each head its own gradient). A loss weighting's
check compares the step of the same weighted sum; ``rlw``'s is skipped, since its random weights cannot be
drawn alike (TorchJD's ``Random`` draws float32 from the global generator, mtlbench float64 from a
generator seeded by the run's seed and the step). That step is plain SGD (lr 1), not the timed Adam:
Adam's first update, lr·g/(|g| + 1e-8), is about lr·sign(g), blind to the gradient's scale and flipped by
float rounding on entries that are zero up to it, so it could not tell two steps apart. The exit
status is 1 if a check fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from step_time import Setup, build_method, train_step
from tabulate import tabulate
from torch import Tensor, nn
from torchjd import aggregation as A
from torchjd import scalarization as S
from torchjd.autojac import jac_to_grad, mtl_backward
from torchjd.linalg import QuadprogProjector

from benchmark.backbones import create_backbone, create_heads
from benchmark.tasks import Batch, Problem, collate, task_loss
from datasets.synthetic import SyntheticDb
from methods import Method
from methods.weighting_support import step_seed

#: The methods whose weighting is one of TorchJD's, in docs/methods.md's order.
TORCHJD_METHODS: tuple[str, ...] = ("upgrad", "pcgrad", "cagrad", "nash_mtl", "imtl_g", "aligned_mtl", "dualproj",
                                    "mgda")
#: The loss weightings TorchJD also implements, as scalarizers (torchjd.scalarization).
SCALARIZER_METHODS: tuple[str, ...] = ("uw", "dwa", "rlw", "famo")
#: Options that make mtlbench's step compute what TorchJD's does (uw: TorchJD's UW is ½e^{-s}L + ½s).
LIKE_FOR_LIKE: dict[str, dict[str, str]] = {"uw": {"form": "regression"}} | {
    name: {"gradients": "shared_parameters"} for name in TORCHJD_METHODS}
#: Methods whose --check cannot compare one step, and why.
CHECK_SKIPPED: dict[str, str] = {
    "rlw": "its random weights cannot be drawn alike (TorchJD's Random: float32 from the global generator; "
           "mtlbench: float64 from a generator seeded by the run's seed and the step)"}
REFERENCE = "no_coupling"
LR = 1e-3
SEED = 0
#: --check: largest difference allowed between the two backbone gradients (and updates), relative to the largest
#: entry. The two compute the same float32 sums in different orders: at batch 32 and 64 px on smallcnn they
#: differ by 0.6-1.0e-5 (measured), while a wrong aggregator (TorchJD's Mean for upgrad) differs by 5.7e-2.
CHECK_TOLERANCE = 5e-5
#: --check: the learning rate of the plain SGD step it compares (an update of -CHECK_LR x the gradient).
CHECK_LR = 1.0


# ----- TorchJD's side --------------------------------------------------------------------------
def torchjd_aggregator(name: str, method: Method, n_tasks: int) -> nn.Module:
    """TorchJD's aggregator for mtlbench method ``name`` with ``method``'s hyperparameters (its defaults unless set)."""
    def projector() -> QuadprogProjector:
        return QuadprogProjector(norm_eps=method.norm_eps, reg_eps=method.reg_eps)

    builders: dict[str, Callable[[], nn.Module]] = {
        "upgrad": lambda: A.UPGrad(projector=projector()),
        "dualproj": lambda: A.DualProj(projector=projector()),
        "pcgrad": lambda: A.PCGrad(),
        "cagrad": lambda: A.CAGrad(c=method.c, norm_eps=method.norm_eps),
        "nash_mtl": lambda: A.NashMTL(n_tasks=n_tasks, max_norm=method.max_norm,
                                      update_weights_every=method.update_weights_every, optim_niter=method.optim_niter),
        "imtl_g": lambda: A.IMTLG(),
        "aligned_mtl": lambda: A.AlignedMTL(scale_mode=method.scale_mode),
        "mgda": lambda: A.MGDA(epsilon=method.epsilon, max_iters=method.max_iters),
    }
    if name not in builders:
        raise ValueError(f"{name!r} is not a TorchJD-backed method (one of {', '.join(TORCHJD_METHODS)})")
    return builders[name]()


def torchjd_scalarizer(name: str, method: Method, n_tasks: int) -> nn.Module:
    """TorchJD's scalarizer for mtlbench loss weighting ``name`` with ``method``'s hyperparameters."""
    builders: dict[str, Callable[[], nn.Module]] = {
        "uw": lambda: S.UW(n_tasks),
        "dwa": lambda: S.DWA(temperature=method.temperature),
        "rlw": lambda: S.Random(),
        "famo": lambda: S.FAMO(n_tasks, lr=method.logit_lr, weight_decay=method.gamma),
    }
    if name not in builders:
        raise ValueError(f"{name!r} is not a loss weighting TorchJD implements "
                         f"(one of {', '.join(SCALARIZER_METHODS)})")
    return builders[name]()


@dataclass
class NativeSetup:
    """One network trained by TorchJD's own step: backbone, heads, optimizer, aggregator (or, for a loss
    weighting, scalarizer), step counter.

    ``seed_of_step`` (None when timing): a function of the step giving the seed TorchJD's random draws
    (PCGrad's order) are taken under, so that a check draws the order mtlbench draws.
    """

    name: str
    backbone: nn.Module
    heads: nn.ModuleDict
    optimizer: torch.optim.Optimizer
    aggregator: nn.Module | None
    problem: Problem
    seed_of_step: Callable[[int], int] | None = None
    scalarizer: nn.Module | None = None
    steps: int = 0
    shared: list[nn.Parameter] = field(init=False)
    tasks_params: list[list[nn.Parameter]] = field(init=False)

    def __post_init__(self) -> None:
        self.shared = [p for p in self.backbone.parameters() if p.requires_grad]
        self.tasks_params = [list(self.heads[t].parameters()) for t in self.problem.task_names]


def build_native(name: str, method: Method, backbone: str, problem: Problem, lr: float = LR, seed: int = SEED,
                 seed_of_step: Callable[[int], int] | None = None) -> NativeSetup:
    """The network :func:`step_time.build_method` builds (same backbone, heads and initial weights for ``seed``),
    with Adam over all its parameters (and a scalarizer's) and TorchJD's aggregator or scalarizer for ``name``
    with ``method``'s hyperparameters."""
    torch.manual_seed(seed)
    net, width = create_backbone(backbone)
    heads = create_heads(problem.tasks, width)
    net.train()
    heads.train()
    if name in SCALARIZER_METHODS:
        aggregator, scalarizer = None, torchjd_scalarizer(name, method, len(problem.tasks))
    else:
        aggregator, scalarizer = torchjd_aggregator(name, method, len(problem.tasks)), None
    extra = list(scalarizer.parameters()) if scalarizer is not None else []  # UW's log-variances
    optimizer = torch.optim.Adam([*net.parameters(), *heads.parameters(), *extra], lr=lr)
    return NativeSetup(name, net, heads, optimizer, aggregator, problem, seed_of_step, scalarizer=scalarizer)


def native_losses(setup: NativeSetup, batch: Batch) -> tuple[Tensor, list[Tensor]]:
    """The forward pass: the features z and each task's loss."""
    features = setup.backbone(batch.inputs)
    return features, [task_loss(setup.problem.task(t), setup.heads[t](features), batch.targets[t], batch.masks[t])
                      for t in setup.problem.task_names]


def native_step(setup: NativeSetup, batch: Batch) -> None:
    """TorchJD's training step: forward, task losses, ``mtl_backward``, ``jac_to_grad``, the optimizer's step
    (a loss weighting: the scalarized losses' backward, the step, and FAMO's update on the same batch)."""
    setup.optimizer.zero_grad(set_to_none=True)
    features, losses = native_losses(setup, batch)
    if setup.scalarizer is not None:
        setup.scalarizer(torch.stack(losses)).backward()
        setup.optimizer.step()
        if isinstance(setup.scalarizer, S.FAMO):
            with torch.no_grad():
                setup.scalarizer.update(torch.stack(native_losses(setup, batch)[1]))
        setup.steps += 1
        return
    mtl_backward(losses, features=features, tasks_params=setup.tasks_params, shared_params=setup.shared)
    if setup.seed_of_step is None:
        jac_to_grad(setup.shared, setup.aggregator)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(setup.seed_of_step(setup.steps))
            jac_to_grad(setup.shared, setup.aggregator)
    setup.optimizer.step()
    setup.steps += 1


# ----- the problem and batch ------------------------------------------------------------------
def fully_annotated_batch(batch_size: int, image_size: int) -> tuple[Problem, Batch]:
    """The synthetic db's problem and its first ``batch_size`` training images, every one annotated for both tasks."""
    db = SyntheticDb(n_train=batch_size, n_val=1, n_test=1, image_size=image_size, overlap=1.0, ratio="1:1")
    data = db.split("train")
    batch = collate([data[i] for i in range(batch_size)])
    missing = [t for t, m in batch.masks.items() if not bool(m.all())]
    if missing:  # pragma: no cover - the annotation plan above annotates every image for both tasks
        raise RuntimeError(f"tasks {missing} lack labels in the batch; TorchJD's step would not compute the same "
                           f"losses")
    return db.problem(), batch


# ----- timing ---------------------------------------------------------------------------------
@dataclass
class Timed:
    """One variant's step and the seconds of its timed calls."""

    label: str
    step: Callable[[], None]
    seconds: list[float] = field(default_factory=list)

    def run(self, steps: int, timed: bool) -> None:
        for _ in range(steps):
            started = time.perf_counter()
            self.step()
            if timed:
                self.seconds.append(time.perf_counter() - started)

    @property
    def ms(self) -> float:
        """Median ms per timed step."""
        return 1000 * statistics.median(self.seconds)


def time_in_rounds(variants: Sequence[Timed], steps: int, warmup: int, rounds: int) -> None:
    """``warmup`` untimed steps of each variant, then ``steps`` timed ones split into ``rounds`` turns across them."""
    for variant in variants:
        variant.run(warmup, timed=False)
    rounds = max(1, min(rounds, steps))
    for share in [steps // rounds + (r < steps % rounds) for r in range(rounds)]:
        for variant in variants:  # in turns, so a change of the machine's load hits every variant alike
            variant.run(share, timed=True)


@dataclass
class Row:
    """One method's median ms per step: mtlbench in TorchJD's form (``shared_parameters`` for an aggregator),
    mtlbench's default form (None for a loss weighting, which has one), and TorchJD's step."""

    method: str
    like_for_like_ms: float
    default_ms: float | None
    torchjd_ms: float


def time_methods(methods: Sequence[str], backbone: str, problem: Problem, batch: Batch, steps: int, warmup: int,
                 rounds: int) -> tuple[float, list[Row]]:
    """no_coupling's median ms per step and each method's row, all timed interleaved."""
    def loop(setup: Setup) -> Callable[[], None]:
        return lambda: train_step(setup, batch, problem)

    reference = Timed(REFERENCE, loop(build_method(REFERENCE, backbone, problem, lr=LR, seed=SEED)))
    forms: dict[str, dict[str, Timed]] = {}  # method -> form ("like_torchjd", "torchjd", "representation") -> timing
    for name in methods:
        alike = build_method(name, backbone, problem, lr=LR, seed=SEED, options=LIKE_FOR_LIKE.get(name, {}))
        native = build_native(name, alike.method, backbone, problem)
        forms[name] = {"like_torchjd": Timed(f"{name} like TorchJD", loop(alike)),
                       "torchjd": Timed(f"{name} torchjd", lambda n=native: native_step(n, batch))}
        if name in TORCHJD_METHODS:  # and mtlbench's default, gradients at the representation
            forms[name]["representation"] = Timed(f"{name} representation",
                                                  loop(build_method(name, backbone, problem, lr=LR, seed=SEED)))
    time_in_rounds([reference, *(t for timed in forms.values() for t in timed.values())], steps, warmup, rounds)
    return reference.ms, [Row(name, timed["like_torchjd"].ms,
                              timed["representation"].ms if "representation" in timed else None, timed["torchjd"].ms)
                          for name, timed in forms.items()]


def format_tables(reference_ms: float, rows: Sequence[Row]) -> str:
    """The gradient weightings' table (ms per step of each form, mtlbench (shared_parameters) over TorchJD, each over
    no_coupling), then the loss weightings' (mtlbench over TorchJD's scalarizer, each over no_coupling)."""
    tables = []
    aggregators = [r for r in rows if r.default_ms is not None]
    if aggregators:
        headers = ["method", "mtlbench sp ms", "mtlbench repr ms", "TorchJD ms", "sp / TorchJD",
                   f"sp x {REFERENCE}", f"repr x {REFERENCE}", f"TorchJD x {REFERENCE}"]
        table = [[REFERENCE, "-", f"{reference_ms:.1f}", "-", "-", "-", "1.00", "-"]]
        for r in aggregators:
            assert r.default_ms is not None
            table.append([r.method, f"{r.like_for_like_ms:.1f}", f"{r.default_ms:.1f}", f"{r.torchjd_ms:.1f}",
                          f"{r.like_for_like_ms / r.torchjd_ms:.2f}", f"{r.like_for_like_ms / reference_ms:.2f}",
                          f"{r.default_ms / reference_ms:.2f}", f"{r.torchjd_ms / reference_ms:.2f}"])
        tables.append(tabulate(table, headers=headers, tablefmt="github", disable_numparse=True))
    scalarized = [r for r in rows if r.default_ms is None]
    if scalarized:
        headers = ["method", "mtlbench ms", "TorchJD ms", "mtlbench / TorchJD", f"mtlbench x {REFERENCE}",
                   f"TorchJD x {REFERENCE}"]
        table = [[REFERENCE, f"{reference_ms:.1f}", "-", "-", "1.00", "-"]]
        for r in scalarized:
            table.append([r.method, f"{r.like_for_like_ms:.1f}", f"{r.torchjd_ms:.1f}",
                          f"{r.like_for_like_ms / r.torchjd_ms:.2f}", f"{r.like_for_like_ms / reference_ms:.2f}",
                          f"{r.torchjd_ms / reference_ms:.2f}"])
        tables.append(tabulate(table, headers=headers, tablefmt="github", disable_numparse=True))
    return "\n\n".join(tables)


# ----- the equivalence check ------------------------------------------------------------------
@dataclass
class Check:
    """One method's check: identical initial weights, and the largest relative differences of the backbone's
    gradient and update between mtlbench (in TorchJD's form) and TorchJD; or why it was skipped."""

    method: str
    same_init: bool = True
    gradient_error: float = 0.0
    update_error: float = 0.0
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return self.skipped is not None or (self.same_init and self.gradient_error <= CHECK_TOLERANCE
                                            and self.update_error <= CHECK_TOLERANCE)

    def line(self) -> str:
        if self.skipped is not None:
            return f"check {self.method}: skipped ({self.skipped})"
        return (f"check {self.method}: {'ok' if self.passed else 'FAILED'} (same initial weights: {self.same_init}; "
                f"backbone gradient max |diff| / max |grad| = {self.gradient_error:.1e}, "
                f"update max |diff| / max |update| = {self.update_error:.1e}; tolerance {CHECK_TOLERANCE:.0e})")


def relative_error(got: Sequence[Tensor], want: Sequence[Tensor]) -> float:
    """max |got - want| over every entry, divided by max |want| (absolute where ``want`` is all zero)."""
    diff = max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))
    scale = max(float(w.abs().max()) for w in want)
    return diff / scale if scale > 0 else diff


def update_difference(start: Sequence[Tensor], got: Sequence[Tensor], want: Sequence[Tensor]) -> float:
    """max |update_got - update_want| beyond the parameters' own rounding, divided by max |update_want|.

    An update is seen only as the parameters it leaves: θ_new = fl(θ - u) differs from θ - u by up to half
    a unit in the last place of θ, so two updates that agree exactly can leave parameters one unit apart.
    That much (eps x |θ_new| per entry) is not counted.
    """
    excess, scale = 0.0, 0.0
    for theta, a, b in zip(start, got, want, strict=True):
        rounding = torch.finfo(theta.dtype).eps * torch.maximum(a.abs(), b.abs())
        excess = max(excess, float(((a - b).abs() - rounding).clamp_min(0.0).max()))
        scale = max(scale, float((b - theta).abs().max()))
    return excess / scale if scale > 0 else excess


def check_method(name: str, backbone: str, problem: Problem, batch: Batch) -> Check:
    """One step of each from the same initial weights: mtlbench in TorchJD's form (``gradients=shared_parameters``,
    ``uw``'s ``form=regression``) and TorchJD's step (PCGrad drawing the order mtlbench draws at that step) must give
    the backbone the same gradient and update."""
    if name in CHECK_SKIPPED:
        return Check(name, skipped=CHECK_SKIPPED[name])
    mtl = build_method(name, backbone, problem, lr=LR, seed=SEED, options=LIKE_FOR_LIKE.get(name, {}))
    seed_of_step = (lambda step, s=int(mtl.method.seed): step_seed(s, step)) if name == "pcgrad" else None
    native = build_native(name, mtl.method, backbone, problem, seed_of_step=seed_of_step)
    mtl_params, native_params = list(mtl.model.backbone.parameters()), native.shared
    same_init = all(torch.equal(a, b) for a, b in zip(mtl_params, native_params, strict=True))
    mtl.optimizer = torch.optim.SGD(mtl.method.param_groups(mtl.model), lr=CHECK_LR)
    extra = list(native.scalarizer.parameters()) if native.scalarizer is not None else []
    native.optimizer = torch.optim.SGD([*native.backbone.parameters(), *native.heads.parameters(), *extra],
                                       lr=CHECK_LR)
    start = [p.detach().clone() for p in mtl_params]
    train_step(mtl, batch, problem)
    native_step(native, batch)
    gradient_error = relative_error([p.grad for p in mtl_params], [p.grad for p in native_params])
    update_error = update_difference(start, [p.detach() for p in mtl_params], [p.detach() for p in native_params])
    return Check(name, same_init, gradient_error, update_error)


# ----- command line ---------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    every = [*TORCHJD_METHODS, *SCALARIZER_METHODS]
    parser.add_argument("--methods", nargs="+", default=every, choices=every, metavar="NAME",
                        help=f"methods TorchJD also implements (default: all: {' '.join(every)})")
    parser.add_argument("--backbone", default="smallcnn",
                        help="smallcnn or a timm name (resnet18, ...) (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=64, help="(default: %(default)s)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="turns the timed steps are split into, across the "
                        "variants (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="first check that mtlbench (in TorchJD's form) and "
                        "TorchJD give the backbone the same update from the same weights; exit status 1 if not")
    args = parser.parse_args(argv)
    for flag, value, least in (("--batch-size", args.batch_size, 1), ("--image-size", args.image_size, 8),
                               ("--steps", args.steps, 1), ("--warmup", args.warmup, 0), ("--rounds", args.rounds, 1)):
        if value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Print the settings, the check's lines (with --check) and the tables; 1 if a check failed, else 0."""
    args = parse_args(argv)
    methods = list(dict.fromkeys(args.methods))
    problem, batch = fully_annotated_batch(args.batch_size, args.image_size)
    checks = [check_method(name, args.backbone, problem, batch) for name in methods] if args.check else []
    for check in checks:
        print(check.line())
    reference_ms, rows = time_methods(methods, args.backbone, problem, batch, args.steps, args.warmup, args.rounds)
    print(f"backbone={args.backbone} batch={args.batch_size} image={args.image_size}px steps={args.steps} "
          f"rounds={max(1, min(args.rounds, args.steps))} warmup={args.warmup} threads={torch.get_num_threads()} "
          f"optimizer=Adam(lr={LR}) fp32 cpu; median ms per step; sp = gradients=shared_parameters, "
          f"repr = gradients=representation (default); uw with form=regression (TorchJD's UW)")
    print(format_tables(reference_ms, rows))
    return 0 if all(check.passed for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
