"""backbone.pth: the kit's layout, PointContrast's / CSC's layouts (prefixes), head handling and clear errors."""

from __future__ import annotations

import pytest
import torch

from mm3dkit.backbone_io import FORMAT, load_backbone, save_backbone
from mm3dkit.errors import CheckpointError
from mm3dkit.models.res16unet import Res16UNet14A, Res16UNet18A


def _net(out: int = 16, cls=Res16UNet14A, seed: int = 0):
    torch.manual_seed(seed)
    return cls(3, out, backend="torch")


def _same(a: torch.nn.Module, b: torch.nn.Module, skip: str = "final.") -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith(skip))


def test_kit_layout_round_trip(tmp_path):
    src = _net()
    path = save_backbone(src, tmp_path / "backbone.pth", meta={"note": "x"})
    obj = torch.load(path, weights_only=False)
    assert obj["format"] == FORMAT and obj["arch"] == "Res16UNet14A" and obj["out_channels"] == 16
    assert "conv0p1s1.kernel" in obj["state_dict"] and "final.kernel" in obj["state_dict"]
    dst = _net(seed=1)
    report = load_backbone(path, dst, strict_head=True)
    assert _same(src, dst, skip="@") and not report.skipped_head and report.prefix == ""


@pytest.mark.parametrize("layout", ["pointcontrast_ddp", "csc_model_state", "kit_training_checkpoint", "bare"])
def test_other_layouts_load(tmp_path, layout):
    src = _net()
    sd = src.state_dict()
    obj = {
        "pointcontrast_ddp": {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
        "csc_model_state": {"model_state": dict(sd), "optimizer": {}},
        "kit_training_checkpoint": {"model": {**{f"backbone.{k}": v for k, v in sd.items()},
                                              "teacher.0.weight": torch.zeros(2, 3, 1, 1)}, "step": 5},
        "bare": dict(sd),
    }[layout]
    torch.save(obj, tmp_path / "w.pth")
    dst = _net(seed=1)
    report = load_backbone(tmp_path / "w.pth", dst)
    assert _same(src, dst, skip="@") and not report.missing


def test_new_head_is_skipped_unless_strict(tmp_path):
    path = save_backbone(_net(16), tmp_path / "b.pth")
    dst = _net(20, seed=1)
    head_before = dst.final.kernel.clone()
    report = load_backbone(path, dst)
    assert report.skipped_head == ["final.bias", "final.kernel"] and torch.equal(dst.final.kernel, head_before)
    with pytest.raises(CheckpointError, match="b.pth.*final"):
        load_backbone(path, _net(20), strict_head=True)


def test_mismatches_are_clear_errors(tmp_path):
    path = save_backbone(_net(16), tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match="b.pth.*shape mismatch.*Res16UNet18A|b.pth.*missing"):
        load_backbone(path, _net(16, Res16UNet18A))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_backbone(tmp_path / "nope.pth", _net())
    torch.save({"epoch": 1}, tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="empty.pth.*no tensors"):
        load_backbone(tmp_path / "empty.pth", _net())
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_backbone(tmp_path / "junk.pth", _net())
