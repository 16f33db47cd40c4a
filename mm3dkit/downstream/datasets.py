"""Registry of the downstream datasets: ``get_dataset(name, root, split)`` -> list-like of :class:`Scene`, plus
:func:`dataset_info` (class names, "thing" classes for instances/boxes, oriented boxes or not, test split).

Standard splits: ScanNet / synthetic ``train`` / ``val`` (``scannetv2_<split>.txt``); S3DIS Area 5 is the test area
(``val``/``test`` -> Area 5, ``train`` -> the other areas); SemanticKITTI sequence 08 is ``val``; SUN RGB-D its
official ``train``/``val``. The readers live in :mod:`mm3dkit.data`; the ones other than ScanNet's are imported
when asked for.

Example:
    >>> info = dataset_info("synthetic")
    >>> info.num_classes, "wall" in [info.class_names[c] for c in info.thing_classes]
    (20, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mm3dkit.data.classes import S3DIS_NAMES, SCANNET20_NAMES, SEMANTIC_KITTI_NAMES, SUNRGBD_NAMES
from mm3dkit.data.types import Scene


@dataclass(frozen=True)
class DatasetInfo:
    """Class set and evaluation conventions of a dataset."""

    name: str
    class_names: tuple[str, ...]
    thing_classes: tuple[int, ...]  # evaluated for instances / boxes (ScanNet: all but wall and floor)
    oriented_boxes: bool = False
    eval_split: str = "val"
    reader: str = "scannet"  # module in mm3dkit.data

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _things(names: Sequence[str], stuff: Sequence[str]) -> tuple[int, ...]:
    return tuple(i for i, n in enumerate(names) if n not in stuff)


DATASETS: dict[str, DatasetInfo] = {
    "synthetic": DatasetInfo("synthetic", SCANNET20_NAMES, _things(SCANNET20_NAMES, ("wall", "floor"))),
    "scannet": DatasetInfo("scannet", SCANNET20_NAMES, _things(SCANNET20_NAMES, ("wall", "floor"))),
    "s3dis": DatasetInfo("s3dis", S3DIS_NAMES, _things(S3DIS_NAMES, ("ceiling", "floor", "wall", "beam", "column")),
                         eval_split="val", reader="s3dis"),
    "semantickitti": DatasetInfo("semantickitti", SEMANTIC_KITTI_NAMES, tuple(range(8)),
                                 reader="semantic_kitti"),
    "sunrgbd": DatasetInfo("sunrgbd", SUNRGBD_NAMES, tuple(range(len(SUNRGBD_NAMES))), oriented_boxes=True,
                           reader="sunrgbd"),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name]


def get_dataset(name: str, root: str | Path, split: str | None = None) -> Sequence[Scene]:
    """Scenes of dataset ``name`` under ``root`` (``split`` ``"train"``/``"val"``/``"test"`` or ``None`` = all).

    Synthetic and ScanNet use :class:`mm3dkit.data.scannet.ScanNetScenes`; S3DIS :class:`~mm3dkit.data.s3dis.S3DISRooms`
    (``val``/``test`` = Area 5), SemanticKITTI :class:`~mm3dkit.data.semantic_kitti.SemanticKITTI`, SUN RGB-D
    :class:`~mm3dkit.data.sunrgbd.SUNRGBD` (scenes with oriented boxes).
    """
    info = dataset_info(name)
    if info.reader == "scannet":
        from mm3dkit.data.scannet import ScanNetScenes

        return ScanNetScenes(root, split=split)
    if info.reader == "s3dis":
        from mm3dkit.data.s3dis import S3DISRooms

        return S3DISRooms(root, split={"val": "test"}.get(split, split))
    if info.reader == "semantic_kitti":
        from mm3dkit.data.semantic_kitti import SemanticKITTI

        return SemanticKITTI(root, split=split)
    from mm3dkit.data.sunrgbd import SUNRGBD

    return SUNRGBD(root, split=split, kind="scene")
