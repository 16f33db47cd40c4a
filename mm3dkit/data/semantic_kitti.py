"""SemanticKITTI reader: ``sequences/NN/velodyne/*.bin`` + ``labels/*.label`` -> one :class:`Scene` per sweep.

Scans are float32 ``x, y, z, remission`` records; labels are uint32 per point, lower 16 bits the raw semantic
class, upper 16 bits the instance id. Raw classes map through the standard learning map
(:data:`~mm3dkit.data.classes.SEMANTIC_KITTI_LEARNING_MAP`) to 19 classes (indices 0..18) + :data:`IGNORE_LABEL`.
A raw class absent from the learning map is a :class:`DataError`. Remission (0..1) is stored as grey colour.

Standard splits: train 00-07, 09, 10; val 08; test 11-21 (no labels).

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> seq = pathlib.Path(tempfile.mkdtemp()) / "sequences" / "08"
    >>> (seq / "velodyne").mkdir(parents=True); (seq / "labels").mkdir()
    >>> np.array([[1, 2, 3, 0.5]], np.float32).tofile(seq / "velodyne" / "000000.bin")
    >>> np.array([(7 << 16) | 10], np.uint32).tofile(seq / "labels" / "000000.label")
    >>> s = read_sweep(seq / "velodyne" / "000000.bin")
    >>> s.semantic.tolist(), s.instance.tolist()
    ([0], [7])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from mm3dkit.data.classes import SEMANTIC_KITTI_LEARNING_MAP, SEMANTIC_KITTI_NAMES
from mm3dkit.data.types import IGNORE_LABEL, Scene
from mm3dkit.errors import DataError

SPLITS: dict[str, tuple[int, ...]] = {
    "train": (0, 1, 2, 3, 4, 5, 6, 7, 9, 10), "val": (8,), "test": tuple(range(11, 22)),
}

_LUT = np.full(max(SEMANTIC_KITTI_LEARNING_MAP) + 1, -1, dtype=np.int64)  # -1 = not in the map
for _raw, _cls in SEMANTIC_KITTI_LEARNING_MAP.items():
    _LUT[_raw] = _cls - 1 if _cls > 0 else IGNORE_LABEL


def map_labels(raw_semantic: np.ndarray, source: str | Path = "<array>") -> np.ndarray:
    """Raw SemanticKITTI classes -> training indices 0..18 or :data:`IGNORE_LABEL`; unknown classes raise."""
    raw = np.asarray(raw_semantic, dtype=np.int64)
    known = (raw >= 0) & (raw < len(_LUT))
    known[known] = _LUT[raw[known]] != -1
    if not known.all():
        bad = np.unique(raw[~known])[:5].tolist()
        raise DataError(source, f"raw labels {bad} are not in the SemanticKITTI learning map")
    return _LUT[raw]


def read_sweep(bin_path: str | Path, label_path: str | Path | None = None) -> Scene:
    """One LiDAR sweep as a :class:`Scene`; labels default to ``../labels/<stem>.label`` when that file exists."""
    bin_path = Path(bin_path)
    if not bin_path.is_file():
        raise DataError(bin_path, "file is missing")
    raw = np.fromfile(bin_path, dtype=np.float32)
    if raw.size == 0 or raw.size % 4:
        raise DataError(bin_path, f"size {raw.size * 4} bytes is not a positive multiple of 16 (x, y, z, remission)")
    scan = raw.reshape(-1, 4)
    if not np.isfinite(scan).all():
        raise DataError(bin_path, "contains NaN or infinite values")
    n = len(scan)
    semantic = np.full(n, IGNORE_LABEL, np.int64)
    instance = np.full(n, -1, np.int64)
    if label_path is None:
        label_path = bin_path.parent.parent / "labels" / f"{bin_path.stem}.label"
        label_path = label_path if label_path.is_file() else None
    if label_path is not None:
        label_path = Path(label_path)
        if not label_path.is_file():
            raise DataError(label_path, "file is missing")
        lab = np.fromfile(label_path, dtype=np.uint32)
        if len(lab) != n:
            raise DataError(label_path, f"has {len(lab)} labels but the scan has {n} points")
        semantic = map_labels(lab & 0xFFFF, label_path)
        instance = (lab >> 16).astype(np.int64)
    grey = (np.clip(scan[:, 3], 0, 1) * 255).astype(np.uint8)
    return Scene(points=scan[:, :3].copy(), colors=np.repeat(grey[:, None], 3, axis=1), semantic=semantic,
                 instance=instance, class_names=list(SEMANTIC_KITTI_NAMES),
                 name=f"{bin_path.parent.parent.name}/{bin_path.stem}")


class SemanticKITTI(Dataset):
    """Sweeps of the given sequences (or a standard ``split``) under ``root`` (folder holding ``sequences/``)."""

    def __init__(self, root: str | Path, split: str | None = "train", sequences: tuple[int, ...] | None = None,
                 stride: int = 1):
        root = Path(root)
        base = root / "sequences" if (root / "sequences").is_dir() else root
        if not base.is_dir():
            raise DataError(root, "dataset folder does not exist")
        if sequences is None:
            if split not in SPLITS:
                raise ValueError(f"split must be one of {tuple(SPLITS)} when sequences is not given, got {split!r}")
            sequences = SPLITS[split]
        self.files = []
        for s in sequences:
            self.files += sorted((base / f"{s:02d}" / "velodyne").glob("*.bin"))[::stride]
        if not self.files:
            raise DataError(base, f"no scans found in sequences {sequences} (expected NN/velodyne/*.bin)")
        self.class_names = list(SEMANTIC_KITTI_NAMES)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Scene:
        return read_sweep(self.files[i])
