"""The Stage-1 2D network: a torchvision ResNet encoder with a Monodepth2-style decoder, one feature per pixel.

Encoder stages (strides 2, 4, 8, 16, 32) feed a decoder that, from the deepest stage up, applies a 3x3 conv + ELU,
upsamples to the next skip's size, concatenates that skip, and applies another 3x3 conv + ELU (Godard et al.'s
depth decoder, with the disparity head replaced by a ``feature_dim`` conv). The output is upsampled to the input
size and L2-normalised per pixel (paper: 16 dimensions).

Example:
    >>> net = ResUNet("resnet18", feature_dim=16, pretrained="none")
    >>> f = net(torch.randn(2, 3, 60, 80))
    >>> f.shape, bool(torch.allclose(f.norm(dim=1), torch.ones(2, 60, 80), atol=1e-5))
    (torch.Size([2, 16, 60, 80]), True)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from mm3dkit.weights import imagenet_state_dict

_ENCODERS = {"resnet18": (models.resnet18, (64, 64, 128, 256, 512)),
             "resnet34": (models.resnet34, (64, 64, 128, 256, 512)),
             "resnet50": (models.resnet50, (64, 256, 512, 1024, 2048))}
DECODER_CHANNELS = (16, 32, 64, 128, 256)


class ConvELU(nn.Sequential):
    """3x3 convolution followed by ELU (Monodepth2's ConvBlock). Monodepth2 pads by reflection; replicate padding is
    used here because reflection fails on the 1-pixel-wide deepest maps of small images (quick profile, tests)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, padding_mode="replicate"), nn.ELU(inplace=True))


class ResUNet(nn.Module):
    """ResNet encoder + Monodepth2-style decoder -> ``(B, feature_dim, H, W)`` L2-normalised features.

    ``pretrained``: ``"imagenet"`` (torchvision weights from the local torch cache; the paper's setting), a path to a
    weights file, or ``"none"`` for random initialisation (see :mod:`mm3dkit.weights`).
    """

    def __init__(self, encoder: str = "resnet34", feature_dim: int = 16, pretrained: str = "imagenet"):
        super().__init__()
        if encoder not in _ENCODERS:
            raise KeyError(f"unknown encoder {encoder!r}; choose one of {sorted(_ENCODERS)}")
        build, enc_ch = _ENCODERS[encoder]
        self.encoder_name, self.feature_dim = encoder, feature_dim
        self.encoder = build(weights=None)
        state = imagenet_state_dict(encoder, pretrained)
        if state is not None:
            self.encoder.load_state_dict(state)
        del self.encoder.fc
        self.up0 = nn.ModuleList()
        self.up1 = nn.ModuleList()
        cin = enc_ch[-1]
        for level in range(4, -1, -1):
            self.up0.append(ConvELU(cin, DECODER_CHANNELS[level]))
            skip = enc_ch[level - 1] if level > 0 else 0
            self.up1.append(ConvELU(DECODER_CHANNELS[level] + skip, DECODER_CHANNELS[level]))
            cin = DECODER_CHANNELS[level]
        self.head = nn.Conv2d(DECODER_CHANNELS[0], feature_dim, 3, padding=1)

    def get_extra_state(self) -> dict[str, Any]:
        """Architecture saved inside every ``state_dict`` so a checkpoint rebuilds its own network."""
        return {"encoder": self.encoder_name, "feature_dim": self.feature_dim}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state != self.get_extra_state():
            raise ValueError(f"checkpoint is for ResUNet {state}, this network is {self.get_extra_state()}")

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        e = self.encoder
        f0 = e.relu(e.bn1(e.conv1(x)))
        f1 = e.layer1(e.maxpool(f0))
        f2 = e.layer2(f1)
        f3 = e.layer3(f2)
        return [f0, f1, f2, f3, e.layer4(f3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encode(x)
        out = feats[-1]
        for i, level in enumerate(range(4, -1, -1)):
            out = self.up0[i](out)
            size = feats[level - 1].shape[-2:] if level > 0 else x.shape[-2:]
            out = F.interpolate(out, size=size, mode="nearest")
            if level > 0:
                out = torch.cat([out, feats[level - 1]], dim=1)
            out = self.up1[i](out)
        return F.normalize(self.head(out), dim=1)
