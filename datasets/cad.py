"""``cad``: the Clothing Attributes Dataset (Chen, Gallagher & Girod, ECCV 2012), official release layout."""

from __future__ import annotations

import numpy as np
import scipy.io

from benchmark.tasks import TaskSpec
from datasets.base import DBS, Preset
from datasets.filedb import ImageDb, Labels, attribute_labels, class_labels
from datasets.files import CorruptDataError, listing, stratified_parts

RELEASE = "ClothingAttributeDataset"
CATEGORIES = ("shirt", "sweater", "t-shirt", "outerwear", "suit", "tank_top", "dress")
#: The 23 binary attributes (file ``labels/<name>_GT.mat``), in the README's order. Value 2 is the
#: positive: e.g. ``gender`` 2 = female, ``skin_exposure`` 2 = high exposure, the rest 2 = yes.
BINARY = ("necktie", "collar", "gender", "placket", "skin_exposure", "scarf", "pattern_solid", "pattern_floral",
          "pattern_spot", "pattern_graphics", "pattern_plaid", "pattern_stripe", "red", "yellow", "green", "cyan",
          "blue", "purple", "brown", "white", "gray", "black", "many_colors")
#: The two 3-class attributes, optional extra class tasks: task name -> (label file, class names).
EXTRA = {"sleeve_length": ("sleevelength", ("no_sleeves", "short_sleeves", "long_sleeves")),
         "neckline": ("neckline", ("v_shape", "round", "other"))}
REPETITIONS = 6


