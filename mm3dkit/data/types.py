"""The two records every part of the kit consumes: an RGB-D :class:`Frame` and a labelled :class:`Scene`.

Conventions (all readers and the synthetic generator follow them):

* colour is ``H x W x 3`` ``uint8`` RGB; depth is ``H x W`` ``float32`` in metres with ``0`` meaning "no depth";
  colour and depth have the same size (readers resize colour to the depth resolution and rescale intrinsics).
* ``intrinsics`` is the 3x3 pinhole matrix for that resolution; ``pose`` is 4x4 camera-to-world (OpenCV camera:
  x right, y down, z forward) or ``None`` when unknown.
* semantic labels are class indices ``0..C-1`` of the dataset's training class set; :data:`IGNORE_LABEL` marks
  unlabelled pixels/points. Instance ids are ``>= 0``; ``-1`` means "no instance".
* boxes are ``M x 7`` ``[cx, cy, cz, dx, dy, dz, heading]`` in world/scene coordinates (heading 0 for axis-aligned
  ScanNet-style boxes, rotation about +z for SUN RGB-D) with ``box_labels`` of shape ``M``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IGNORE_LABEL: int = -100
"""Label of unlabelled pixels/points; equals ``torch.nn.CrossEntropyLoss``'s default ``ignore_index``."""


@dataclass
class Frame:
    """One RGB-D frame.

    Example:
        >>> f = Frame(color=np.zeros((4, 5, 3), np.uint8), depth=np.ones((4, 5), np.float32),
        ...           intrinsics=np.array([[5.0, 0, 2], [0, 5.0, 1.5], [0, 0, 1]]))
        >>> f.height, f.width
        (4, 5)
    """

    color: np.ndarray
    depth: np.ndarray
    intrinsics: np.ndarray
    pose: np.ndarray | None = None
    semantic: np.ndarray | None = None
    instance: np.ndarray | None = None
    name: str = ""

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])


@dataclass
class Scene:
    """A labelled point cloud of a whole scene (or one LiDAR sweep).

    Example:
        >>> s = Scene(points=np.zeros((3, 3), np.float32), colors=np.zeros((3, 3), np.uint8))
        >>> len(s)
        3
    """

    points: np.ndarray
    colors: np.ndarray
    semantic: np.ndarray | None = None
    instance: np.ndarray | None = None
    boxes: np.ndarray | None = None
    box_labels: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    name: str = ""

    def __len__(self) -> int:
        return int(self.points.shape[0])
