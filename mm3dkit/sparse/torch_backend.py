"""Pure-PyTorch sparse convolution with MinkowskiEngine's API, kernel-offset order and weight layout.

For machines where MinkowskiEngine does not build (laptops, macOS, new CUDA) and for teaching. How it works:

* coordinates ``(batch, x, y, z)`` are packed into one int64 key (16 bits per axis, 15 for the batch), sorted once
  per coordinate map; a kernel map (input row, output row) per kernel offset is found with ``searchsorted``;
* a convolution is, for each kernel offset ``k``: gather input rows -> ``@ W[k]`` -> ``index_add`` into output rows,
  inside a custom ``autograd.Function`` whose backward recomputes the per-offset products, so memory stays near
  MinkowskiEngine's (only inputs, weights and maps are saved, never the K gathered copies);
* a coordinate manager shared by all tensors derived from one input caches each stride's coordinates and the kernel
  maps, so transposed convolutions return exactly to the finer coordinates that produced a coarse map.

Offsets are ordered with the first spatial axis fastest (MinkowskiEngine's order, checked by the parity tests); odd
kernels span ``-(k//2)..k//2``, even kernels ``0..k-1``, both times the input tensor stride and the dilation; a stride-s
convolution keeps ``floor(c / s_out) * s_out`` of the input coordinates. Kernels are parameters named ``kernel`` of
shape ``(K**3, in, out)`` so one ``state_dict`` loads into either backend.

Example:
    >>> coords = batched_coordinates([torch.tensor([[0, 0, 0], [1, 0, 0], [4, 4, 4]])])
    >>> x = SparseTensor(torch.ones(3, 2), coords)
    >>> y = MinkowskiConvolution(2, 4, kernel_size=3, stride=2, dimension=3)(x)
    >>> y.F.shape, y.tensor_stride
    (torch.Size([2, 4]), [2, 2, 2])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

_BITS, _OFF = 16, 1 << 15


def _pack(coords: torch.Tensor) -> torch.Tensor:
    """(N, 4) int (batch, x, y, z) -> (N,) int64 keys preserving equality (and lexicographic order)."""
    c = coords.long()
    key = c[:, 0] << (3 * _BITS)
    for axis in range(1, 4):
        key = key | ((c[:, axis] + _OFF) << (_BITS * (3 - axis)))
    return key


def kernel_offsets(kernel_size: int, dimension: int = 3) -> torch.Tensor:
    """Offsets in MinkowskiEngine's order (first axis fastest), in units of the (input stride x dilation)."""
    rng = list(range(-(kernel_size // 2), kernel_size // 2 + 1)) if kernel_size % 2 else list(range(kernel_size))
    offs = [tuple(reversed(p)) for p in itertools.product(rng, repeat=dimension)]
    return torch.tensor(offs, dtype=torch.long)


class CoordinateManager:
    """Coordinates per tensor stride and cached kernel maps, shared along one network's forward pass."""

    def __init__(self, coords: torch.Tensor):
        self.coords: dict[int, torch.Tensor] = {}
        self.sorted_keys: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.kernel_maps: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.add(1, coords)

    def add(self, stride: int, coords: torch.Tensor) -> None:
        self.coords[stride] = coords
        keys, order = torch.sort(_pack(coords))
        self.sorted_keys[stride] = (keys, order)

    def lookup(self, stride: int, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices in the ``stride`` map of the query coordinates, and which queries were found."""
        keys, order = self.sorted_keys[stride]
        q = _pack(query)
        pos = torch.searchsorted(keys, q).clamp(max=max(len(keys) - 1, 0))
        found = keys[pos] == q if len(keys) else torch.zeros_like(q, dtype=torch.bool)
        return order[pos], found

    def strided(self, in_stride: int, out_stride: int) -> torch.Tensor:
        if out_stride not in self.coords:
            c = self.coords[in_stride].clone()
            c[:, 1:] = torch.div(c[:, 1:], out_stride, rounding_mode="floor") * out_stride
            self.add(out_stride, torch.unique(c, dim=0))
        return self.coords[out_stride]

    def kernel_map(self, in_stride: int, out_stride: int, kernel_size: int, dilation: int,
                   transpose: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per offset: (input rows, output rows). For a transposed conv the offsets step in the output stride."""
        key = (in_stride, out_stride, kernel_size, dilation, transpose)
        if key not in self.kernel_maps:
            fine, coarse = (out_stride, in_stride) if transpose else (in_stride, out_stride)
            offsets = kernel_offsets(kernel_size).to(self.coords[fine].device) * (fine * dilation)
            coarse_c = self.coords[coarse]
            k, m = offsets.shape[0], coarse_c.shape[0]
            query = coarse_c.repeat(k, 1)
            query[:, 1:] += offsets.repeat_interleave(m, dim=0)
            rows, found = self.lookup(fine, query)
            coarse_rows = torch.arange(m, device=query.device).repeat(k)
            offset_id = torch.arange(k, device=query.device).repeat_interleave(m)
            maps = []
            for i in range(k):
                sel = found & (offset_id == i)
                fine_rows, c_rows = rows[sel], coarse_rows[sel]
                maps.append((c_rows, fine_rows) if transpose else (fine_rows, c_rows))
            self.kernel_maps[key] = maps
        return self.kernel_maps[key]


class SparseTensor:
    """Features (N, C) on coordinates (N, 4) = (batch, x, y, z) at a tensor stride (MinkowskiEngine-like)."""

    def __init__(self, features: torch.Tensor, coordinates: torch.Tensor | None = None, tensor_stride: int | Sequence[int] = 1,
                 coordinate_manager: CoordinateManager | None = None, device: torch.device | str | None = None):
        stride = tensor_stride if isinstance(tensor_stride, int) else int(tensor_stride[0])
        if coordinate_manager is None:
            if coordinates is None:
                raise ValueError("SparseTensor needs coordinates or a coordinate_manager")
            if coordinates.ndim != 2 or coordinates.shape[1] != 4:
                raise ValueError(f"coordinates must be (N, 4) = (batch, x, y, z), got {tuple(coordinates.shape)}")
            if coordinates.shape[0] != features.shape[0]:
                raise ValueError(f"{coordinates.shape[0]} coordinates but {features.shape[0]} feature rows")
            coords = coordinates.to(device=device or features.device, dtype=torch.int32)
            if torch.unique(_pack(coords)).numel() != coords.shape[0]:
                raise ValueError("duplicate coordinates: quantise points first (sparse_quantize)")
            coordinate_manager = CoordinateManager(coords)
        self._F = features.to(device) if device is not None else features
        self.coordinate_manager = coordinate_manager
        self._stride = stride

    @property
    def F(self) -> torch.Tensor:
        return self._F

    features = F

    @property
    def C(self) -> torch.Tensor:
        return self.coordinate_manager.coords[self._stride]

    coordinates = C

    @property
    def tensor_stride(self) -> list[int]:
        return [self._stride] * 3

    @property
    def device(self) -> torch.device:
        return self._F.device

    @property
    def decomposed_features(self) -> list[torch.Tensor]:
        b = self.C[:, 0]
        return [self._F[b == i] for i in range(int(b.max()) + 1 if len(b) else 0)]

    def replace_feature(self, features: torch.Tensor) -> SparseTensor:
        return SparseTensor(features, coordinate_manager=self.coordinate_manager, tensor_stride=self._stride)

    def __add__(self, other: SparseTensor) -> SparseTensor:
        _check_same_map(self, other)
        return self.replace_feature(self._F + other.F)

    def __repr__(self) -> str:
        return f"SparseTensor(torch backend, {self._F.shape[0]} x {self._F.shape[1]}, stride {self._stride})"


def _check_same_map(a: SparseTensor, b: SparseTensor) -> None:
    if a.coordinate_manager is not b.coordinate_manager or a._stride != b._stride:
        raise ValueError("sparse tensors live on different coordinate maps; they cannot be combined row by row")


class _SparseConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats, kernel, maps, n_out):  # type: ignore[override]
        out = feats.new_zeros(n_out, kernel.shape[2])
        for k, (i_rows, o_rows) in enumerate(maps):
            if i_rows.numel():
                out.index_add_(0, o_rows, feats[i_rows] @ kernel[k])
        ctx.save_for_backward(feats, kernel)
        ctx.maps = maps
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        feats, kernel = ctx.saved_tensors
        grad_f = torch.zeros_like(feats) if ctx.needs_input_grad[0] else None
        grad_k = torch.zeros_like(kernel) if ctx.needs_input_grad[1] else None
        for k, (i_rows, o_rows) in enumerate(ctx.maps):
            if not i_rows.numel():
                continue
            g = grad_out[o_rows]
            if grad_f is not None:
                grad_f.index_add_(0, i_rows, g @ kernel[k].T)
            if grad_k is not None:
                grad_k[k] = feats[i_rows].T @ g
        return grad_f, grad_k, None, None


class MinkowskiConvolution(nn.Module):
    """Sparse convolution; ``kernel`` has shape ``(kernel_size**3, in, out)`` (``(in, out)`` for 1x1x1) as in MinkowskiEngine."""

    transpose = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 bias: bool = False, dimension: int = 3, **_: object):
        super().__init__()
        if dimension != 3:
            raise ValueError("the torch backend implements 3D sparse convolution only")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        volume = kernel_size ** 3  # MinkowskiEngine stores a 1x1x1 kernel as (in, out)
        self.kernel = nn.Parameter(torch.empty(*((volume,) if volume > 1 else ()), in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(1, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the same uniform initialisation MinkowskiEngine uses (std from fan-in of the whole kernel)
        fan = (self.out_channels if self.transpose else self.in_channels) * self.kernel_size ** 3
        std = 1.0 / math.sqrt(fan)
        with torch.no_grad():
            self.kernel.uniform_(-std, std)
            if self.bias is not None:
                self.bias.uniform_(-std, std)

    def _out_stride(self, x: SparseTensor) -> int:
        if not self.transpose:
            return x._stride * self.stride
        if x._stride % self.stride:
            raise ValueError(f"transposed conv with stride {self.stride} on a tensor of stride {x._stride}")
        return x._stride // self.stride

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.F.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} input channels, got {x.F.shape[1]}")
        cm, s_in = x.coordinate_manager, x._stride
        s_out = self._out_stride(x)
        if self.transpose:
            if s_out not in cm.coords:
                raise ValueError(f"no coordinates at stride {s_out} to transpose back to")
        else:
            cm.strided(s_in, s_out)
        maps = cm.kernel_map(s_in, s_out, self.kernel_size, self.dilation, self.transpose)
        kernel = self.kernel.view(-1, self.in_channels, self.out_channels)
        out = _SparseConvFunction.apply(x.F, kernel, maps, cm.coords[s_out].shape[0])
        if self.bias is not None:
            out = out + self.bias
        return SparseTensor(out, coordinate_manager=cm, tensor_stride=s_out)


class MinkowskiConvolutionTranspose(MinkowskiConvolution):
    """Transposed sparse convolution back onto the finer coordinates that produced the input."""

    transpose = True


class MinkowskiBatchNorm(nn.Module):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum, affine=affine,
                                 track_running_stats=track_running_stats)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feature(self.bn(x.F))


class _Pointwise(nn.Module):
    fn: nn.Module

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feature(self.fn(x.F))


class MinkowskiReLU(_Pointwise):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.fn = nn.ReLU(inplace=inplace)


class MinkowskiLeakyReLU(_Pointwise):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.fn = nn.LeakyReLU(negative_slope, inplace=inplace)


class MinkowskiDropout(_Pointwise):
    def __init__(self, p: float = 0.5):
        super().__init__()
        self.fn = nn.Dropout(p)


class MinkowskiLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feature(self.linear(x.F))


class _GlobalPooling(nn.Module):
    reduce = "mean"

    def forward(self, x: SparseTensor) -> SparseTensor:
        b = x.C[:, 0].long()
        n = int(b.max()) + 1
        out = x.F.new_zeros(n, x.F.shape[1]).index_reduce_(0, b, x.F, self.reduce, include_self=False)
        coords = torch.zeros(n, 4, dtype=torch.int32, device=x.device)
        coords[:, 0] = torch.arange(n, device=x.device, dtype=torch.int32)
        return SparseTensor(out, coords)


class MinkowskiGlobalAvgPooling(_GlobalPooling):
    reduce = "mean"


class MinkowskiGlobalMaxPooling(_GlobalPooling):
    reduce = "amax"


def cat(*tensors: SparseTensor) -> SparseTensor:
    """Concatenate features of tensors on the same coordinate map (U-Net skip connections)."""
    for t in tensors[1:]:
        _check_same_map(tensors[0], t)
    return tensors[0].replace_feature(torch.cat([t.F for t in tensors], dim=1))


def batched_coordinates(coords: Sequence[torch.Tensor], dtype: torch.dtype = torch.int32,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Stack per-sample (N_i, 3) integer coordinates into (sum N_i, 4) with the batch index first."""
    rows = []
    for b, c in enumerate(coords):
        c = torch.as_tensor(c)
        rows.append(torch.cat([torch.full((c.shape[0], 1), b, dtype=torch.long), c.long().cpu()], dim=1))
    out = torch.cat(rows) if rows else torch.zeros(0, 4, dtype=torch.long)
    return out.to(dtype=dtype, device=device)


def sparse_quantize(coordinates: torch.Tensor, features: torch.Tensor | None = None, quantization_size: float = 1.0,
                    return_index: bool = False, return_inverse: bool = False):
    """Unique voxel coordinates of points (MinkowskiEngine's ``utils.sparse_quantize`` subset).

    Returns ``coords`` (and ``features`` of the kept points), then ``index`` (kept point per voxel) and ``inverse``
    (voxel of every point) when asked for, in that order.
    """
    from mm3dkit.geometry import voxelize

    v = voxelize(torch.as_tensor(coordinates).double(), quantization_size)
    out: list[torch.Tensor] = [v.coords.int()]
    if features is not None:
        out.append(torch.as_tensor(features)[v.index])
    if return_index:
        out.append(v.index)
    if return_inverse:
        out.append(v.inverse)
    return out[0] if len(out) == 1 else tuple(out)