def read_gt(path) -> np.ndarray:
    """The ``GT`` vector of one ``<attribute>_GT.mat`` file, as float (NaN = no agreement among annotators).

    A file that is no MATLAB file, lacks ``GT`` or holds anything but a numeric vector is a
    :class:`CorruptDataError` naming it.
    """
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, IndexError, MatReadError, ... on bytes that are no .mat
        raise CorruptDataError(f"{path}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from exc
    if "GT" not in content:
        raise CorruptDataError(f"{path}: no variable 'GT' (each CAD label file holds GT, 1856 x 1)")
    try:
        gt = np.asarray(content["GT"], dtype=float)
    except (TypeError, ValueError):
        raise CorruptDataError(f"{path}: GT is not numeric (each CAD label file holds GT, 1856 x 1)") from None
    if gt.ndim > 2 or (gt.ndim == 2 and min(gt.shape) > 1) or gt.size == 0:
        raise CorruptDataError(f"{path}: GT is {' x '.join(map(str, gt.shape))}, expected a vector (1856 x 1)")
    return gt.reshape(-1)


def one_based(values: np.ndarray, n_values: int, path) -> np.ndarray:
    """1-based codes with NaN -> 0-based int with -1 for missing; any other value is an error naming the file."""
    known = ~np.isnan(values)
    bad = known & ~np.isin(values, np.arange(1, n_values + 1))
    if bad.any():
        raise ValueError(f"{path}: values must be 1..{n_values} or NaN, found {sorted(set(values[bad].tolist()))[:5]}")
    return np.where(known, values, 0).astype(np.int64) - 1


@DBS.register("cad")
class ClothingAttributes(ImageDb):
    """Clothing Attributes Dataset: 7 clothing categories + 23 binary attributes, 6 x 2-fold cross-validation.

    Chen, Gallagher & Girod, "Describing Clothing by Semantic Attributes", ECCV 2012; protocol as in
    Kollias, Sharmanska & Zafeiriou (AAAI-24): 6 seeded 50/50 splits, each used both ways, so fold
    k = 2r + h trains on half h of repetition r and tests on the other half (12 folds; report mean ±
    spread). Labels are keyed by file name: ``GT[i]`` belongs to ``images/{i+1:06d}.jpg``. Images with
    no category (about 40%) keep their attributes and have class target -1.

    Args:
        data_root: the folder holding ``ClothingAttributeDataset/`` (else ``$MTLBENCH_CAD_ROOT``).
        cache_dir: decoded-image cache folder (see :class:`~datasets.filedb.ImageDb`).
        fit: ``stretch`` or ``center_crop``.
        extra_tasks: also learn sleeve length and neckline (3 classes each) as class tasks.
        val_fraction: share of each training half held out (stratified by category) for model selection.
        split_seed: seed of the 6 random halvings (and the validation hold-out).
    """

    num_folds = 2 * REPETITIONS
    env_var = "MTLBENCH_CAD_ROOT"
    layout = (f"{RELEASE}/images/000001.jpg ... 001856.jpg", f"{RELEASE}/labels/<attribute>_GT.mat")

    def __init__(self, *, data_root: str | None = None, cache_dir: str | None = None, fit: str = "stretch",
                 extra_tasks: bool = False, val_fraction: float = 0.1, split_seed: int = 0) -> None:
        super().__init__(data_root=data_root, cache_dir=cache_dir, fit=fit)
        if not 0 < val_fraction < 1:
            raise ValueError(f"db 'cad': val_fraction must be in (0, 1), got {val_fraction}")
        self.extra_tasks, self.val_fraction, self.split_seed = extra_tasks, val_fraction, split_seed

    def label_stems(self) -> list[str]:
        """The label files read, by stem (``labels/<stem>_GT.mat``)."""
        return ["category", *BINARY, *([EXTRA[t][0] for t in EXTRA] if self.extra_tasks else [])]

    def tasks(self) -> tuple[TaskSpec, ...]:
        extra = tuple(TaskSpec(t, "multiclass", EXTRA[t][1]) for t in EXTRA) if self.extra_tasks else ()
        return (TaskSpec("category", "multiclass", CATEGORIES), TaskSpec("attributes", "attributes", BINARY), *extra)

    def preset(self) -> Preset:
        return Preset(image_size=280, batch_size=50, epochs=30)

    def read_labels(self) -> Labels:
        root = self.root()
        self.require(root, [f"{RELEASE}/images", *(f"{RELEASE}/labels/{s}_GT.mat" for s in self.label_stems())])
        labels = root / RELEASE / "labels"
        gts, bad = {}, []
        for stem in self.label_stems():  # every file read before failing, so the error lists each broken one
            try:
                gts[stem] = read_gt(labels / f"{stem}_GT.mat")
            except CorruptDataError as exc:
                bad.append(str(exc))
        if bad:
            head = f"db 'cad': {len(bad)} of {len(self.label_stems())} label files cannot be read"
            raise CorruptDataError(listing(head if len(bad) > 1 else "db 'cad': a label file cannot be read", bad,
                                           f"replace {'it' if len(bad) == 1 else 'them'} from the release "
                                           f"({RELEASE}/labels/); nothing was trained"))
        lengths = {len(v) for v in gts.values()}
        if len(lengths) != 1:
            raise ValueError(f"{labels}: the GT vectors differ in length: "
                             f"{ {s: len(v) for s, v in gts.items()} }")
        n = lengths.pop()
        files = [f"{RELEASE}/images/{i:06d}.jpg" for i in range(1, n + 1)]  # by name, never directory order
        attributes = np.stack([one_based(gts[a], 2, labels / f"{a}_GT.mat") for a in BINARY], axis=1).astype(float)
        attributes[attributes < 0] = np.nan  # 0 = no, 1 = yes, NaN = missing
        targets, masks = {}, {}
        targets["category"], masks["category"] = class_labels(one_based(gts["category"], 7, labels / "category_GT.mat"))
        targets["attributes"], masks["attributes"] = attribute_labels(attributes)
        for task, (stem, names) in (EXTRA.items() if self.extra_tasks else ()):
            targets[task], masks[task] = class_labels(one_based(gts[stem], len(names), labels / f"{stem}_GT.mat"))
        return Labels(self.scan(root, files), targets, masks)

    def parts(self, fold: int | None = None) -> np.ndarray:
        """(n,) 0 = train, 1 = val, 2 = test for ``fold`` (stratified by category, 'none' a stratum of its own)."""
        assert fold is not None, "check_fold rejects a missing fold"
        repetition, half = divmod(fold, 2)
        category = self.labels().targets["category"].numpy()
        halves = stratified_parts(category, (0.5, 0.5), np.random.default_rng([self.split_seed, repetition]))
        parts = np.full(len(category), 2)
        train = np.flatnonzero(halves == half)
        held = stratified_parts(category[train], (1 - self.val_fraction, self.val_fraction),
                                np.random.default_rng([self.split_seed, repetition, half]))
        parts[train] = held
        return parts
