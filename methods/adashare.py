"""``adashare``: AdaShare's result, a network retrained with the policy its linked search learned.

Sun, Panda, Feris & Saenko, "AdaShare: Learning What To Share For Efficient Deep Multi-Task
Learning", NeurIPS 2020. Two registered methods share one network module (``methods/adashare_net.py``):
``adashare_search`` (``methods/adashare_search.py``; Sec. 3.2-3.4) learns the per-task execute/skip
policy, and ``adashare`` (here; Sec. 3.4) declares that search as its linked run ``policy_run`` and
trains a fresh network with the policy fixed. Each class has its own hooks; no hook asks which network
or which phase it has.

Run identities. Before the split one class played both runs through an option ``phase``: every stored
search has the config ``method="adashare"``, ``phase="search"`` (with the retraining-only options
``retrain_policy``, ``sample_seed`` at their defaults), every retraining ``phase="retrain"``. A run's id
is the hash of its config, so to keep those ids, and the store's reuse of completed searches:

- ``adashare`` keeps all fifteen options, ``phase`` included, under the same names and defaults, and
  declares its search as ``Dependency("adashare", {<search options>, "phase": "search"})``
  (:func:`search_dependency`): the config a retraining links, and the one ``--method adashare --set
  phase=search`` gives, are exactly those of the stored searches.
- ``phase=search`` is thus the stored name of the search. The runner and ``benchmark/linked.py`` rebuild
  a stored run as ``METHODS.get(cfg.method)(**cfg.method_options)``, so ``AdaShare(phase="search", ...)``
  constructs an :class:`AdaShareSearch` with the search options (``AdaShare.__new__``): the name is
  mapped to its class once, where the method is made, never inside a hook. That search keeps the other
  three options in ``stored_as``, so its ``hparams()`` are the stored config's options, as for any method.

``--method adashare_search`` trains the same search and, through ``AdaShareSearch.stored_as``, the
runner stores it as ``adashare`` with ``phase=search``: one search, one id, whichever name asked for it.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from torch import Tensor, nn

from benchmark.tasks import Problem
from methods.adashare_net import (FixedPolicyNet, deterministic_policy, policy_string, residual_blocks,
                                  sampled_policy)
from methods.adashare_search import PREFIX, AdaShareSearch, raise_errors, search_option_errors
from methods.base import METHODS, Dependency, LinkedRun, Method, MultiTaskModel

log = logging.getLogger(__name__)

__all__ = ["PREFIX", "POLICY_RUN", "RETRAIN_ONLY", "AdaShare", "AdaShareSearch", "search_dependency"]

#: The role under which the retraining run links its policy search (``reports.spec.EARLIER_STAGE_LINKS``).
POLICY_RUN = "policy_run"
#: Options that only the retraining reads; the policy search is the same run whatever they are.
RETRAIN_ONLY = ("phase", "retrain_policy", "sample_seed")


@METHODS.register("adashare")
class AdaShare(Method):
    """AdaShare: each task learns which residual blocks to execute or skip (Sun, Panda, Feris & Saenko, NeurIPS 2020).

    The retraining, the run reports show (Sec. 3.4): it declares the policy search
    (:class:`AdaShareSearch`, with the same search options) as its linked run ``policy_run``, fixes
    its learned policy (blocks the curriculum never opened are executed) and trains the network
    from scratch with it: a skipped block passes its input through its shortcut and is not run.
    Training and evaluation use that one policy. Each task runs its own pass through the backbone
    (``PerTaskOutput``).

    Args:
        phase: ``retrain``, this method; ``search`` is the stored name of the policy search and makes an
            :class:`AdaShareSearch` instead (module docstring).
        warmup_epochs, curriculum_speed, temperature, temperature_decay, hard_sampling, sparsity_weight,
            sharing_weight, sharing_depth_weights, policy_lr, policy_weight_decay, policy_fraction,
            split_seed: the search's options (:class:`AdaShareSearch`): they pick the search this run links.
        retrain_policy: ``argmax`` (execute where the learned execute logit is the larger) or
            ``sample`` (draw each open block from its learned distribution, as the released
            retraining code does).
        sample_seed: seed of the draw when ``retrain_policy=sample``.
    """

    supported_backbones = AdaShareSearch.supported_backbones
    builds_shared_representation = False  # a pass per task through its own blocks

    def __new__(cls, *, phase: str = "retrain", retrain_policy: str = "argmax", sample_seed: int = 0,
                **search_options: Any) -> Any:
        """``phase=search``, a stored search's config, makes that search; any other phase makes this method."""
        if phase != "search":
            return super().__new__(cls)
        raise_errors(retrain_option_errors(phase, retrain_policy))
        search = AdaShareSearch(**search_options)  # not an AdaShare: Python then skips __init__
        search.stored_as = {"phase": phase, "retrain_policy": retrain_policy, "sample_seed": sample_seed}
        return search

    def __init__(self, *, phase: Literal["retrain", "search"] = "retrain", warmup_epochs: int = 1,
                 curriculum_speed: int = 3, temperature: float = 5.0, temperature_decay: float = 0.965,
                 hard_sampling: bool = False, sparsity_weight: float = 0.05, sharing_weight: float = 0.05,
                 sharing_depth_weights: Literal["increasing", "decreasing"] = "increasing", policy_lr: float = 0.01,
                 policy_weight_decay: float = 5e-4, policy_fraction: float = 0.5, split_seed: int = 0,
                 retrain_policy: Literal["argmax", "sample"] = "argmax", sample_seed: int = 0) -> None:
        super().__init__()
        # the search options are checked here too, so a bad one fails before the search is planned or stored
        raise_errors(retrain_option_errors(phase, retrain_policy) + search_option_errors(
            warmup_epochs, curriculum_speed, temperature, temperature_decay, sharing_depth_weights, policy_fraction,
            (sparsity_weight, sharing_weight, policy_lr, policy_weight_decay)))
        self.keep_hyperparameters(locals())
        self._policy: Tensor | None = None  # the fixed policy, from attach()

    # ----- linked runs --------------------------------------------------------------------
    @classmethod
    def dependencies(cls, options: dict[str, Any], problem: Problem) -> dict[str, Dependency]:
        """The retraining builds on the search with the same search options; a stored search on nothing."""
        if options.get("phase", "retrain") != "retrain":
            return {}
        return {POLICY_RUN: search_dependency(options)}

    def attach(self, role: str, run: LinkedRun) -> None:
        """Fix the policy from the search run's learned logits."""
        source = run.method
        if role != POLICY_RUN or not isinstance(source, AdaShareSearch):  # a refusal, not a dispatch
            raise ValueError(f"adashare takes only role {POLICY_RUN!r} with an adashare policy-search run "
                             f"(adashare_search, stored as adashare phase=search); got {role!r} with "
                             f"{type(source).__name__} (run {run.run_id})")
        n_open = int(source.learned_blocks)
        if n_open == 0:
            raise ValueError(f"policy run {run.run_id} learned no policy: all its epochs were warm-up "
                             f"(warmup_epochs={source.warmup_epochs}); train with more --epochs or fewer warmup_epochs")
        logits = source.learned_logits.detach().cpu()
        if self.retrain_policy == "argmax":
            self._policy = deterministic_policy(logits, n_open)
        else:
            self._policy = sampled_policy(logits, n_open, self.sample_seed)
        rows = ", ".join(policy_string(row) for row in self._policy)
        log.info("adashare: policy of run %s (per task, first block first, 1 = execute): %s", run.run_id, rows)

    # ----- the hooks ------------------------------------------------------------------------
    def build(self, backbone: nn.Module, heads: nn.ModuleDict, problem: Problem) -> MultiTaskModel:
        """The network with the attached policy fixed (:class:`FixedPolicyNet`); the other hooks are the defaults."""
        return FixedPolicyNet(backbone, heads, residual_blocks(backbone), self._policy)


def search_dependency(options: dict[str, Any]) -> Dependency:
    """The search a retraining with ``options`` links: its search options under the search's stored name."""
    search = {k: v for k, v in options.items() if k not in RETRAIN_ONLY}
    return Dependency("adashare", {**search, "phase": "search"})


def retrain_option_errors(phase: str, retrain_policy: str) -> list[str]:
    """What is wrong with the retraining's own options, one message each."""
    problems = [(phase not in ("retrain", "search"), f"phase must be 'retrain' or 'search', got {phase!r}"),
                (retrain_policy not in ("argmax", "sample"),
                 f"retrain_policy must be 'argmax' or 'sample', got {retrain_policy!r}")]
    return [message for bad, message in problems if bad]
