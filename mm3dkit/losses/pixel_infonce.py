"""Pixel-level SimCLR InfoNCE (paper, Stage 1): matched pixels of two views are positives.

Given the features of ``N`` matched pixel pairs ``(z1_i, z2_i)`` from all images of a batch, the loss is Equation (1)
with every other sampled view-2 pixel as a negative, **including those of the other images in the batch** (the
paper's rule, ``negatives="batch"``). ``negatives="same_image"`` keeps only negatives from the same image (what the
reference code did). ``symmetric=True`` averages both directions (view 1 -> 2 and 2 -> 1), as SimCLR's NT-Xent does.

Features are L2-normalised and compared by cosine / tau. The ``N x N`` similarities are never stored whole:
:func:`mm3dkit.losses.blockwise_infonce.blockwise_infonce` streams ``block_rows`` rows at a time (the paper profile's
32 images x 4096 pairs would need a 69 GB matrix), with the same value and gradient as the dense cross-entropy.

Default temperature 0.1: the paper uses SimCLR's loss without stating tau; 0.1 is SimCLR's ImageNet setting.

Example:
    >>> z = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    >>> img = torch.tensor([0, 0, 0, 1, 1, 1])
    >>> bool(pixel_infonce(z, z, img) < pixel_infonce(z, z.roll(1, 0), img))
    True
"""

from __future__ import annotations

import torch

from mm3dkit.losses.blockwise_infonce import DEFAULT_BLOCK_ROWS, blockwise_infonce

DEFAULT_TEMPERATURE: float = 0.1


def pixel_infonce(z1: torch.Tensor, z2: torch.Tensor, image_index: torch.Tensor,
                  temperature: float = DEFAULT_TEMPERATURE, negatives: str = "batch", symmetric: bool = True,
                  block_rows: int = DEFAULT_BLOCK_ROWS) -> torch.Tensor:
    """Mean InfoNCE over the ``N`` matched pairs (rows of ``z1``/``z2``, ``(N, D)``); ``image_index`` is ``(N,)``."""
    if negatives not in ("batch", "same_image"):
        raise ValueError(f"negatives must be 'batch' or 'same_image', got {negatives!r}")
    if z1.shape[0] < 2:
        raise ValueError("pixel_infonce needs at least 2 matched pixels (one positive and one negative)")
    groups = image_index if negatives == "same_image" else None
    return blockwise_infonce(z1, z2, temperature, groups, symmetric, block_rows, normalize=True)
