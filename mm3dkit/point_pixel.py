"""Point <-> pixel pairing and bilinear sampling of 2D feature maps at the points' pixels.

Two ways to pair points with pixels of one RGB-D frame:

* :func:`frame_points` back-projects the frame's depth: every point keeps the pixel it came from, so the pairing is
  exact by construction (before any 3D augmentation, which moves the points but not their pixel);
* :func:`pair_external_points` projects points that do not come from this depth map (a mesh, a LiDAR sweep with a
  calibrated camera) and keeps only those inside the image and not occluded (depth test with ``geometry.project``).

:func:`sample_pixel_features` reads a batch of feature maps at float pixel positions with ``grid_sample`` (bilinear,
one call for the whole batch). Pixel ``(u, v)`` follows :mod:`mm3dkit.geometry` (centre of pixel (row r, col c) at
``u = c, v = r``), which is ``grid_sample``'s ``align_corners=False`` convention, so feature maps of any resolution
(e.g. a decoder at 1/2 of the input size) are sampled at the same physical place.

Example:
    >>> from mm3dkit.data.types import Frame
    >>> f = Frame(color=np.zeros((4, 6, 3), np.uint8), depth=np.ones((4, 6), np.float32),
    ...           intrinsics=np.array([[3.0, 0, 2.5], [0, 3.0, 1.5], [0, 0, 1]]))
    >>> pts = frame_points(f)
    >>> feats = torch.arange(24.0).view(1, 1, 4, 6)  # value = 6 * row + col
    >>> got = sample_pixel_features(feats, pts.uv, torch.zeros(len(pts.uv), dtype=torch.long), (4, 6))
    >>> bool(torch.allclose(got[:, 0], (6 * pts.pixels[:, 0] + pts.pixels[:, 1]).float(), atol=1e-5))
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mm3dkit.data.types import Frame
from mm3dkit.errors import DataError
from mm3dkit.geometry import back_project, project


@dataclass
class FramePoints:
    """Points of one frame with their pixels: ``points (N, 3)`` float, ``colors (N, 3)`` float in [0, 1],
    ``pixels (N, 2)`` int64 (row, col) and ``uv (N, 2)`` float (column, row) pixel coordinates."""

    points: torch.Tensor
    colors: torch.Tensor
    pixels: torch.Tensor
    uv: torch.Tensor

    def __len__(self) -> int:
        return int(self.points.shape[0])


def _name(frame: Frame) -> str:
    return frame.name or "frame"


def frame_points(frame: Frame, world: bool = False, min_points: int = 1) -> FramePoints:
    """Back-project all pixels with valid depth; camera coordinates, or world ones when ``world`` (needs a pose).

    Raises :class:`DataError` naming the frame when fewer than ``min_points`` pixels have valid depth.
    """
    if frame.depth.ndim != 2 or frame.color.shape[:2] != frame.depth.shape:
        raise DataError(_name(frame), f"colour {frame.color.shape} and depth {frame.depth.shape} must share H x W")
    if world and frame.pose is None:
        raise DataError(_name(frame), "world coordinates requested but the frame has no pose")
    pts, pix = back_project(frame.depth, frame.intrinsics, frame.pose if world else None)
    if len(pts) < min_points:
        raise DataError(_name(frame), f"only {len(pts)} pixels have valid depth (> 0); need at least {min_points}")
    color = torch.from_numpy(np.asarray(frame.color)[pix[:, 0].numpy(), pix[:, 1].numpy()]).float() / 255.0
    return FramePoints(points=pts, colors=color, pixels=pix, uv=pix.flip(1).float())


def pair_external_points(points: torch.Tensor | np.ndarray, frame: Frame, world: bool = True,
                         occlusion_tol: float = 0.05, min_points: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels ``uv (N, 2)`` of points that do not come from ``frame``'s depth, and the mask of usable ones.

    A point is usable when it projects inside the image, in front of the camera and agrees with the frame's depth
    (``|depth - z| <= occlusion_tol * z``), so points hidden behind a surface are not paired with that surface.
    ``world`` means ``points`` are in world coordinates (the frame's pose is used). Raises :class:`DataError` when
    fewer than ``min_points`` points are usable (e.g. all outside the image).

    Example:
        >>> f = Frame(color=np.zeros((4, 6, 3), np.uint8), depth=np.ones((4, 6), np.float32),
        ...           intrinsics=np.array([[3.0, 0, 2.5], [0, 3.0, 1.5], [0, 0, 1]]))
        >>> uv, ok = pair_external_points(torch.tensor([[0.0, 0, 1], [0, 0, 3], [9, 0, 1]]), f, world=False)
        >>> ok.tolist()
        [True, False, False]
    """
    if world and frame.pose is None:
        raise DataError(_name(frame), "points are in world coordinates but the frame has no pose")
    uv, valid = project(points, frame.intrinsics, frame.pose if world else None, depth_map=frame.depth,
                        occlusion_tol=occlusion_tol)
    if int(valid.sum()) < min_points:
        raise DataError(_name(frame), f"{int(valid.sum())} of {len(uv)} points project into the image unoccluded; "
                        f"need at least {min_points} (wrong pose/intrinsics, or points of another scene?)")
    return uv, valid


