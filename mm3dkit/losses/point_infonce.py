"""Point-to-pixel InfoNCE, Equation (1) of the paper: each 3D point feature must pick its own pixel feature.

For sampled pairs ``(z_i, z_i^+)`` (point feature, feature of the pixel it projects to) the loss is

    L = -sum_i log( exp(z_i . z_i^+ / tau) / (exp(z_i . z_i^+ / tau) + sum_j exp(z_i . z_j^- / tau)) )

where the negatives ``z_j^-`` are the pixel features of all *other* sampled pairs in the batch (other points of the
same scan and of the other scans), i.e. a cross-entropy over the rows of ``z @ z+^T / tau`` with the diagonal as the
target, as PointContrast's PointInfoNCE does. ``reduction="mean"`` divides the paper's sum by N (scale-free w.r.t.
the number of pairs; use ``"sum"`` for the literal Equation (1)).

Default ``temperature=0.4``: the paper does not state tau; it uses PointContrast's 3D model and pair count
(``npos=4096``), and PointContrast's InfoNCE setting is ``nceT=0.4``.

Example:
    >>> z = torch.nn.functional.normalize(torch.randn(8, 16), dim=1)
    >>> bool(point_infonce(z, z, temperature=0.1) < point_infonce(z, z.roll(1, 0), temperature=0.1))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mm3dkit.losses.blockwise_infonce import blockwise_infonce

DEFAULT_TEMPERATURE: float = 0.4
"""PointContrast's ``nceT`` (the paper gives no value for tau)."""


def pair_logits(point_feats: torch.Tensor, pixel_feats: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
                normalize: bool = True) -> torch.Tensor:
    """``(N, N)`` similarities ``z_i . z_j^+ / tau`` (row i: point i against every sampled pixel)."""
    if point_feats.shape != pixel_feats.shape or point_feats.ndim != 2:
        raise ValueError(f"point and pixel features must both be (N, C); got {tuple(point_feats.shape)} and "
                         f"{tuple(pixel_feats.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z, zp = point_feats.float(), pixel_feats.float()
    if normalize:
        z, zp = F.normalize(z, dim=1), F.normalize(zp, dim=1)
    return z @ zp.T / temperature


def point_infonce(point_feats: torch.Tensor, pixel_feats: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE,
                  normalize: bool = True, reduction: str = "mean") -> torch.Tensor:
    """InfoNCE of Equation (1) between row-aligned point and pixel features ``(N, C)``.

    ``normalize`` L2-normalises both sides first (the features are compared by cosine similarity).
    """
    if point_feats.shape[0] < 2:
        raise ValueError("point_infonce needs at least 2 pairs (one positive and one negative)")
    if reduction == "mean":  # memory-bounded: never holds the (N, N) logits (N = scans x pairs can be 10^5)
        return blockwise_infonce(point_feats, pixel_feats, temperature, symmetric=False, normalize=normalize)
    logits = pair_logits(point_feats, pixel_feats, temperature, normalize)
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target, reduction=reduction)


@torch.no_grad()
def retrieval_metrics(point_feats: torch.Tensor, pixel_feats: torch.Tensor) -> dict[str, float]:
    """Point-to-pixel top-1 retrieval accuracy among the given pairs and the mean cosine of the true pairs.

    Example:
        >>> z = torch.eye(4)
        >>> retrieval_metrics(z, z)
        {'top1': 1.0, 'mean_cosine': 1.0, 'chance': 0.25}
    """
    z, zp = F.normalize(point_feats.float(), dim=1), F.normalize(pixel_feats.float(), dim=1)
    sim = z @ zp.T
    top1 = (sim.argmax(dim=1) == torch.arange(len(z), device=z.device)).float().mean()
    return {"top1": float(top1), "mean_cosine": float((z * zp).sum(1).mean()), "chance": 1.0 / len(z)}
