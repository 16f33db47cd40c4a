"""Two SimCLR-style views of an image that remember where each of their pixels came from.

Geometry (random resized crop + horizontal flip) is sampled with torchvision's ``v2.RandomResizedCrop.get_params``
and applied with ``v2.functional``; photometric changes (colour jitter p=0.8, grayscale p=0.2, Gaussian blur) are
torchvision v2 transforms. Each view carries the exact affine map from its output pixels to original-image pixels:

    x_orig = ax * col + bx,   y_orig = ay * row + by      (pixel centres at integer coordinates)

A resized crop of the box ``(top, left, h, w)`` to ``(H, W)`` maps output column ``c`` to ``left + (c + 0.5) * w / W
- 0.5`` (the pixel-centre convention of ``resize`` with ``antialias``), and a flip replaces ``c`` by ``W - 1 - c``.

Example:
    >>> aug = PairAugment(out_size=(24, 32))
    >>> v1, v2 = aug(torch.randint(0, 255, (3, 48, 64), dtype=torch.uint8))
    >>> v1.image.shape, v1.affine.shape
    (torch.Size([3, 24, 32]), torch.Size([4]))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class View:
    image: torch.Tensor  # (3, H, W) float, ImageNet-normalised
    affine: torch.Tensor  # (4,) [ax, bx, ay, by]: output pixel -> original pixel


def view_to_original(affine: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Original-image ``(x, y)`` of output pixels; ``affine`` is ``(..., 4)`` broadcasting against ``rows``/``cols``."""
    return affine[..., 0] * cols + affine[..., 1], affine[..., 2] * rows + affine[..., 3]


def original_to_view(affine: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Continuous output ``(row, col)`` of original-image points (the inverse of :func:`view_to_original`)."""
    return (y - affine[..., 3]) / affine[..., 2], (x - affine[..., 1]) / affine[..., 0]


class PairAugment:
    """Two independently augmented views of one image, each with its pixel -> original-pixel map.

    Defaults are SimCLR's: crop scale 0.2-1.0 (the pixel-level variant keeps crops large enough to overlap),
    flip p=0.5, colour jitter (0.4, 0.4, 0.4, 0.1) with p=0.8, grayscale p=0.2, Gaussian blur p=0.5.
    """

    def __init__(self, out_size: tuple[int, int] = (240, 320), scale: tuple[float, float] = (0.2, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_p: float = 0.5,
                 jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1), jitter_p: float = 0.8,
                 gray_p: float = 0.2, blur_p: float = 0.5, blur_sigma: tuple[float, float] = (0.1, 2.0),
                 photometric: bool = True):
        self.out_size, self.scale, self.ratio, self.flip_p = tuple(out_size), scale, ratio, flip_p
        blur_k = 2 * (max(out_size) // 20) + 1
        self.photometric = v2.Compose([
            v2.RandomApply([v2.ColorJitter(*jitter)], p=jitter_p),
            v2.RandomGrayscale(p=gray_p),
            v2.RandomApply([v2.GaussianBlur(blur_k, sigma=blur_sigma)], p=blur_p),
        ]) if photometric else v2.Identity()
        self.normalize = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)

    def view(self, image: torch.Tensor) -> View:
        top, left, h, w = v2.RandomResizedCrop.get_params(image, scale=list(self.scale), ratio=list(self.ratio))
        H, W = self.out_size
        out = TF.resized_crop(image, top, left, h, w, [H, W], antialias=True)
        ax, bx = w / W, left + 0.5 * w / W - 0.5
        ay, by = h / H, top + 0.5 * h / H - 0.5
        if torch.rand(()) < self.flip_p:
            out = TF.horizontal_flip(out)
            ax, bx = -ax, bx + (W - 1) * w / W  # c -> W - 1 - c
        out = self.photometric(out)
        img = self.normalize(TF.to_dtype(out, torch.float32, scale=True))
        return View(image=img, affine=torch.tensor([ax, bx, ay, by], dtype=torch.float64))

    def __call__(self, image: torch.Tensor | np.ndarray) -> tuple[View, View]:
        """``image``: (3, H, W) uint8 tensor or (H, W, 3) uint8 array."""
        if isinstance(image, np.ndarray):
            image = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        image = v2.functional.to_image(image) if not isinstance(image, torch.Tensor) else image
        return self.view(image), self.view(image)
