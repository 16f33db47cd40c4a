"""The pure-PyTorch sparse backend against dense convolutions, and backend selection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mm3dkit import sparse
from mm3dkit.sparse import torch_backend as TB


def _grid(n: int, keep: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xyz = torch.stack(torch.meshgrid(*[torch.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return xyz[torch.rand(len(xyz), generator=g) < keep]


def _dense(coords: torch.Tensor, feats: torch.Tensor, n: int) -> torch.Tensor:
    d = torch.zeros(1, feats.shape[1], n, n, n, dtype=feats.dtype)
    d[0, :, coords[:, 1].long(), coords[:, 2].long(), coords[:, 3].long()] = feats.T
    return d


def _dense_weight(kernel: torch.Tensor, k: int, transpose: bool) -> torch.Tensor:
    offs = TB.kernel_offsets(k) + (k // 2 if k % 2 else 0)
    cin, cout = kernel.shape[1:]
    w = torch.zeros((cin, cout, k, k, k) if transpose else (cout, cin, k, k, k), dtype=kernel.dtype)
    for i, (a, b, c) in enumerate(offs.tolist()):
        w[:, :, a, b, c] = kernel[i] if transpose else kernel[i].T
    return w


@pytest.mark.parametrize("keep", [1.0, 0.4])
@pytest.mark.parametrize("k,stride", [(3, 1), (2, 2), (3, 2)])
def test_conv_matches_dense_conv3d_with_gradients(keep, k, stride):
    n = 6
    coords = TB.batched_coordinates([_grid(n, keep)])
    feats = torch.randn(len(coords), 3, dtype=torch.float64, requires_grad=True)
    conv = TB.MinkowskiConvolution(3, 4, kernel_size=k, stride=stride, dimension=3).double()
    y = conv(TB.SparseTensor(feats, coords))
    pad = k // 2 if k % 2 else 0
    x_dense = _dense(coords, feats, n)
    w = _dense_weight(conv.kernel, k, False)
    if stride > 1 and k == 3:  # odd kernel centred on the coarse coordinate c: window c-1..c+1
        ref = F.conv3d(F.pad(x_dense, [1, 1] * 3), w, stride=stride)
    else:
        ref = F.conv3d(x_dense, w, stride=stride, padding=pad)
    idx = (y.C[:, 1:] // stride).long()
    expected = ref[0, :, idx[:, 0], idx[:, 1], idx[:, 2]].T
    torch.testing.assert_close(y.F, expected)
    g = torch.randn_like(y.F)
    gx, gw = torch.autograd.grad((y.F * g).sum(), [feats, conv.kernel])
    gx_ref, gw_ref = torch.autograd.grad((expected * g).sum(), [feats, conv.kernel])
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gw, gw_ref)


def test_transposed_conv_matches_dense_and_returns_to_fine_coords():
    n = 8
    coords = TB.batched_coordinates([_grid(n, 0.5, seed=3)])
    x = TB.SparseTensor(torch.randn(len(coords), 2, dtype=torch.float64), coords)
    down = TB.MinkowskiConvolution(2, 3, kernel_size=2, stride=2, dimension=3).double()
    up = TB.MinkowskiConvolutionTranspose(3, 5, kernel_size=2, stride=2, dimension=3).double()
    coarse = down(x)
    fine = up(coarse)
    assert fine.tensor_stride == [1, 1, 1] and torch.equal(fine.C, x.C), "back onto the input coordinates"
    cidx = (coarse.C[:, 1:] // 2).long()
    dense_coarse = torch.zeros(1, 3, n // 2, n // 2, n // 2, dtype=torch.float64)
    dense_coarse[0, :, cidx[:, 0], cidx[:, 1], cidx[:, 2]] = coarse.F.T
    ref = F.conv_transpose3d(dense_coarse, _dense_weight(up.kernel, 2, True), stride=2)
    c = fine.C[:, 1:].long()
    torch.testing.assert_close(fine.F, ref[0, :, c[:, 0], c[:, 1], c[:, 2]].T)


def test_batches_do_not_mix_and_pooling():
    pts = _grid(4, 1.0)
    coords = TB.batched_coordinates([pts, pts])
    feats = torch.cat([torch.ones(len(pts), 1), 2 * torch.ones(len(pts), 1)])
    conv = TB.MinkowskiConvolution(1, 1, kernel_size=3, dimension=3)
    y = conv(TB.SparseTensor(feats, coords))
    torch.testing.assert_close(y.F[len(pts):], 2 * y.F[: len(pts)])
    pooled = TB.MinkowskiGlobalAvgPooling()(TB.SparseTensor(feats, coords))
    assert pooled.F.squeeze(1).tolist() == [1.0, 2.0]


def test_one_by_one_kernel_layout_and_cat():
    coords = TB.batched_coordinates([_grid(3, 1.0)])
    x = TB.SparseTensor(torch.randn(len(coords), 4), coords)
    lin = TB.MinkowskiConvolution(4, 2, kernel_size=1, bias=True, dimension=3)
    assert lin.kernel.shape == (4, 2) and lin.bias.shape == (1, 2), "MinkowskiEngine's 1x1 layout"
    torch.testing.assert_close(lin(x).F, x.F @ lin.kernel + lin.bias)
    assert TB.cat(x, x).F.shape == (len(coords), 8)
    other = TB.SparseTensor(torch.randn(len(coords), 4), coords)
    with pytest.raises(ValueError, match="different coordinate maps"):
        TB.cat(x, other)


def test_sparse_quantize_and_input_checks():
    pts = torch.tensor([[0.01, 0.0, 0.0], [0.04, 0.0, 0.0], [0.3, 0.0, 0.0]])
    coords, feats, index, inverse = TB.sparse_quantize(pts, torch.arange(3.0)[:, None], quantization_size=0.1,
                                                       return_index=True, return_inverse=True)
    assert coords.tolist() == [[0, 0, 0], [3, 0, 0]] and feats.squeeze(1).tolist() == [0.0, 2.0]
    assert inverse.tolist() == [0, 0, 1] and index.tolist() == [0, 2]
    with pytest.raises(ValueError, match="duplicate coordinates"):
        TB.SparseTensor(torch.ones(2, 1), torch.zeros(2, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        TB.SparseTensor(torch.ones(2, 1), torch.zeros(2, 3, dtype=torch.int32))
    conv = TB.MinkowskiConvolution(3, 2, kernel_size=3, dimension=3)
    with pytest.raises(ValueError, match="expects 3 input channels"):
        conv(TB.SparseTensor(torch.ones(1, 5), torch.zeros(1, 4, dtype=torch.int32)))


def test_backend_selection(monkeypatch):
    assert sparse.backend("torch").name == "torch"
    monkeypatch.setattr(sparse, "minkowski_available", lambda: False)
    with pytest.raises(ImportError, match="MinkowskiEngine does not import"):
        sparse.backend("minkowski")
    assert sparse.backend("auto").name == "torch"
    monkeypatch.setenv("MM3DKIT_SPARSE_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="unknown sparse backend"):
        sparse.backend()
