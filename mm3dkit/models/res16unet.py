"""PointContrast's 3D sparse U-Net family (Res16UNet14A/18A/34C, ...) on :mod:`mm3dkit.sparse`.

Same modules, wiring and ``state_dict`` keys as the Res16UNet of PointContrast and Contrastive Scene Contexts
(``conv0p1s1``, ``bn0``, ``conv1p1s2``, ``block1`` ... ``convtr7p2s2``, ``bntr7``, ``block8``, ``final``; batch norms
wrap a ``bn`` module; kernels are ``kernel``), so their released checkpoints load and the kit's load into theirs.
Encoder: a stem conv then four stride-2 stages; decoder: four transposed convs, each concatenated with the encoder
feature of the same stride, then residual blocks; ``final`` is the 1x1 convolution the paper re-initialises for
downstream tasks.

Example:
    >>> net = Res16UNet14A(in_channels=3, out_channels=16, backend="torch")
    >>> ME = net.ME
    >>> c = ME.batched_coordinates([torch.randint(0, 16, (200, 3)).unique(dim=0)])
    >>> y = net(ME.SparseTensor(torch.rand(len(c), 3), c))
    >>> y.F.shape[1]
    16
"""

from __future__ import annotations

import torch
from torch import nn

from mm3dkit.sparse import backend as sparse_backend
from mm3dkit.sparse import replace_features


class BasicBlock(nn.Module):
    """Two 3x3x3 convolutions with batch norm and a residual connection (keys conv1/norm1/conv2/norm2/downsample)."""

    expansion = 1

    def __init__(self, ME, inplanes: int, planes: int, downsample: nn.Module | None = None, bn_momentum: float = 0.1):
        super().__init__()
        self.conv1 = ME.MinkowskiConvolution(inplanes, planes, kernel_size=3, stride=1, dimension=3)
        self.norm1 = ME.MinkowskiBatchNorm(planes, momentum=bn_momentum)
        self.conv2 = ME.MinkowskiConvolution(planes, planes, kernel_size=3, stride=1, dimension=3)
        self.norm2 = ME.MinkowskiBatchNorm(planes, momentum=bn_momentum)
        self.relu = ME.MinkowskiReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + residual)


