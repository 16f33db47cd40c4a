"""SUN RGB-D reader for VoteNet's ``sunrgbd_trainval`` export (made by its ``extract_rgbd_data_v2.m``).

Layout (``N`` = 6-digit sample id, e.g. ``000001``)::

    sunrgbd_trainval/image/N.jpg      colour image
    sunrgbd_trainval/depth/N.mat      MATLAB file, variable ``instance``: (P, 6) x, y, z, r, g, b (rgb in 0..1),
                                      points in *upright depth* coordinates (x right, y forward, z up)
    sunrgbd_trainval/calib/N.txt      line 1: Rtilt (9 numbers), line 2: K (9 numbers), both column-major
    sunrgbd_trainval/label/N.txt      one object per line: name xmin ymin w2d h2d cx cy cz w l h ox oy
    sunrgbd_trainval/{train,val}_data_idx.txt   sample ids of the splits

Boxes follow :mod:`mm3dkit.data.types`: ``[cx, cy, cz, dx, dy, dz, heading]`` with ``dx = 2 l``, ``dy = 2 w``,
``dz = 2 h`` (label sizes are half extents) and ``heading = atan2(oy, ox)``, counter-clockwise about +z from +x
(VoteNet's original code stores the negated angle). Only the 10 detection classes
(:data:`~mm3dkit.data.classes.SUNRGBD_NAMES`) are kept, as VoteNet does; other SUN categories are skipped.

Frames: upright points are mapped back to the OpenCV camera with ``Rtilt`` and splatted (nearest z) into a depth
image of the colour image's size. SUN's ``K`` uses MATLAB's 1-based pixel coordinates; the frame's intrinsics are
shifted by one pixel to the kit's 0-based convention. The frame's pose maps the camera to the upright frame.

Example:
    >>> ds = SUNRGBD("/data/sunrgbd", split="val")  # doctest: +SKIP
    >>> scene = ds[0]; scene.boxes.shape[1]  # doctest: +SKIP
    7
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.io import loadmat
from scipy.io.matlab import MatReadError
from torch.utils.data import Dataset

from mm3dkit.data.classes import SUNRGBD_NAMES
from mm3dkit.data.rgbd import read_color
from mm3dkit.data.types import Frame, Scene
from mm3dkit.errors import DataError
from mm3dkit.geometry import project

CAMERA_TO_UPRIGHT_AXES = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
"""OpenCV camera (x right, y down, z forward) -> SUN depth axes (x right, y forward, z up)."""


def _trainval(root: str | Path) -> Path:
    root = Path(root)
    base = root / "sunrgbd_trainval" if (root / "sunrgbd_trainval").is_dir() else root
    if not base.is_dir():
        raise DataError(root, "dataset folder does not exist")
    return base


def read_calib(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``calib/N.txt`` -> ``(Rtilt 3x3, K 3x3)`` exactly as stored (K in 1-based pixel coordinates)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file is missing")
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        if len(lines) < 2 or len(lines[0]) != 9 or len(lines[1]) != 9:
            raise ValueError(f"expected two lines of 9 numbers, got {[len(x) for x in lines]}")
        Rtilt = np.array(lines[0], dtype=np.float64).reshape(3, 3, order="F")
        K = np.array(lines[1], dtype=np.float64).reshape(3, 3, order="F")
    except ValueError as exc:
        raise DataError(path, f"not a SUN RGB-D calib file (Rtilt line, K line): {exc}") from exc
    if not (np.isfinite(Rtilt).all() and np.isfinite(K).all()):
        raise DataError(path, "calibration contains NaN or infinite values")
    return Rtilt, K


def read_points_mat(path: str | Path) -> np.ndarray:
    """``depth/N.mat`` -> ``(P, 6)`` float64 upright points with rgb in 0..1."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file is missing")
    try:
        pts = np.asarray(loadmat(str(path))["instance"], dtype=np.float64)
    except (MatReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DataError(path, f"not a MATLAB file with an 'instance' point array ({exc!r})") from exc
    if pts.ndim != 2 or pts.shape[1] != 6 or len(pts) == 0:
        raise DataError(path, f"expected a non-empty (P, 6) point array, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise DataError(path, "points contain NaN or infinite values")
    return pts


def read_boxes(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """``label/N.txt`` -> ``(boxes (M, 7), labels (M,), skipped)``; ``skipped`` counts non-detection classes."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file is missing")
    boxes, labels, skipped = [], [], 0
    for k, line in enumerate(ln for ln in path.read_text().splitlines() if ln.strip()):
        parts = line.split()
        try:
            vals = np.array(parts[1:], dtype=np.float64)
            if vals.shape != (12,):
                raise ValueError(f"expected a name and 12 numbers, got {len(parts)} fields")
        except ValueError as exc:
            raise DataError(path, f"line {k + 1}: {exc}") from exc
        if parts[0] not in SUNRGBD_NAMES:
            skipped += 1
            continue
        centre, (w, l, h), (ox, oy) = vals[4:7], vals[7:10], vals[10:12]
        boxes.append([*centre, 2 * l, 2 * w, 2 * h, np.arctan2(oy, ox)])
        labels.append(SUNRGBD_NAMES.index(parts[0]))
    return np.array(boxes, np.float32).reshape(-1, 7), np.array(labels, np.int64), skipped


def camera_pose(Rtilt: np.ndarray) -> np.ndarray:
    """4x4 camera(OpenCV)-to-upright transform of a SUN RGB-D sample."""
    pose = np.eye(4)
    pose[:3, :3] = Rtilt @ CAMERA_TO_UPRIGHT_AXES
    return pose


def zero_based_intrinsics(K: np.ndarray) -> np.ndarray:
    """SUN's 1-based ``K`` -> the kit's 0-based pixel-centre convention."""
    K0 = np.array(K, dtype=np.float64)
    K0[0, 2] -= 1.0
    K0[1, 2] -= 1.0
    return K0


def render_depth(points: np.ndarray, K: np.ndarray, pose: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-depth splat of world points into an ``size = (H, W)`` depth image (0 where no point lands)."""
    h, w = size
    uv, ok = project(points, K, pose, image_size=size)
    cam = (torch.as_tensor(points, dtype=torch.float64) - torch.as_tensor(pose[:3, 3])) @ torch.as_tensor(pose[:3, :3])
    flat = (uv[ok, 1].round().long() * w + uv[ok, 0].round().long())
    depth = torch.full((h * w,), float("inf"), dtype=torch.float32)
    depth.scatter_reduce_(0, flat, cam[ok, 2].float(), reduce="amin")
    depth[torch.isinf(depth)] = 0.0
    return depth.view(h, w).numpy()


def sample_ids(root: str | Path, split: str | None = None) -> list[int]:
    """Sample ids of a split (``train``/``val`` from ``<split>_data_idx.txt``) or all samples with a point file."""
    base = _trainval(root)
    if split is None:
        ids = sorted(int(p.stem) for p in (base / "depth").glob("*.mat"))
    else:
        listing = base / f"{split}_data_idx.txt"
        if not listing.is_file():
            raise DataError(listing, f"split file for {split!r} is missing")
        ids = [int(x) for x in listing.read_text().split()]
    if not ids:
        raise DataError(base, f"no samples found for split {split!r}")
    return ids


def read_sunrgbd_scene(root: str | Path, idx: int) -> Scene:
    """Sample ``idx`` as a :class:`Scene`: upright points, colours, oriented boxes of the 10 classes."""
    base = _trainval(root)
    pts = read_points_mat(base / "depth" / f"{idx:06d}.mat")
    boxes, labels, _ = read_boxes(base / "label" / f"{idx:06d}.txt")
    return Scene(points=pts[:, :3].astype(np.float32), colors=(pts[:, 3:].clip(0, 1) * 255).round().astype(np.uint8),
                 boxes=boxes, box_labels=labels, class_names=list(SUNRGBD_NAMES), name=f"{idx:06d}")


def read_sunrgbd_frame(root: str | Path, idx: int) -> Frame:
    """Sample ``idx`` as a :class:`Frame` (colour, depth rendered from the points, 0-based K, pose to upright)."""
    base = _trainval(root)
    color = read_color(base / "image" / f"{idx:06d}.jpg")
    Rtilt, K = read_calib(base / "calib" / f"{idx:06d}.txt")
    pts = read_points_mat(base / "depth" / f"{idx:06d}.mat")
    K0, pose = zero_based_intrinsics(K), camera_pose(Rtilt)
    depth = render_depth(pts[:, :3], K0, pose, color.shape[:2])
    if not np.any(depth > 0):
        raise DataError(base / "depth" / f"{idx:06d}.mat", "no point projects into the image (calib/image mismatch?)")
    return Frame(color=color, depth=depth, intrinsics=K0, pose=pose, name=f"{idx:06d}")


class SUNRGBD(Dataset):
    """SUN RGB-D samples as :class:`Scene` (``kind="scene"``, detection) or :class:`Frame` (``kind="frame"``)."""

    def __init__(self, root: str | Path, split: str | None = "train", kind: str = "scene"):
        if kind not in ("scene", "frame"):
            raise ValueError(f"kind must be 'scene' or 'frame', got {kind!r}")
        self.root, self.kind = Path(root), kind
        self.ids = sample_ids(root, split)
        self.class_names = list(SUNRGBD_NAMES)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Scene | Frame:
        reader = read_sunrgbd_scene if self.kind == "scene" else read_sunrgbd_frame
        return reader(self.root, self.ids[i])
