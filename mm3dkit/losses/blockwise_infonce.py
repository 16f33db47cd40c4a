"""InfoNCE over all ``N x N`` pairs without storing the ``N x N`` matrix: row blocks, recomputed in the backward.

Stage 1 with the paper's negatives (every sampled pixel of the batch) has ``N = batch x pairs`` anchors: the paper
profile's 32 images x 4096 pairs make ``N = 131072``, whose dense similarity matrix alone is 69 GB in fp32 (and
autograd keeps several). This loss computes the same value and gradient as ``F.cross_entropy(z1 @ z2.T / tau, arange)``
(optionally symmetric, optionally with negatives restricted to groups) holding only ``block_rows x N`` logits at a
time: the forward streams row blocks, keeping each row's and each column's sum of exponentials; the backward recomputes
each block and forms the softmax gradients of both directions from the saved sums. The cost is one extra
``z1 @ z2.T`` block product. Because every logit is bounded by ``max|z1| max|z2| / tau`` (``1 / tau`` for unit
vectors), one fixed shift keeps ``exp`` finite, so each entry needs a single ``exp`` per pass; when that bound is too
loose for fp32 (``2 / tau >= 80`` for unit vectors, i.e. tau <= 0.025) the dense max-shifted softmax is used instead.

Written by hand because neither torch nor a kept library offers a blockwise (memory-bounded) symmetric InfoNCE;
``F.cross_entropy`` needs the whole matrix.

Example:
    >>> import torch.nn.functional as F
    >>> z1, z2 = F.normalize(torch.randn(10, 4), dim=1), F.normalize(torch.randn(10, 4), dim=1)
    >>> dense = F.cross_entropy(z1 @ z2.T / 0.1, torch.arange(10))
    >>> bool(torch.allclose(blockwise_infonce(z1, z2, 0.1, symmetric=False, block_rows=3), dense, atol=1e-5))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_BLOCK_ROWS: int = 2048


def _block_logits(q: torch.Tensor, k: torch.Tensor, temperature: float, g_rows: torch.Tensor | None,
                  groups: torch.Tensor | None) -> torch.Tensor:
    logits = q @ k.T / temperature
    if groups is not None:
        logits = logits.masked_fill(g_rows[:, None] != groups[None, :], float("-inf"))
    return logits


class _BlockwiseInfoNCE(torch.autograd.Function):
    """Saves per-row and per-column sums of ``exp(logit - shift)`` where ``shift`` bounds every logit from above
    (``max|z1| max|z2| / tau``), so one ``exp`` per entry serves both softmaxes; ``forward``'s caller guarantees
    ``2 shift < 80`` (no entry underflows in fp32), otherwise it falls back to ``_max_shift``."""

    @staticmethod
    def forward(ctx, z1, z2, temperature, groups, symmetric, block_rows, shift):  # type: ignore[override]
        n = z1.shape[0]
        row_sum = torch.empty(n, dtype=z1.dtype, device=z1.device)
        col_sum = torch.zeros(n, dtype=z1.dtype, device=z1.device)
        for s in range(0, n, block_rows):
            e = min(n, s + block_rows)
            logits = _block_logits(z1[s:e], z2, temperature, None if groups is None else groups[s:e], groups)
            expd = logits.sub_(shift).exp_()
            row_sum[s:e] = expd.sum(1)
            if symmetric:
                col_sum += expd.sum(0)
        positive = (z1 * z2).sum(1) / temperature
        loss = (row_sum.log() + shift - positive).mean()
        if symmetric:
            loss = 0.5 * (loss + (col_sum.log() + shift - positive).mean())
        ctx.save_for_backward(z1, z2, row_sum, col_sum, groups)
        ctx.temperature, ctx.symmetric, ctx.block_rows, ctx.shift = temperature, symmetric, block_rows, shift
        return loss

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        z1, z2, row_sum, col_sum, groups = ctx.saved_tensors
        t, n = ctx.temperature, z1.shape[0]
        w_row = (0.5 if ctx.symmetric else 1.0) / n  # d loss / d logit of the row softmax term
        w_col = 0.5 / n if ctx.symmetric else 0.0
        row_w = w_row / row_sum
        col_w = w_col / col_sum if ctx.symmetric else None
        g1, g2 = torch.zeros_like(z1), torch.zeros_like(z2)
        for s in range(0, n, ctx.block_rows):
            e = min(n, s + ctx.block_rows)
            logits = _block_logits(z1[s:e], z2, t, None if groups is None else groups[s:e], groups)
            weight = row_w[s:e, None] if col_w is None else row_w[s:e, None] + col_w[None, :]
            g = logits.sub_(ctx.shift).exp_().mul_(weight)  # softmax gradients of both directions at once
            g[torch.arange(e - s, device=g.device), torch.arange(s, e, device=g.device)] -= w_row + w_col
            g1[s:e] = g @ z2
            g2 += g.T @ z1[s:e]
        scale = grad / t
        return g1 * scale, g2 * scale, None, None, None, None, None


def _max_shift(z1: torch.Tensor, z2: torch.Tensor, temperature: float, groups: torch.Tensor | None,
               symmetric: bool) -> torch.Tensor:
    """Dense fallback for logits too spread for one fixed shift (tiny temperatures, unnormalised features)."""
    logits = _block_logits(z1, z2, temperature, groups, groups)
    target = torch.arange(len(z1), device=z1.device)
    loss = F.cross_entropy(logits, target)
    return 0.5 * (loss + F.cross_entropy(logits.T, target)) if symmetric else loss


def blockwise_infonce(z1: torch.Tensor, z2: torch.Tensor, temperature: float, groups: torch.Tensor | None = None,
                      symmetric: bool = True, block_rows: int = DEFAULT_BLOCK_ROWS, normalize: bool = False
                      ) -> torch.Tensor:
    """Mean InfoNCE of row-aligned ``(N, D)`` features (row ``i`` of ``z1`` and of ``z2`` are the positive pair).

    ``groups`` (``(N,)`` ints): negatives only within the same group. ``symmetric``: average of both directions.
    ``normalize``: L2-normalise both sides first (cosine similarities); otherwise features are used as given.
    Computed in float32 or float64.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"features must both be (N, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    dtype = torch.float64 if z1.dtype == torch.float64 else torch.float32
    z1, z2 = z1.to(dtype), z2.to(dtype)
    if normalize:
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    with torch.no_grad():
        shift = float(z1.norm(dim=1).max() * z2.norm(dim=1).max()) / temperature
    if 2 * shift >= 80.0:  # exp(logit - shift) could underflow to 0 in fp32: dense, max-shifted softmax
        return _max_shift(z1, z2, float(temperature), groups, bool(symmetric))
    return _BlockwiseInfoNCE.apply(z1, z2, float(temperature), groups, bool(symmetric), int(block_rows), shift)


__all__ = ["DEFAULT_BLOCK_ROWS", "blockwise_infonce"]
