"""Single layers of the torch backend against dense convolutions (cases test_sparse.py leaves out) and, when
MinkowskiEngine imports, against MinkowskiEngine itself with the same weights: outputs, coordinates and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mm3dkit.sparse import minkowski_available
from mm3dkit.sparse import torch_backend as TB

needs_me = pytest.mark.skipif(not minkowski_available(),
                              reason="MinkowskiEngine is not installed (make minkowski builds it)")


def _points(n: int, count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (count, 3), generator=g).unique(dim=0)


def _order(coords: torch.Tensor) -> torch.Tensor:
    c = coords.long() + torch.tensor([0, 1 << 15, 1 << 15, 1 << 15])
    return torch.argsort((c[:, 0] << 48) | (c[:, 1] << 32) | (c[:, 2] << 16) | c[:, 3])


def test_even_kernel_stride_one_matches_dense_with_gradients():
    """Kernel 2, stride 1: MinkowskiEngine's even kernels span offsets 0..k-1 (no centre)."""
    n = 5
    coords = TB.batched_coordinates([_points(n, 60, 0)])
    feats = torch.randn(len(coords), 2, dtype=torch.float64, requires_grad=True)
    conv = TB.MinkowskiConvolution(2, 3, kernel_size=2, stride=1, dimension=3).double()
    y = conv(TB.SparseTensor(feats, coords))
    assert torch.equal(y.C, coords.int()), "stride 1 keeps the input coordinates"
    dense = torch.zeros(1, 2, n + 1, n + 1, n + 1, dtype=torch.float64)
    c = coords[:, 1:].long()
    dense[0, :, c[:, 0], c[:, 1], c[:, 2]] = feats.T
    w = torch.zeros(3, 2, 2, 2, 2, dtype=torch.float64)
    for i, (a, b, d) in enumerate(TB.kernel_offsets(2).tolist()):
        w[:, :, a, b, d] = conv.kernel[i].T
    ref = F.conv3d(dense, w)[0, :, c[:, 0], c[:, 1], c[:, 2]].T
    torch.testing.assert_close(y.F, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad((y.F * g).sum(), [feats, conv.kernel]),
                               torch.autograd.grad((ref * g).sum(), [feats, conv.kernel]))


