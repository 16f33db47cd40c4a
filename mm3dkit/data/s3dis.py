"""S3DIS reader: ``Area_N/<room>/Annotations/<class>_<k>.txt`` (``x y z r g b`` per line) -> labelled :class:`Scene`.

The room's points are the concatenation of its annotation files (as the common PointNet preprocessing does; the
room file ``<room>.txt`` holds the same points unlabelled and is used only when ``Annotations/`` is absent).
Semantic labels index :data:`~mm3dkit.data.classes.S3DIS_NAMES` (13 classes; ``stairs`` folds into ``clutter``),
instance ids number the annotation files. Split convention: Area 5 is the test area, the others train.

Example:
    >>> import tempfile, pathlib
    >>> room = pathlib.Path(tempfile.mkdtemp()) / "Area_1" / "office_1" / "Annotations"
    >>> room.mkdir(parents=True)
    >>> _ = (room / "chair_1.txt").write_text("0 0 0 10 20 30\\n1 0 0 10 20 30\\n")
    >>> s = read_s3dis_room(room.parent)
    >>> len(s), s.semantic.tolist(), s.name
    (2, [8, 8], 'Area_1/office_1')
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from mm3dkit.data.classes import S3DIS_ALIASES, S3DIS_NAMES
from mm3dkit.data.types import IGNORE_LABEL, Scene
from mm3dkit.errors import DataError

TEST_AREA = 5


def read_xyzrgb(path: Path) -> np.ndarray:
    """An S3DIS point file -> ``(N, 6)`` float64 (x, y, z, r, g, b)."""
    if not path.is_file():
        raise DataError(path, "file is missing")
    if path.stat().st_size == 0:
        raise DataError(path, "has no points")
    try:
        arr = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:  # e.g. the stray character in the original Area_5/hallway_6 file
        raise DataError(path, f"is not a table of 'x y z r g b' numbers ({exc})") from exc
    if arr.size == 0:
        raise DataError(path, "has no points")
    if arr.shape[1] != 6:
        raise DataError(path, f"expected 6 columns (x y z r g b), got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise DataError(path, "contains NaN or infinite values")
    return arr


def _class_of(path: Path) -> int:
    name = path.stem.rsplit("_", 1)[0]
    name = S3DIS_ALIASES.get(name, name)
    if name not in S3DIS_NAMES:
        raise DataError(path, f"class {name!r} is not one of the 13 S3DIS classes {S3DIS_NAMES}")
    return S3DIS_NAMES.index(name)


def read_s3dis_room(room_dir: str | Path) -> Scene:
    """One room as a :class:`Scene` (points float32, colours uint8, semantic 0..12, instance per annotation file)."""
    d = Path(room_dir)
    ann = d / "Annotations"
    name = f"{d.parent.name}/{d.name}"
    if not ann.is_dir():
        arr = read_xyzrgb(d / f"{d.name}.txt")
        n = len(arr)
        return Scene(points=arr[:, :3].astype(np.float32), colors=arr[:, 3:].clip(0, 255).astype(np.uint8),
                     semantic=np.full(n, IGNORE_LABEL, np.int64), instance=np.full(n, -1, np.int64),
                     class_names=list(S3DIS_NAMES), name=name)
    files = sorted(ann.glob("*.txt"))
    if not files:
        raise DataError(ann, "no annotation files <class>_<k>.txt")
    parts = [read_xyzrgb(f) for f in files]
    classes = [_class_of(f) for f in files]
    sizes = [len(p) for p in parts]
    arr = np.concatenate(parts)
    return Scene(points=arr[:, :3].astype(np.float32), colors=arr[:, 3:].clip(0, 255).astype(np.uint8),
                 semantic=np.repeat(np.array(classes, np.int64), sizes),
                 instance=np.repeat(np.arange(len(files), dtype=np.int64), sizes),
                 class_names=list(S3DIS_NAMES), name=name)


def s3dis_rooms(root: str | Path, split: str | None = None, test_area: int = TEST_AREA) -> list[Path]:
    """Room folders under ``root`` (``Area_N/<room>/``); ``split`` = "train" (all areas but ``test_area``) or "test"."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder does not exist")
    if split not in (None, "train", "test", "val"):
        raise ValueError(f"split must be None, 'train' or 'test' ('val' = 'test'), got {split!r}")
    rooms = []
    for area in sorted(root.glob("Area_*")):
        try:
            number = int(area.name.split("_")[1])
        except (IndexError, ValueError):
            continue
        if split == "train" and number == test_area or split in ("test", "val") and number != test_area:
            continue
        rooms += sorted(p for p in area.iterdir() if p.is_dir())
    if not rooms:
        raise DataError(root, f"no rooms found for split {split!r} (expected Area_N/<room>/)")
    return rooms


class S3DISRooms(Dataset):
    """S3DIS rooms as :class:`Scene` objects; Area ``test_area`` (default 5) is the test split."""

    def __init__(self, root: str | Path, split: str | None = None, test_area: int = TEST_AREA):
        self.rooms = s3dis_rooms(root, split, test_area)
        self.class_names = list(S3DIS_NAMES)

    def __len__(self) -> int:
        return len(self.rooms)

    def __getitem__(self, i: int) -> Scene:
        return read_s3dis_room(self.rooms[i])
