"""Pinhole camera geometry in vectorised torch (CPU or CUDA): back-projection, projection, intrinsics, voxels.

Conventions: OpenCV camera (x right, y down, z forward); pixel ``(u, v)`` = (column, row) and the centre of pixel
``(row r, column c)`` is at ``u = c, v = r`` (as Open3D and ScanNet do); ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``;
``pose`` is 4x4 camera-to-world. All functions accept NumPy arrays or tensors and return tensors on the input's device.

Example:
    >>> depth = torch.ones(2, 3)
    >>> K = torch.tensor([[2.0, 0, 1], [0, 2.0, 0.5], [0, 0, 1]])
    >>> pts, pix = back_project(depth, K)
    >>> uv, ok = project(pts, K, image_size=(2, 3))
    >>> bool(torch.allclose(uv, pix.float()[:, [1, 0]])) and bool(ok.all())
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _t(x: ArrayLike, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x)
    return t.to(dtype=dtype, device=device if device is not None else t.device)


def back_project(depth: ArrayLike, K: ArrayLike, pose: ArrayLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points of all valid pixels (depth > 0 and finite) and the ``(row, col)`` pixel each came from.

    Returns ``points (N, 3)`` in camera coordinates, or world coordinates when ``pose`` (camera-to-world) is given,
    and ``pixels (N, 2)`` int64 ``(row, col)``.
    """
    d = _t(depth)
    Kt = _t(K, device=d.device)
    rows, cols = torch.nonzero(torch.isfinite(d) & (d > 0), as_tuple=True)
    z = d[rows, cols]
    x = (cols.to(z.dtype) - Kt[0, 2]) * z / Kt[0, 0]
    y = (rows.to(z.dtype) - Kt[1, 2]) * z / Kt[1, 1]
    pts = torch.stack([x, y, z], dim=1)
    if pose is not None:
        pts = transform_points(pts, pose)
    return pts, torch.stack([rows, cols], dim=1)


def transform_points(points: ArrayLike, T: ArrayLike) -> torch.Tensor:
    """Apply a 4x4 rigid transform to ``(N, 3)`` points."""
    p = _t(points)
    Tt = _t(T, device=p.device)
    return p @ Tt[:3, :3].T + Tt[:3, 3]


def project(points: ArrayLike, K: ArrayLike, pose: ArrayLike | None = None, image_size: tuple[int, int] | None = None,
            depth_map: ArrayLike | None = None, occlusion_tol: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Project points to pixel coordinates ``(u, v)`` (float) with a validity mask.

    ``pose`` (camera-to-world) means ``points`` are in world coordinates. A point is valid when it is in front of the
    camera (z > 0), inside ``image_size = (height, width)`` (pixel centres within ``[-0.5, W - 0.5)``), and, when
    ``depth_map`` is given, not occluded: the depth map's value at its nearest pixel is within ``occlusion_tol``
    (relative: ``|d - z| <= occlusion_tol * z``) of the point's depth.
    """
    p = _t(points)
    Kt = _t(K, device=p.device)
    if pose is not None:
        p = transform_points(p, torch.linalg.inv(_t(pose, torch.float64, p.device)).to(p.dtype))
    z = p[:, 2]
    safe_z = torch.where(z > 0, z, torch.ones_like(z))
    u = Kt[0, 0] * p[:, 0] / safe_z + Kt[0, 2]
    v = Kt[1, 1] * p[:, 1] / safe_z + Kt[1, 2]
    uv = torch.stack([u, v], dim=1)
    valid = z > 0
    if image_size is not None or depth_map is not None:
        h, w = image_size if image_size is not None else tuple(_t(depth_map).shape)  # type: ignore[misc]
        valid &= (u >= -0.5) & (u < w - 0.5) & (v >= -0.5) & (v < h - 0.5)
    if depth_map is not None:
        d = _t(depth_map, device=p.device)
        col = u.round().long().clamp(0, d.shape[1] - 1)
        row = v.round().long().clamp(0, d.shape[0] - 1)
        observed = d[row, col]
        valid &= (observed > 0) & ((observed - z).abs() <= occlusion_tol * z)
    return uv, valid


def scale_intrinsics(K: ArrayLike, sx: float, sy: float) -> torch.Tensor:
    """Intrinsics after scaling the image by ``sx`` horizontally and ``sy`` vertically.

    With pixel centres at integer coordinates, ``u' = sx * (u + 0.5) - 0.5``, so ``cx' = sx * (cx + 0.5) - 0.5``.
    """
    Kt = _t(K, torch.float64).clone()
    Kt[0, 0] *= sx
    Kt[1, 1] *= sy
    Kt[0, 2] = sx * (Kt[0, 2] + 0.5) - 0.5
    Kt[1, 2] = sy * (Kt[1, 2] + 0.5) - 0.5
    return Kt


def resize_intrinsics(K: ArrayLike, old_size: tuple[int, int], new_size: tuple[int, int]) -> torch.Tensor:
    """Intrinsics for an image resized from ``old_size`` to ``new_size`` (both ``(height, width)``)."""
    return scale_intrinsics(K, new_size[1] / old_size[1], new_size[0] / old_size[0])


def crop_intrinsics(K: ArrayLike, top: int, left: int) -> torch.Tensor:
    """Intrinsics of the crop whose top-left pixel was ``(top, left)`` in the original image."""
    Kt = _t(K, torch.float64).clone()
    Kt[0, 2] -= left
    Kt[1, 2] -= top
    return Kt


@dataclass
class Voxelization:
    """Result of :func:`voxelize`: ``coords`` (M, 3) int voxel coordinates, ``index`` (M,) one point per voxel,
    ``inverse`` (N,) the voxel of every point (``coords[inverse]`` is each point's voxel)."""

    coords: torch.Tensor
    index: torch.Tensor
    inverse: torch.Tensor


def voxelize(points: ArrayLike, voxel_size: float) -> Voxelization:
    """Quantise points to a grid of ``voxel_size``, keeping the point->voxel map to carry labels back to all points.

    The kept point of a voxel is the first one in input order (deterministic).

    Example:
        >>> v = voxelize(torch.tensor([[0.01, 0, 0], [0.02, 0, 0], [0.5, 0, 0]]), 0.1)
        >>> v.coords.tolist(), v.index.tolist(), v.inverse.tolist()
        ([[0, 0, 0], [5, 0, 0]], [0, 2], [0, 0, 1])
    """
    p = _t(points)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"voxelize expects points of shape (N, 3), got {tuple(p.shape)}")
    if not torch.isfinite(p).all():
        raise ValueError("voxelize got NaN or infinite point coordinates; drop invalid points first")
    grid = torch.floor(p / voxel_size).long()
    coords, inverse = torch.unique(grid, dim=0, return_inverse=True)
    n = inverse.numel()
    # first point of each voxel: the smallest point index among those mapped to it
    index = torch.full((coords.shape[0],), n, dtype=torch.long, device=p.device)
    index.scatter_reduce_(0, inverse, torch.arange(n, device=p.device), reduce="amin")
    return Voxelization(coords=coords, index=index, inverse=inverse)
