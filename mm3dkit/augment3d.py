"""3D augmentation for single-scan pre-training: rotation, scaling, translation, point density and colour jitter.

The network should become invariant to orientation, point density and colour fluctuations (paper, Stage 2).
Defaults follow the ScanNet training setting of PointContrast / CSC (MinkowskiEngine's ScanNet loader): full
rotation about the up axis, +-pi/64 about the two others, scale in [0.9, 1.1]; point density varies by random
point dropout (up to 20 %) and by jittering the voxel size (+-10 %); colour gets a brightness shift, a contrast
change and per-point noise (colours in [0, 1]).

Augmentation moves points but never re-orders the kept ones, and returns the indices it kept, so each point's pixel
(:mod:`mm3dkit.point_pixel`) stays attached: the point-pixel pairing is still exact after augmentation.

Randomness comes from the global torch RNG (or a given ``torch.Generator``); the training loop seeds it per item.

Example:
    >>> aug = Augment3D()
    >>> out = aug(torch.rand(100, 3), torch.rand(100, 3), generator=torch.Generator().manual_seed(0))
    >>> out.points.shape[1], bool((out.keep.diff() > 0).all()), 0.9 <= out.voxel_scale <= 1.1
    (3, True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Augmented:
    """Augmented ``points``/``colors`` of the kept input rows ``keep`` (ascending) and the voxel-size factor."""

    points: torch.Tensor
    colors: torch.Tensor
    keep: torch.Tensor
    voxel_scale: float


def axis_rotation(axis: int, angle: float | torch.Tensor) -> torch.Tensor:
    """3x3 rotation by ``angle`` (radians) about coordinate axis ``axis`` (0 = x, 1 = y, 2 = z).

    Example:
        >>> axis_rotation(2, math.pi / 2) @ torch.tensor([1.0, 0, 0])
        tensor([-4.3711e-08,  1.0000e+00,  0.0000e+00])
    """
    a = torch.as_tensor(angle, dtype=torch.float32)
    c, s = torch.cos(a), torch.sin(a)
    i, j = [k for k in range(3) if k != axis]
    R = torch.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


@dataclass
class Augment3D:
    """Random 3D augmentation; every range is a parameter (0 disables a transform).

    ``up_axis``: 2 for ScanNet world coordinates (z up), 1 for OpenCV camera coordinates (y down).
    """

    up_axis: int = 2
    rotate_up: float = 2 * math.pi  # angle range about the up axis: uniform in [-rotate_up/2, rotate_up/2]
    tilt: float = math.pi / 64  # uniform in [-tilt, tilt] about each of the two other axes
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.2  # metres, uniform in [-translate, translate] per axis
    dropout: float = 0.2  # drop a random fraction in [0, dropout] of the points
    voxel_jitter: float = 0.1  # voxel size multiplied by a factor in [1 - voxel_jitter, 1 + voxel_jitter]
    color_shift: float = 0.1  # brightness shift per scan (all channels), colours in [0, 1]
    color_contrast: tuple[float, float] = (0.8, 1.2)  # contrast factor about the scan's mean colour
    color_noise: float = 0.03  # per-point Gaussian noise std

    @classmethod
    def identity(cls, up_axis: int = 2) -> Augment3D:
        """No augmentation (evaluation)."""
        return cls(up_axis=up_axis, rotate_up=0.0, tilt=0.0, scale=(1.0, 1.0), translate=0.0, dropout=0.0,
                   voxel_jitter=0.0, color_shift=0.0, color_contrast=(1.0, 1.0), color_noise=0.0)

    def _u(self, lo: float, hi: float, g: torch.Generator | None) -> float:
        return float(lo + (hi - lo) * torch.rand((), generator=g))

    def rotation(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random rotation: small tilts about the two horizontal axes, then any angle about the up axis."""
        R = axis_rotation(self.up_axis, self._u(-self.rotate_up / 2, self.rotate_up / 2, generator))
        for ax in (k for k in range(3) if k != self.up_axis):
            R = R @ axis_rotation(ax, self._u(-self.tilt, self.tilt, generator))
        return R

    def __call__(self, points: torch.Tensor, colors: torch.Tensor,
                 generator: torch.Generator | None = None) -> Augmented:
        """Augment ``points (N, 3)`` and ``colors (N, 3)`` in [0, 1]; returns the kept rows' new values."""
        g = generator
        n = points.shape[0]
        keep = torch.arange(n)
        if self.dropout > 0 and n > 1:
            frac = self._u(0.0, self.dropout, g)
            keep = torch.nonzero(torch.rand(n, generator=g) >= frac).squeeze(1)
            if keep.numel() == 0:
                keep = torch.arange(n)
        p = points[keep].float()
        centre = p.mean(0)
        p = (p - centre) @ self.rotation(g).T * self._u(*self.scale, g) + centre
        if self.translate > 0:
            p = p + (torch.rand(3, generator=g) * 2 - 1) * self.translate
        c = colors[keep].float()
        if self.color_contrast != (1.0, 1.0):
            mean = c.mean(0)
            c = (c - mean) * self._u(*self.color_contrast, g) + mean
        if self.color_shift > 0:
            c = c + self._u(-self.color_shift, self.color_shift, g)
        if self.color_noise > 0:
            c = c + torch.randn(c.shape, generator=g) * self.color_noise
        scale = self._u(1 - self.voxel_jitter, 1 + self.voxel_jitter, g) if self.voxel_jitter > 0 else 1.0
        return Augmented(points=p, colors=c.clamp(0, 1), keep=keep.to(points.device), voxel_scale=scale)
