"""3D boxes derived from (predicted or ground-truth) instances.

Detection in this kit is "instances -> boxes": each predicted instance becomes one box with its class and score,
evaluated by :func:`mm3dkit.downstream.metrics.evaluate_detection` (mAP@0.25 / mAP@0.5, 3D IoU). A VoteNet head is
out of scope. Boxes are axis-aligned (ScanNet, synthetic) or oriented about +z (SUN RGB-D): the heading is the
principal direction of the instance's points seen from above, the extents are taken in that frame.

Example:
    >>> import numpy as np
    >>> pts = np.array([[0, 0, 0], [2, 1, 1], [1, 0.5, 0.5]], np.float32)
    >>> instance_boxes(pts, np.array([[True, True, True]])).round(2).tolist()
    [[1.0, 0.5, 0.5, 2.0, 1.0, 1.0, 0.0]]
"""

from __future__ import annotations

import numpy as np


def _box(p: np.ndarray, oriented: bool) -> list[float]:
    heading = 0.0
    if oriented and len(p) >= 3:
        xy = p[:, :2] - p[:, :2].mean(0)
        _, vecs = np.linalg.eigh(xy.T @ xy)
        major = vecs[:, -1]
        heading = float(np.arctan2(major[1], major[0]))
    c, s = np.cos(heading), np.sin(heading)
    R = np.array([[c, -s], [s, c]])
    local = p[:, :2] @ R  # coordinates along the box axes
    lo, hi = np.r_[local.min(0), p[:, 2].min()], np.r_[local.max(0), p[:, 2].max()]
    mid = (lo + hi) / 2
    centre_xy = R @ mid[:2]
    return [centre_xy[0], centre_xy[1], mid[2], *(hi - lo), heading]


def instance_boxes(points: np.ndarray, masks: np.ndarray, oriented: bool = False) -> np.ndarray:
    """``(K, 7)`` boxes ``[cx, cy, cz, dx, dy, dz, heading]`` enclosing each instance mask's points."""
    points = np.asarray(points, np.float64)
    return np.array([_box(points[m], oriented) for m in np.asarray(masks, bool)], np.float64).reshape(-1, 7)