class Res16UNetBase(nn.Module):
    """Res16UNet with ``PLANES`` / ``LAYERS`` set by subclasses; ``backend`` picks the sparse backend."""

    PLANES: tuple[int, ...] = (32, 64, 128, 256, 256, 256, 256, 256)
    LAYERS: tuple[int, ...] = (2, 2, 2, 2, 2, 2, 2, 2)
    INIT_DIM = 32

    def __init__(self, in_channels: int = 3, out_channels: int = 20, D: int = 3, bn_momentum: float = 0.05,
                 conv1_kernel_size: int = 3, normalize_feature: bool = False, backend: str | None = None):
        super().__init__()
        if D != 3:
            raise ValueError("Res16UNet here is 3D (D=3)")
        ME = sparse_backend(backend)
        self.ME = ME
        self.backend_name = ME.name
        self.normalize_feature = normalize_feature
        self.in_channels, self.out_channels = in_channels, out_channels
        P, L, m = self.PLANES, self.LAYERS, bn_momentum

        def conv(i: int, o: int, k: int, s: int = 1) -> nn.Module:
            return ME.MinkowskiConvolution(i, o, kernel_size=k, stride=s, dimension=3)

        def convtr(i: int, o: int) -> nn.Module:
            return ME.MinkowskiConvolutionTranspose(i, o, kernel_size=2, stride=2, dimension=3)

        def bn(c: int) -> nn.Module:
            return ME.MinkowskiBatchNorm(c, momentum=m)

        self.inplanes = self.INIT_DIM
        self.conv0p1s1, self.bn0 = conv(in_channels, self.inplanes, conv1_kernel_size), bn(self.inplanes)
        self.conv1p1s2, self.bn1 = conv(self.inplanes, self.inplanes, 2, 2), bn(self.inplanes)
        self.block1 = self._make_layer(P[0], L[0], m)
        self.conv2p2s2, self.bn2 = conv(self.inplanes, self.inplanes, 2, 2), bn(self.inplanes)
        self.block2 = self._make_layer(P[1], L[1], m)
        self.conv3p4s2, self.bn3 = conv(self.inplanes, self.inplanes, 2, 2), bn(self.inplanes)
        self.block3 = self._make_layer(P[2], L[2], m)
        self.conv4p8s2, self.bn4 = conv(self.inplanes, self.inplanes, 2, 2), bn(self.inplanes)
        self.block4 = self._make_layer(P[3], L[3], m)
        self.convtr4p16s2, self.bntr4 = convtr(self.inplanes, P[4]), bn(P[4])
        self.inplanes = P[4] + P[2]
        self.block5 = self._make_layer(P[4], L[4], m)
        self.convtr5p8s2, self.bntr5 = convtr(self.inplanes, P[5]), bn(P[5])
        self.inplanes = P[5] + P[1]
        self.block6 = self._make_layer(P[5], L[5], m)
        self.convtr6p4s2, self.bntr6 = convtr(self.inplanes, P[6]), bn(P[6])
        self.inplanes = P[6] + P[0]
        self.block7 = self._make_layer(P[6], L[6], m)
        self.convtr7p2s2, self.bntr7 = convtr(self.inplanes, P[7]), bn(P[7])
        self.inplanes = P[7] + self.INIT_DIM
        self.block8 = self._make_layer(P[7], L[7], m)
        self.final = ME.MinkowskiConvolution(P[7], out_channels, kernel_size=1, stride=1, bias=True, dimension=3)
        self.relu = ME.MinkowskiReLU()
        self._init_weights()

    @property
    def feature_dim(self) -> int:
        """Channels of the backbone features that feed ``final``."""
        return self.PLANES[7]

    def _make_layer(self, planes: int, blocks: int, bn_momentum: float) -> nn.Sequential:
        ME = self.ME
        downsample = None
        if self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(ME.MinkowskiConvolution(self.inplanes, planes, kernel_size=1, dimension=3),
                                       ME.MinkowskiBatchNorm(planes, momentum=bn_momentum))
        layers = [BasicBlock(ME, self.inplanes, planes, downsample, bn_momentum)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(ME, self.inplanes, planes, None, bn_momentum) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("kernel"):  # kaiming normal, fan_out, as PointContrast's ResNetBase (ME's fan rule)
                fan_out = p.shape[0] * p.shape[2] if p.dim() == 3 else p.shape[0]
                with torch.no_grad():
                    p.normal_(0, (2.0 / fan_out) ** 0.5)
        for mod in self.modules():
            if isinstance(mod, nn.BatchNorm1d):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)

    def reset_head(self, out_channels: int | None = None) -> None:
        """Re-initialise ``final`` (optionally with a new number of outputs), as the paper does downstream."""
        self.out_channels = out_channels or self.out_channels
        self.final = self.ME.MinkowskiConvolution(self.PLANES[7], self.out_channels, kernel_size=1, stride=1,
                                                  bias=True, dimension=3).to(next(self.parameters()).device)

    def forward_features(self, x):
        """Backbone features (stride 1, ``feature_dim`` channels) before the ``final`` 1x1 convolution."""
        out_p1 = self.relu(self.bn0(self.conv0p1s1(x)))
        out_b1p2 = self.block1(self.relu(self.bn1(self.conv1p1s2(out_p1))))
        out_b2p4 = self.block2(self.relu(self.bn2(self.conv2p2s2(out_b1p2))))
        out_b3p8 = self.block3(self.relu(self.bn3(self.conv3p4s2(out_b2p4))))
        out = self.block4(self.relu(self.bn4(self.conv4p8s2(out_b3p8))))
        out = self.block5(self.ME.cat(self.relu(self.bntr4(self.convtr4p16s2(out))), out_b3p8))
        out = self.block6(self.ME.cat(self.relu(self.bntr5(self.convtr5p8s2(out))), out_b2p4))
        out = self.block7(self.ME.cat(self.relu(self.bntr6(self.convtr6p4s2(out))), out_b1p2))
        return self.block8(self.ME.cat(self.relu(self.bntr7(self.convtr7p2s2(out))), out_p1))

    def forward(self, x):
        out = self.final(self.forward_features(x))
        if self.normalize_feature:
            return replace_features(out, nn.functional.normalize(out.F, dim=1))
        return out


class Res16UNet14(Res16UNetBase):
    LAYERS = (1, 1, 1, 1, 1, 1, 1, 1)


class Res16UNet14A(Res16UNet14):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class Res16UNet18(Res16UNetBase):
    LAYERS = (2, 2, 2, 2, 2, 2, 2, 2)


class Res16UNet18A(Res16UNet18):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class Res16UNet34(Res16UNetBase):
    LAYERS = (2, 3, 4, 6, 2, 2, 2, 2)


class Res16UNet34C(Res16UNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 96, 96)


MODELS = {cls.__name__: cls for cls in (Res16UNet14, Res16UNet14A, Res16UNet18, Res16UNet18A, Res16UNet34, Res16UNet34C)}


def build_res16unet(name: str, in_channels: int = 3, out_channels: int = 20, **kwargs) -> Res16UNetBase:
    """Build a Res16UNet variant by name (e.g. ``"Res16UNet34C"``)."""
    if name not in MODELS:
        raise KeyError(f"unknown 3D model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](in_channels=in_channels, out_channels=out_channels, **kwargs)
