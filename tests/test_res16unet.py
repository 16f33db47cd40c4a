"""Res16UNet: PointContrast/CSC state_dict keys, head reset, and parity between the torch and MinkowskiEngine backends."""

from __future__ import annotations

import pytest
import torch

from mm3dkit.models.res16unet import Res16UNet14A, Res16UNet34C, build_res16unet
from mm3dkit.sparse import minkowski_available


def _bn(prefix: str, c: int) -> dict[str, tuple]:
    return {f"{prefix}.bn.weight": (c,), f"{prefix}.bn.bias": (c,), f"{prefix}.bn.running_mean": (c,),
            f"{prefix}.bn.running_var": (c,), f"{prefix}.bn.num_batches_tracked": ()}


def expected_keys(planes, layers, cin=3, cout=20, init=32) -> dict[str, tuple]:
    """The PointContrast Res16UNet key list, written out from the architecture description (independent of the model)."""
    keys: dict[str, tuple] = {"conv0p1s1.kernel": (27, cin, init), **_bn("bn0", init)}
    inplanes = init

    def layer(name, planes_, blocks):
        nonlocal inplanes
        for b in range(blocks):
            p = f"{name}.{b}"
            keys[f"{p}.conv1.kernel"] = (27, inplanes, planes_)
            keys.update(_bn(f"{p}.norm1", planes_))
            keys[f"{p}.conv2.kernel"] = (27, planes_, planes_)
            keys.update(_bn(f"{p}.norm2", planes_))
            if b == 0 and inplanes != planes_:
                keys[f"{p}.downsample.0.kernel"] = (inplanes, planes_)
                keys.update(_bn(f"{p}.downsample.1", planes_))
            inplanes = planes_

    for i, name in enumerate(["conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2"]):
        keys[f"{name}.kernel"] = (8, inplanes, inplanes)
        keys.update(_bn(f"bn{i + 1}", inplanes))
        layer(f"block{i + 1}", planes[i], layers[i])
    skips = [planes[2], planes[1], planes[0], init]
    for j, name in enumerate(["convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2"]):
        keys[f"{name}.kernel"] = (8, inplanes, planes[4 + j])
        keys.update(_bn(f"bntr{4 + j}", planes[4 + j]))
        inplanes = planes[4 + j] + skips[j]
        layer(f"block{5 + j}", planes[4 + j], layers[4 + j])
    keys["final.kernel"] = (planes[7], cout)
    keys["final.bias"] = (1, cout)
    return keys


@pytest.mark.parametrize("cls,planes,layers", [
    (Res16UNet34C, (32, 64, 128, 256, 256, 128, 96, 96), (2, 3, 4, 6, 2, 2, 2, 2)),
    (Res16UNet14A, (32, 64, 128, 256, 128, 128, 96, 96), (1, 1, 1, 1, 1, 1, 1, 1)),
])
def test_state_dict_keys_match_pointcontrast(cls, planes, layers):
    sd = cls(in_channels=3, out_channels=20, backend="torch").state_dict()
    want = expected_keys(planes, layers)
    assert set(sd) == set(want), f"missing {sorted(set(want) - set(sd))[:5]}, extra {sorted(set(sd) - set(want))[:5]}"
    for k, shape in want.items():
        assert tuple(sd[k].shape) == shape, k


def test_reset_head_and_forward_features():
    net = build_res16unet("Res16UNet14A", 3, 16, backend="torch")
    old = net.final.kernel.detach().clone()
    net.reset_head(7)
    assert net.final.kernel.shape == (96, 7) and not torch.equal(net.final.kernel[:, :7], old[:, :7])
    ME = net.ME
    c = ME.batched_coordinates([torch.randint(0, 20, (300, 3)).unique(dim=0)])
    x = ME.SparseTensor(torch.rand(len(c), 3), c)
    assert net.forward_features(x).F.shape == (len(c), net.feature_dim)
    assert net(x).F.shape == (len(c), 7)
    with pytest.raises(KeyError, match="unknown 3D model"):
        build_res16unet("Res99")


def _sorted_rows(coords: torch.Tensor) -> torch.Tensor:
    c = coords.long()
    return torch.argsort(((c[:, 0] * 4096 + c[:, 1] + 1024) * 4096 + c[:, 2] + 1024) * 4096 + c[:, 3] + 1024)


@pytest.mark.minkowski
@pytest.mark.skipif(not minkowski_available(), reason="MinkowskiEngine is not installed (make minkowski builds it)")
@pytest.mark.parametrize("cls", [Res16UNet14A, Res16UNet34C])
def test_backends_agree_forward_and_backward(cls):
    torch.manual_seed(0)
    pts = torch.randint(0, 24, (1500, 3)).unique(dim=0)
    feats = torch.rand(len(pts) + 700, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref_state, results = None, {}
    for name in ("torch", "minkowski"):
        net = cls(3, 8, backend=name).double()
        if ref_state is None:
            ref_state = net.state_dict()
        else:
            net.load_state_dict(ref_state)  # the same checkpoint moves between backends unchanged
        ME = net.ME
        coords = ME.batched_coordinates([pts, pts[:700]])
        f = feats.clone().requires_grad_(True)
        out = net(ME.SparseTensor(f, coords))
        order = _sorted_rows(out.C)
        weights = torch.linspace(-1, 1, 8, dtype=torch.float64)
        (out.F[order] * weights).sum().backward()
        results[name] = (out.F[order].detach(), f.grad, net.conv0p1s1.kernel.grad, net.block1[0].conv1.kernel.grad,
                         net.final.kernel.grad)
    for a, b in zip(results["torch"], results["minkowski"]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
