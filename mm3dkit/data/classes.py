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
