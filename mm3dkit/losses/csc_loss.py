"""Contrastive Scene Contexts (CSC) loss: PointInfoNCE with the negatives of each point split by where they lie.

For a sampled set of matched points (features ``q`` of scan 0, ``k`` of scan 1, positions ``xyz`` of the scan-0
points), every other point ``j`` gets a *partition* relative to point ``i`` from the vector ``xyz[j] - xyz[i]``
(shape-context bins, :func:`shape_context_partitions`):

* distance: bin 0 for ``r1 <= d < r2``, bin 1 for ``d >= r2``; closer than ``r1`` -> no partition (never a negative);
* azimuth ``atan2(dy, dx)`` in ``[0, 2pi)`` cut into ``n_azimuth`` bins, and ``atan2(dy, dz)`` folded to ``[0, pi)``
  cut into ``n_polar`` bins;
* partition id = ``(distance_bin * n_azimuth + azimuth_bin) * n_polar + polar_bin``.

CSC's released sparse-conv setting: ``nbins_xy = nbins_zy = 2`` (4 angle bins) x 2 distance bins = 8 partitions,
``r1 = 2``, ``r2 = 20`` in units of the 2.5 cm voxels (0.05 m and 0.5 m here, in metres), ``npos = 4096`` per scan,
``tau = 0.4``, positions in the un-augmented frame of scan 0.

The loss of partition ``p`` is the InfoNCE of each row ``i`` with the positive ``k_i`` and only the negatives
``k_j`` in partition ``p`` of ``i`` (a row without such negatives contributes ``log 1 = 0``); CSC averages over the
rows and then over the partitions.

Example:
    >>> xyz = torch.tensor([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0]])
    >>> shape_context_partitions(xyz, r1=0.1, r2=10.0, n_azimuth=2, n_polar=1)[0].tolist()
    [-1, 0, 1]
"""

from __future__ import annotations

import math

import torch

from mm3dkit.losses.point_infonce import DEFAULT_TEMPERATURE, pair_logits

CSC_R1: float = 0.05
"""Inner radius in metres (CSC: 2 voxels of 2.5 cm); closer points are no negatives."""
CSC_R2: float = 0.5
"""Near/far boundary in metres (CSC: 20 voxels of 2.5 cm)."""


def num_partitions(n_azimuth: int = 2, n_polar: int = 2) -> int:
    """2 distance bins x ``n_azimuth`` x ``n_polar`` (8 for CSC's setting)."""
    return 2 * n_azimuth * n_polar


def shape_context_partitions(xyz: torch.Tensor, r1: float = CSC_R1, r2: float = CSC_R2, n_azimuth: int = 2,
                             n_polar: int = 2) -> torch.Tensor:
    """``(N, N)`` int64 partition of point ``j`` (column) relative to point ``i`` (row); ``-1`` = none."""
    rel = xyz[None, :, :].float() - xyz[:, None, :].float()
    dist = rel.norm(dim=2)
    az = torch.remainder(torch.atan2(rel[..., 1], rel[..., 0]), 2 * math.pi)
    polar = torch.remainder(torch.atan2(rel[..., 1], rel[..., 2]), math.pi)
    az_bin = torch.clamp((az / (2 * math.pi / n_azimuth)).floor().long(), max=n_azimuth - 1)
    polar_bin = torch.clamp((polar / (math.pi / n_polar)).floor().long(), max=n_polar - 1)
    dist_bin = torch.where(dist >= r2, 1, 0)
    part = (dist_bin * n_azimuth + az_bin) * n_polar + polar_bin
    return torch.where(dist >= r1, part, torch.full_like(part, -1))


def partitioned_infonce(q: torch.Tensor, k: torch.Tensor, partitions: torch.Tensor, n_partitions: int,
                        temperature: float = DEFAULT_TEMPERATURE, normalize: bool = True) -> torch.Tensor:
    """Mean over partitions of the mean over rows of the InfoNCE restricted to that partition's negatives.

    Vectorised: one ``(N, N)`` logit matrix; the negatives' exponentials are summed per (row, partition) with a
    single ``scatter_add`` (no ``(P, N, N)`` tensor, no loop over points or partitions).
    """
    if partitions.shape != (q.shape[0], q.shape[0]):
        raise ValueError(f"partitions must be (N, N) for N={q.shape[0]}, got {tuple(partitions.shape)}")
    logits = pair_logits(q, k, temperature, normalize)
    n = logits.shape[0]
    m = logits.max(dim=1, keepdim=True).values.detach()
    e = torch.exp(logits - m)
    eye = torch.eye(n, dtype=torch.bool, device=logits.device)
    slot = torch.where((partitions >= 0) & ~eye, partitions, torch.full_like(partitions, n_partitions))
    sums = torch.zeros(n, n_partitions + 1, device=logits.device, dtype=e.dtype).scatter_add(1, slot, e)
    pos = logits.diagonal()[:, None] - m  # (N, 1)
    per = torch.log(torch.exp(pos) + sums[:, :n_partitions]) - pos  # (N, P)
    return per.mean()


def csc_loss(q: torch.Tensor, k: torch.Tensor, xyz: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
             r1: float = CSC_R1, r2: float = CSC_R2, n_azimuth: int = 2, n_polar: int = 2) -> torch.Tensor:
    """CSC loss of one scan's matched features ``q, k (N, C)`` with scan-0 positions ``xyz (N, 3)`` (metres)."""
    if q.shape[0] < 2:
        raise ValueError("csc_loss needs at least 2 matched points")
    parts = shape_context_partitions(xyz, r1, r2, n_azimuth, n_polar)
    return partitioned_infonce(q, k, parts, num_partitions(n_azimuth, n_polar), temperature)


__all__ = ["CSC_R1", "CSC_R2", "csc_loss", "num_partitions", "partitioned_infonce", "shape_context_partitions"]
