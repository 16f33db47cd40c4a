"""Class sets of the supported datasets and the maps between them.

ScanNet label images and ``*.labels.ply`` files store NYU40 ids (1..40, 0 = unannotated) after the
``scannetv2-labels.combined.tsv`` mapping; the 20-class ScanNet benchmark keeps :data:`SCANNET20_NYU40_IDS`.

Example:
    >>> int(nyu40_to_scannet20([0, 1, 3, 40])[2])
    2
"""

from __future__ import annotations

import numpy as np

from mm3dkit.data.types import IGNORE_LABEL

NYU40_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
    "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain", "box",
    "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)
"""NYU40 class names; the id of ``NYU40_NAMES[i]`` is ``i + 1``."""

SCANNET20_NYU40_IDS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
"""NYU40 ids kept by the ScanNet 20-class semantic segmentation benchmark, in training-index order."""

SCANNET20_NAMES: tuple[str, ...] = tuple(NYU40_NAMES[i - 1] for i in SCANNET20_NYU40_IDS)

_NYU40_TO_SCANNET20 = np.full(41, IGNORE_LABEL, dtype=np.int64)
_NYU40_TO_SCANNET20[list(SCANNET20_NYU40_IDS)] = np.arange(len(SCANNET20_NYU40_IDS))


def nyu40_to_scannet20(nyu40: np.ndarray | list[int]) -> np.ndarray:
    """Map NYU40 ids (0..40) to ScanNet-20 training indices (0..19), others to :data:`IGNORE_LABEL`."""
    ids = np.asarray(nyu40, dtype=np.int64)
    out = np.full(ids.shape, IGNORE_LABEL, dtype=np.int64)
    ok = (ids >= 0) & (ids <= 40)
    out[ok] = _NYU40_TO_SCANNET20[ids[ok]]
    return out


S3DIS_NAMES: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa", "bookcase", "board",
    "clutter",
)
"""The 13 S3DIS classes in the usual training-index order (annotation files are named ``<class>_<k>.txt``)."""

S3DIS_ALIASES: dict[str, str] = {"stairs": "clutter"}
"""Annotation names outside the 13 classes that the common preprocessing (PointNet's) folds into a class."""

SEMANTIC_KITTI_NAMES: tuple[str, ...] = (
    "car", "bicycle", "motorcycle", "truck", "other-vehicle", "person", "bicyclist", "motorcyclist", "road", "parking",
    "sidewalk", "other-ground", "building", "fence", "vegetation", "trunk", "terrain", "pole", "traffic-sign",
)
"""The 19 SemanticKITTI evaluation classes; training index ``i`` is learning-map class ``i + 1``."""

SEMANTIC_KITTI_LEARNING_MAP: dict[int, int] = {
    0: 0, 1: 0, 10: 1, 11: 2, 13: 5, 15: 3, 16: 5, 18: 4, 20: 5, 30: 6, 31: 7, 32: 8, 40: 9, 44: 10, 48: 11, 49: 12,
    50: 13, 51: 14, 52: 0, 60: 9, 70: 15, 71: 16, 72: 17, 80: 18, 81: 19, 99: 0, 252: 1, 253: 7, 254: 6, 255: 8,
    256: 5, 257: 5, 258: 4, 259: 5,
}
"""Raw SemanticKITTI label -> learning class (0 = ignored, 1..19), the ``learning_map`` of ``semantic-kitti.yaml``
(moving classes fold into their static class)."""

SUNRGBD_NAMES: tuple[str, ...] = (
    "bed", "table", "sofa", "chair", "toilet", "desk", "dresser", "night_stand", "bookshelf", "bathtub",
)
"""The 10 SUN RGB-D detection classes used by VoteNet (and by the paper's detection fine-tuning)."""
