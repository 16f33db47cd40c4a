"""Instance-discrimination InfoNCE with a queue of negatives (MoCo), as DepthContrast uses for scan-level features.

For query embeddings ``q (B, C)`` of one augmented view, key embeddings ``k (B, C)`` of the other view (from the
momentum encoder, no gradient) and a queue ``(K, C)`` of keys of earlier batches:

    L = mean_b -log( exp(q_b . k_b / tau) / (exp(q_b . k_b / tau) + sum_n exp(q_b . queue_n / tau)) )

DepthContrast's setting: ``tau = 0.1``, 128-d embeddings, a queue of 131072 keys, momentum 0.999.

Example:
    >>> q = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    >>> queue = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    >>> bool(moco_infonce(q, q, queue) < moco_infonce(q, -q, queue))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEPTHCONTRAST_TEMPERATURE: float = 0.1


def moco_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor,
                 temperature: float = DEPTHCONTRAST_TEMPERATURE, normalize: bool = True) -> torch.Tensor:
    """InfoNCE of each query against its key (positive) and all queue entries (negatives); ``k`` is detached."""
    if q.shape != k.shape or q.ndim != 2 or queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"expected q, k (B, C) and queue (K, C); got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(queue.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    q, k, queue = q.float(), k.detach().float(), queue.detach().float()
    if normalize:
        q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


__all__ = ["DEPTHCONTRAST_TEMPERATURE", "moco_infonce"]