def test_transposed_conv_gradients_match_dense():
    n = 8
    coords = TB.batched_coordinates([_points(n, 150, 1)])
    x = TB.SparseTensor(torch.randn(len(coords), 2, dtype=torch.float64), coords)
    coarse = TB.MinkowskiConvolution(2, 3, kernel_size=2, stride=2, dimension=3).double()(x)
    cf = coarse.F.detach().requires_grad_(True)
    up = TB.MinkowskiConvolutionTranspose(3, 4, kernel_size=2, stride=2, dimension=3).double()
    fine = up(coarse.replace_feature(cf))
    dense = torch.zeros(1, 3, n // 2, n // 2, n // 2, dtype=torch.float64)
    ci = (coarse.C[:, 1:] // 2).long()
    dense[0, :, ci[:, 0], ci[:, 1], ci[:, 2]] = cf.T
    w = torch.zeros(3, 4, 2, 2, 2, dtype=torch.float64)
    for i, (a, b, d) in enumerate(TB.kernel_offsets(2).tolist()):
        w[:, :, a, b, d] = up.kernel[i]
    c = fine.C[:, 1:].long()
    ref = F.conv_transpose3d(dense, w, stride=2)[0, :, c[:, 0], c[:, 1], c[:, 2]].T
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad((fine.F * g).sum(), [cf, up.kernel]),
                               torch.autograd.grad((ref * g).sum(), [cf, up.kernel]))


def test_global_max_pooling_and_empty_offsets():
    coords = TB.batched_coordinates([torch.tensor([[0, 0, 0], [9, 9, 9]]), torch.tensor([[5, 5, 5]])])
    feats = torch.tensor([[1.0, -3.0], [2.0, -4.0], [7.0, 0.5]])
    pooled = TB.MinkowskiGlobalMaxPooling()(TB.SparseTensor(feats, coords))
    assert pooled.F.tolist() == [[2.0, -3.0], [7.0, 0.5]] and pooled.C[:, 0].tolist() == [0, 1]
    # isolated points: every offset but the centre finds nothing, the output is the centre product only
    conv = TB.MinkowskiConvolution(2, 1, kernel_size=3, dimension=3)
    y = conv(TB.SparseTensor(feats, coords))
    torch.testing.assert_close(y.F, feats @ conv.kernel[13])


def _run_layers(ME, layers_state, specs, pts_list, feats):
    """Build the layer chain ``specs`` in backend ``ME``, load weights, run, return sorted outputs + gradients."""
    layers = []
    for kind, cin, cout, k, s, d in specs:
        cls = ME.MinkowskiConvolutionTranspose if kind == "tr" else ME.MinkowskiConvolution
        layers.append(cls(cin, cout, kernel_size=k, stride=s, dilation=d, dimension=3).double())
    chain = torch.nn.Sequential(*layers)
    if layers_state is not None:
        chain.load_state_dict(layers_state)
    f = feats.clone().requires_grad_(True)
    out = chain(ME.SparseTensor(f, ME.batched_coordinates(pts_list)))
    order = _order(out.C.cpu())
    w = torch.linspace(-1, 1, out.F.shape[1], dtype=torch.float64)
    (out.F[order] * w).sum().backward()
    return chain.state_dict(), out.C[order].long(), out.F[order].detach(), [f.grad] + [m.kernel.grad for m in layers]


@pytest.mark.parametrize("specs", [
    [("conv", 3, 4, 3, 1, 1)],
    [("conv", 3, 4, 3, 2, 1)],
    [("conv", 3, 4, 2, 2, 1)],
    [("conv", 3, 4, 2, 1, 1)],
    [("conv", 3, 4, 3, 1, 2)],
    [("conv", 3, 4, 1, 1, 1)],
    [("conv", 3, 4, 2, 2, 1), ("conv", 4, 5, 3, 1, 1), ("tr", 5, 2, 2, 2, 1)],
    [("conv", 3, 4, 3, 2, 1), ("conv", 4, 4, 3, 2, 1), ("tr", 4, 5, 3, 2, 1), ("tr", 5, 2, 3, 2, 1)],
], ids=["k3s1", "k3s2", "k2s2", "k2s1", "k3d2", "k1", "down-up-k2", "down2-up2-k3"])
@pytest.mark.minkowski
@needs_me
def test_layers_match_minkowski(specs):
    import MinkowskiEngine as MEngine

    from mm3dkit.sparse import backend

    pts = [_points(10, 250, 2), _points(10, 90, 3)]
    feats = torch.randn(sum(len(p) for p in pts), 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    state, c_t, f_t, g_t = _run_layers(backend("torch"), None, specs, pts, feats)
    _, c_m, f_m, g_m = _run_layers(backend("minkowski"), state, specs, pts, feats)
    assert MEngine.__version__ == "0.5.4"
    assert torch.equal(c_t, c_m), "same output coordinates"
    torch.testing.assert_close(f_t, f_m, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_t, g_m):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.minkowski
@needs_me
def test_sparse_quantize_and_batched_coordinates_agree_with_minkowski():
    import MinkowskiEngine as MEngine

    g = torch.Generator().manual_seed(5)
    pts = torch.rand(500, 3, generator=g, dtype=torch.float64) * 2 - 1
    size = 0.2
    ours = TB.sparse_quantize(pts, quantization_size=size, return_index=True, return_inverse=True)
    theirs = MEngine.utils.sparse_quantize(pts, quantization_size=size, return_index=True, return_inverse=True)
    for coords, index, inverse in (ours, theirs):
        grid = torch.floor(pts / size).long()
        assert torch.equal(coords.long()[inverse.long()], grid), "every point maps to its voxel"
        assert torch.equal(coords.long(), grid[index.long()]), "index picks a point of each voxel"
    assert set(map(tuple, ours[0].tolist())) == set(map(tuple, theirs[0].tolist()))
    a, b = [torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5, 6], [7, 8, 9]])]
    assert torch.equal(TB.batched_coordinates([a, b]), MEngine.utils.batched_coordinates([a, b]))
