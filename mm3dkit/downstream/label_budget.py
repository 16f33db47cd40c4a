"""Fixed, saved label budgets for the data-efficient protocol (ScanNet "limited reconstructions / annotations").

A :class:`LabelBudget` keeps a percentage of the training scenes (1/5/10/20/100 %) and, optionally, a number of
labelled points per kept scene (20/50/100/200); everything else is treated as unlabelled (:data:`IGNORE_LABEL`).
The choice depends only on the seed and the scenes (names and labels), is written to a JSON file, and every
fine-tuning run loads that file and records it in its ``metrics.json``, so runs with different initialisations
train on exactly the same labels.

Example:
    >>> import numpy as np
    >>> from mm3dkit.data.types import Scene
    >>> scenes = [Scene(np.zeros((50, 3), np.float32), np.zeros((50, 3), np.uint8), np.arange(50) % 3, name=f"s{i}")
    ...           for i in range(10)]
    >>> b = make_budget(scenes, scene_percent=20, points_per_scene=5, seed=1)
    >>> len(b.scenes), [len(v) for v in b.points.values()]
    (2, [5, 5])
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mm3dkit.data.types import IGNORE_LABEL, Scene
from mm3dkit.errors import DataError

SCENE_PERCENTS = (1, 5, 10, 20, 100)
POINTS_PER_SCENE = (20, 50, 100, 200)


@dataclass
class LabelBudget:
    """Kept scene names and, when ``points_per_scene`` is set, the labelled point indices of each kept scene."""

    scene_percent: float
    points_per_scene: int | None
    seed: int
    scenes: list[str]
    points: dict[str, list[int]] = field(default_factory=dict)
    dataset: str = ""

    def label_mask(self, scene: Scene) -> np.ndarray | None:
        """Boolean mask of the scene's points whose labels may be used (``None``: all of them)."""
        if self.points_per_scene is None:
            return None
        if scene.name not in self.points:
            raise DataError(scene.name, "scene is not in the label budget")
        idx = np.asarray(self.points[scene.name], dtype=np.int64)
        if idx.size and idx.max() >= len(scene):
            raise DataError(scene.name, f"label budget index {idx.max()} >= number of points {len(scene)}; "
                            "was the budget made for another version of the data?")
        mask = np.zeros(len(scene), bool)
        mask[idx] = True
        return mask

    def summary(self) -> dict:
        """What a run records in its metrics: settings, kept scenes and number of labelled points."""
        return {"scene_percent": self.scene_percent, "points_per_scene": self.points_per_scene, "seed": self.seed,
                "dataset": self.dataset, "scenes": list(self.scenes),
                "num_labelled_points": {k: len(v) for k, v in self.points.items()}}


def _scene_seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode())) & 0xFFFFFFFF  # stable across runs (unlike hash())


def choose_scenes(names: Sequence[str], percent: float, seed: int) -> list[str]:
    """``ceil(percent % of len(names))`` names (at least one), chosen by ``seed`` independent of input order."""
    if not 0 < percent <= 100:
        raise ValueError(f"scene percentage must be in (0, 100], got {percent}")
    ordered = sorted(names)
    k = max(1, math.ceil(len(ordered) * percent / 100 - 1e-9))
    pick = np.random.default_rng(seed).permutation(len(ordered))[:k]
    return sorted(ordered[i] for i in pick)


def choose_points(semantic: np.ndarray, count: int, seed: int, name: str) -> list[int]:
    """``count`` indices of labelled points (uniformly at random, by ``seed`` and scene ``name``), sorted."""
    labelled = np.flatnonzero(np.asarray(semantic) != IGNORE_LABEL)
    rng = np.random.default_rng(_scene_seed(seed, name))
    pick = rng.choice(labelled, size=min(count, len(labelled)), replace=False) if len(labelled) else labelled
    return sorted(int(i) for i in pick)


def make_budget(scenes: Sequence[Scene] | Sequence[str], scene_percent: float = 100,
                points_per_scene: int | None = None, seed: int = 0, dataset: str = "",
                semantic_of: Callable[[str], np.ndarray] | None = None) -> LabelBudget:
    """Choose scenes (then points in them) of the training set; deterministic for a given ``seed``.

    ``scenes`` are :class:`Scene` records, or only their names with ``semantic_of(name)`` giving a kept scene's
    per-point labels (so a large dataset is not held in memory).
    """
    if all(isinstance(s, str) for s in scenes):
        names = list(scenes)
        lookup = semantic_of
    else:
        by_name = {s.name: s for s in scenes}
        names = list(by_name)

        def lookup(n: str) -> np.ndarray:
            return by_name[n].semantic
    if len(set(names)) != len(names):
        raise DataError(dataset or "scenes", "scene names must be unique to make a label budget")
    kept = choose_scenes(names, scene_percent, seed)
    points = {}
    if points_per_scene is not None:
        if lookup is None:
            raise ValueError("make_budget with scene names and points_per_scene needs semantic_of")
        for n in kept:
            sem = lookup(n)
            if sem is None:
                raise DataError(n, "scene has no semantic labels to choose labelled points from")
            points[n] = choose_points(sem, int(points_per_scene), seed, n)
    return LabelBudget(float(scene_percent), points_per_scene, int(seed), kept, points, dataset)


def budget_filename(dataset: str, scene_percent: float, points_per_scene: int | None, seed: int) -> str:
    """Canonical file name, e.g. ``synthetic_scenes20_points50_seed0.json`` (``pointsall`` for full labels)."""
    pts = "all" if points_per_scene is None else str(points_per_scene)
    return f"{dataset or 'data'}_scenes{scene_percent:g}_points{pts}_seed{seed}.json"


def save_budget(budget: LabelBudget, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(budget), indent=1))
    tmp.replace(path)
    return path


def load_budget(path: str | Path) -> LabelBudget:
    """Read a budget file; :class:`DataError` naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "label budget file is missing")
    try:
        d = json.loads(path.read_text())
        return LabelBudget(float(d["scene_percent"]), d["points_per_scene"], int(d["seed"]), list(d["scenes"]),
                           {k: [int(i) for i in v] for k, v in d.get("points", {}).items()}, d.get("dataset", ""))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"not a label budget file ({exc})") from exc


def load_or_make_budget(path: str | Path, scenes: Sequence[Scene] | Sequence[str], scene_percent: float = 100,
                        points_per_scene: int | None = None, seed: int = 0, dataset: str = "",
                        semantic_of: Callable[[str], np.ndarray] | None = None, write: bool = True) -> LabelBudget:
    """The budget saved at ``path`` if it exists (checked against the settings), else a new one saved there."""
    path = Path(path)
    if path.exists():
        b = load_budget(path)
        if (b.scene_percent, b.points_per_scene, b.seed) != (float(scene_percent), points_per_scene, seed):
            raise DataError(path, f"holds a budget for {(b.scene_percent, b.points_per_scene, b.seed)}, not "
                            f"{(scene_percent, points_per_scene, seed)}")
        return b
    budget = make_budget(scenes, scene_percent, points_per_scene, seed, dataset, semantic_of)
    return load_budget(save_budget(budget, path)) if write else budget
