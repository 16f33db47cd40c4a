"""Features of a frame for Figure 2 (mm3dkit.features): shapes/alignment, agreement metric, checkpoint loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mm3dkit.errors import CheckpointError
from mm3dkit.features import FrameFeatures, build_feature_method, frame_agreement, frame_features
from mm3dkit.heatmaps import fit_joint_pca
from mm3dkit.methods.stage2 import Stage2Distill
from mm3dkit.models.res16unet import Res16UNet14A
from mm3dkit.synth import generate_scene


@pytest.fixture(scope="module")
def frame():
    return generate_scene(0, n_frames=1, width=40, height=30).frames[0]


def tiny_method(dim: int = 8) -> Stage2Distill:
    torch.manual_seed(0)
    return Stage2Distill(nn.Conv2d(3, dim, 3, padding=1), Res16UNet14A(3, dim, backend="torch"), num_pairs=32)


def test_frame_features_shapes_and_pairing(frame):
    m = tiny_method()
    ff = frame_features(m, frame, voxel_size=0.1, image_size=(24, 32))
    n = len(ff.points)
    assert n > 10 and ff.points.shape == (n, 3) and ff.point_colors.shape == (n, 3)
    assert ff.point_feats.shape == ff.pixel_feats.shape == (n, 8)
    assert ff.pixel_map.shape == (24, 32, 8) and ff.image.shape == (30, 40, 3)
    for z in (ff.point_feats, ff.pixel_feats, ff.pixel_map.reshape(-1, 8)):
        assert torch.allclose(z.norm(dim=1), torch.ones(len(z)), atol=1e-4)  # L2-normalised
    # each point's 2D feature is a value of the feature map: its nearest map entry is (close to) identical
    d = torch.cdist(ff.pixel_feats, ff.pixel_map.reshape(-1, 8)).min(1).values
    assert float(d.median()) < 0.35
    assert float(ff.point_colors.min()) >= 0 and float(ff.point_colors.max()) <= 1
    # dense: every back-projected pixel, each mapped to its voxel; a voxel's own point maps to that voxel
    assert len(ff.dense_points) >= n and ff.dense_colors.shape == ff.dense_points.shape
    assert ff.dense(ff.point_feats).shape == (len(ff.dense_points), 8)
    assert int(ff.dense_voxel.max()) == n - 1
    rows = torch.cdist(ff.points, ff.dense_points).argmin(1)  # each voxel's point among the dense points
    assert torch.equal(ff.dense_voxel[rows], torch.arange(n))
    # joint colouring covers both sets
    pca = fit_joint_pca(ff.pixel_map.reshape(-1, 8), ff.point_feats)
    assert pca.colors(ff.point_feats).shape == (n, 3)


def test_frame_features_is_deterministic_and_restores_training_mode(frame):
    m = tiny_method().train()
    a = frame_features(m, frame, voxel_size=0.1)
    b = frame_features(m, frame, voxel_size=0.1)
    assert torch.equal(a.point_feats, b.point_feats) and torch.equal(a.pixel_feats, b.pixel_feats)
    assert m.training


def test_frame_agreement_is_stage2_retrieval():
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(200, 8, generator=g), dim=1)
    same = FrameFeatures(np.zeros((2, 2, 3), np.uint8), torch.zeros(2, 2, 8), torch.zeros(200, 3),
                         torch.zeros(200, 3), z, z)
    assert frame_agreement(same, num_pairs=None) == {"top1": 1.0, "mean_cosine": 1.0, "chance": 0.005}
    shuffled = FrameFeatures(same.image, same.pixel_map, same.points, same.point_colors, z, z.roll(1, 0))
    m = frame_agreement(shuffled, num_pairs=100)
    assert m["top1"] < 0.1 and m["chance"] == 0.01 and m["mean_cosine"] < 0.5  # pairs broken: near chance


def test_missing_checkpoints_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="stage1.pt"):
        build_feature_method(tmp_path / "stage1.pt")


def test_stage2_checkpoint_round_trip(tmp_path, monkeypatch, frame):
    """A Stage-2 backbone file loads into the feature model (Stage-1 loader stubbed with a tiny teacher)."""
    from mm3dkit.backbone_io import save_backbone
    from mm3dkit.methods import stage2

    teacher = nn.Conv2d(3, 8, 1)
    monkeypatch.setattr(stage2, "load_stage1_teacher", lambda path, feature_dim=None: stage2.freeze(teacher))
    settings = dict(stage2.PROFILES["quick"], model="Res16UNet14A", backend="torch")
    trained_net = Res16UNet14A(3, 8, backend="torch")
    with torch.no_grad():
        for p in trained_net.parameters():
            p.add_(0.01)
    path = save_backbone(trained_net, tmp_path / "backbone.pth")
    stage1_file = tmp_path / "stage1.pt"
    stage1_file.write_bytes(b"stub: the Stage-1 loader is replaced above")
    m = build_feature_method(stage1_file, path, settings)
    for (k, v), (k2, v2) in zip(m.backbone.state_dict().items(), trained_net.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    r0 = build_feature_method(stage1_file, None, settings, seed=0)
    r1 = build_feature_method(stage1_file, None, settings, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(r0.backbone.state_dict().values(), r1.backbone.state_dict().values()))
    assert not torch.equal(r0.backbone.state_dict()["final.kernel"], m.backbone.state_dict()["final.kernel"])
    with pytest.raises(CheckpointError, match="nope.pt"):
        build_feature_method(stage1_file, tmp_path / "nope.pt", settings)
    bad = save_backbone(Res16UNet14A(3, 4, backend="torch"), tmp_path / "head4.pth")  # 4-d head vs 8-d teacher
    with pytest.raises(CheckpointError, match="head4.pth"):
        build_feature_method(stage1_file, bad, settings)