def uv_to_grid(uv: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Pixel coordinates ``(u, v)`` of an ``(H, W)`` image -> ``grid_sample`` coordinates in [-1, 1]
    (``align_corners=False``: pixel centre ``u = c`` maps to ``(2c + 1) / W - 1``)."""
    h, w = image_size
    scale = torch.tensor([2.0 / w, 2.0 / h], device=uv.device, dtype=torch.float32)
    return (uv.float() + 0.5) * scale - 1.0


def sample_pixel_features(feature_maps: torch.Tensor, uv: torch.Tensor, batch_index: torch.Tensor,
                          image_size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly sample ``feature_maps (B, C, h, w)`` at pixels ``uv (M, 2)`` of images of size ``image_size``.

    ``batch_index (M,)`` says which image each point belongs to. Returns ``(M, C)`` in the input order.
    """
    return sample_grid_features(feature_maps, uv_to_grid(uv, image_size), batch_index)


def sample_grid_features(feature_maps: torch.Tensor, grid: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
    """Like :func:`sample_pixel_features` with positions already in ``grid_sample`` coordinates ``(M, 2)``.

    One ``grid_sample`` call for the batch: points are laid out in a padded ``(B, 1, max_per_image, 2)`` grid (no
    Python loop over points or images). Positions outside the image are clamped to the border.
    """
    if feature_maps.ndim != 4:
        raise ValueError(f"feature_maps must be (B, C, h, w), got {tuple(feature_maps.shape)}")
    B, m = feature_maps.shape[0], grid.shape[0]
    if m == 0:
        return feature_maps.new_zeros((0, feature_maps.shape[1]))
    bi = batch_index.long()
    slot = rank_within_groups(bi, B)
    padded = torch.zeros(B, int(slot.max()) + 1, 2, device=feature_maps.device, dtype=feature_maps.dtype)
    padded[bi, slot] = grid.to(padded.dtype)
    sampled = F.grid_sample(feature_maps, padded.unsqueeze(1), mode="bilinear", padding_mode="border",
                            align_corners=False)  # (B, C, 1, max)
    return sampled[bi, :, 0, slot]


def rank_within_groups(group: torch.Tensor, n_groups: int | None = None) -> torch.Tensor:
    """For each element, its position among the elements of the same group (in input order).

    Example:
        >>> rank_within_groups(torch.tensor([1, 0, 1, 1, 0])).tolist()
        [0, 0, 1, 2, 1]
    """
    g = group.long()
    counts = torch.bincount(g, minlength=n_groups or 0)
    order = torch.argsort(g, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(g)
    rank[order] = torch.arange(g.numel(), device=g.device) - starts[g[order]]
    return rank


def sample_pairs(batch_index: torch.Tensor, per_scan: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of up to ``per_scan`` random rows of each scan (all rows of a scan with fewer), without replacement.

    Vectorised: random keys, one sort by (scan, key), keep the first ``per_scan`` of each scan. Uses the global
    torch RNG unless a ``generator`` is given.

    Example:
        >>> idx = sample_pairs(torch.tensor([0, 0, 0, 1, 1]), 2, torch.Generator().manual_seed(0))
        >>> torch.bincount(torch.tensor([0, 0, 0, 1, 1])[idx]).tolist()
        [2, 2]
    """
    bi = batch_index.long()
    keys = torch.rand(bi.numel(), generator=generator).to(bi.device)
    order = torch.argsort(bi.double() * 2.0 + keys.double())  # scans in order, random order inside each
    rank = rank_within_groups(bi[order])
    return order[rank < per_scan]
