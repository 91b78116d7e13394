"""The db adapter contract: tasks, splits or folds, masks for missing labels, presets, priors."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from benchmark.registry import Registry
from benchmark.relatedness import estimate
from benchmark.tasks import Problem, TaskSpec

#: Dbs by name; third-party packages add theirs under the ``mtlbench.dbs`` entry-point group.
DBS: Registry = Registry("db", "mtlbench.dbs")

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Preset:
    """A db's training protocol defaults (overridable from the CLI).

    Args:
        image_size: side of the square network input, in pixels.
        batch_size: mini-batch size.
        epochs: training epochs.
        augmentation: ``"none"``, ``"flip"`` (horizontal flips), ``"affine"``, or a batch-mixing one
            (``"mixup"``, ``"mixaugment"``, ``"mixaugment_cutmix"``; ``benchmark/mixing.py``).
        label_smoothing: label smoothing of the supervised losses.
        lr: Adam learning rate (the paper uses 1e-3 throughout).
    """

    image_size: int
    batch_size: int
    epochs: int
    augmentation: str = "none"
    label_smoothing: float = 0.0
    lr: float = 1e-3


class TaskDataset(Dataset):
    """Samples with per-task targets and annotation masks held in memory; inputs loaded per item.

    Args:
        targets: per task, (n,) int64 class indices (-1 = missing) or (n, M) float attributes.
        masks: per task, (n,) or (n, M) bool, True where annotated.
        transform: applied to each input tensor (augmentation), or None.

    ``sample_weights`` ((n,) float, default None) makes the training loader draw samples with
    replacement in proportion to it, as many per epoch as there are samples (e.g. a joined db
    balancing its datasets); None is a plain shuffle.
    """

    def __init__(self, targets: dict[str, Tensor], masks: dict[str, Tensor],
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        sizes = {len(t) for t in targets.values()} | {len(m) for m in masks.values()}
        if len(sizes) != 1 or targets.keys() != masks.keys():
            raise ValueError(f"targets and masks disagree: sizes {sizes}, tasks {list(targets)} vs {list(masks)}")
        self.targets = targets
        self.masks = masks
        self.transform = transform
        self.sample_weights: Tensor | None = None

    def __len__(self) -> int:
        return len(next(iter(self.targets.values())))

    @abstractmethod
    def load_input(self, index: int) -> Tensor:
        """The (3, H, W) float input of sample ``index``."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        x = self.load_input(index)
        if self.transform is not None:
            x = self.transform(x)
        return {"input": x, "index": index,
                "targets": {t: v[index] for t, v in self.targets.items()},
                "masks": {t: m[index] for t, m in self.masks.items()}}

    def annotated(self, tasks: Sequence[str]) -> np.ndarray:
        """Indices of samples annotated (at least partly) for at least one of ``tasks``."""
        keep = torch.zeros(len(self), dtype=torch.bool)
        for t in tasks:
            m = self.masks[t]
            keep |= m if m.ndim == 1 else m.any(dim=1)
        return torch.nonzero(keep).flatten().numpy()


class TensorTaskDataset(TaskDataset):
    """A :class:`TaskDataset` whose inputs are one in-memory tensor (n, 3, H, W)."""

    def __init__(self, inputs: Tensor, targets: dict[str, Tensor], masks: dict[str, Tensor],
                 transform: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__(targets, masks, transform)
        if len(inputs) != len(self):
            raise ValueError(f"{len(inputs)} inputs for {len(self)} labelled samples")
        self.inputs = inputs

    def load_input(self, index: int) -> Tensor:
        return self.inputs[index]


class Db(ABC):
    """A db adapter: its tasks, splits (or cross-validation folds), preset and relatedness priors.

    Options are keyword-only ``__init__`` arguments with defaults, stored under their own names;
    they are part of a run's identity, except ``data_root`` (where the files are on this machine).

    Args:
        data_root: folder holding the db's files in their official layout (file-based dbs).
    """

    name: ClassVar[str] = ""
    #: Number of cross-validation folds; 0 for a db with fixed train/val/test splits.
    num_folds: ClassVar[int] = 0
    #: Priors that are domain-knowledge tables of related/unrelated pairs (binarised for DM by the paper).
    binary_priors: ClassVar[frozenset[str]] = frozenset()
    #: Options that say where data is, not what it is; left out of run identities.
    location_options: ClassVar[tuple[str, ...]] = ("data_root",)

    def __init__(self, *, data_root: str | None = None) -> None:
        self.data_root = data_root

    @classmethod
    def option_parameters(cls) -> dict[str, inspect.Parameter]:
        """The keyword-only ``__init__`` parameters, by name."""
        params = inspect.signature(cls.__init__).parameters
        return {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def options(self) -> dict[str, Any]:
        """The option values that define the data (location options left out)."""
        return {n: getattr(self, n) for n in self.option_parameters() if n not in self.location_options}

    @abstractmethod
    def tasks(self) -> tuple[TaskSpec, ...]:
        """The db's tasks, in head order."""

    @abstractmethod
    def preset(self) -> Preset:
        """The paper's training protocol for this db."""

    @abstractmethod
    def split(self, split: Split, fold: int | None = None, image_size: int | None = None) -> TaskDataset:
        """One split at ``image_size`` (default: the preset's); ``fold`` selects the cross-validation fold."""

    def verify(self, image_size: int | None = None, progress: bool = False) -> None:
        """Check the db's data before anything trains (file-based dbs: annotations parse, every image decodes);
        raise an error naming each broken file. In-memory dbs have nothing to check."""

    def priors(self) -> dict[str, np.ndarray]:
        """Built-in relatedness matrices p(attribute | class) by source (e.g. ``"domain"``); none by default."""
        return {}

    def problem(self, fold: int | None = None) -> Problem:
        """The :class:`Problem` handed to a method's ``build``; ``"db"`` relatedness is counted on demand."""
        tasks = self.tasks()
        classes = [t for t in tasks if t.kind == "multiclass"]
        attributes = [t for t in tasks if t.kind == "attributes"]
        empirical = None
        if len(classes) == 1 and len(attributes) == 1:
            empirical = lambda: self.empirical_relatedness(classes[0].name, attributes[0].name, fold)  # noqa: E731
        return Problem(self.name, tasks, self.priors(), empirical, self.binary_priors)

    def empirical_relatedness(self, class_task: str, attribute_task: str, fold: int | None = None) -> np.ndarray:
        """p(attribute | class) counted on the training split's co-annotated images (the paper's "DB")."""
        train = self.split("train", fold)
        where = f"db {self.name!r}, training split" + (f" of fold {fold}" if fold is not None else "")
        n_classes = next(t.num_outputs for t in self.tasks() if t.name == class_task)
        return estimate(train.targets[class_task], train.masks[class_task], train.targets[attribute_task],
                        train.masks[attribute_task], n_classes, where)

    def check_fold(self, fold: int | None) -> None:
        """Reject a fold the db does not have, saying which exist."""
        if self.num_folds == 0 and fold is not None:
            raise ValueError(f"db {self.name!r} has fixed splits; drop --fold {fold}")
        if self.num_folds and fold is None:
            raise ValueError(f"db {self.name!r} is cross-validated: pass --fold 0..{self.num_folds - 1}")
        if self.num_folds and not 0 <= fold < self.num_folds:
            raise ValueError(f"--fold {fold}: db {self.name!r} is cross-validated with {self.num_folds} folds: "
                             f"pass --fold 0..{self.num_folds - 1}")
