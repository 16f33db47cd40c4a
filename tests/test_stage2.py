"""Stage 2: exact point-pixel pairing, feature sampling, augmentation, training, resume, export and bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mm3dkit.augment3d import Augment3D
from mm3dkit.backbone_io import load_backbone
from mm3dkit.data.types import Frame, Scene
from mm3dkit.errors import CheckpointError, DataError
from mm3dkit.geometry import project
from mm3dkit.methods.stage2 import (Stage2Dataset, Stage2Distill, collate_stage2, evaluate_retrieval, match_rows,
                                    scan_pairs)
from mm3dkit.models.res16unet import Res16UNet14A
from mm3dkit.point_pixel import frame_points, pair_external_points, sample_pairs, sample_pixel_features
from mm3dkit.synth import generate_scene
from mm3dkit.training import Interrupted, TrainConfig, fit


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return generate_scene(seed=3, n_frames=4, width=48, height=36).frames


def _teacher(dim: int = 8) -> nn.Module:
    """A fixed random 2D feature network standing in for Stage 1 (features depend on local colour)."""
    torch.manual_seed(123)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, dim, 3, padding=1))


def _method(dim: int = 8, num_pairs: int = 64) -> Stage2Distill:
    torch.manual_seed(0)
    return Stage2Distill(_teacher(dim), Res16UNet14A(3, dim, backend="torch"), num_pairs=num_pairs, temperature=0.2)


def _cfg(out, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), max_steps=6, batch_size=2, lr=3e-3, device="cpu", progress=False, log_every=1,
                ckpt_every=2, seed=1, scheduler="constant")
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------------------------------------------- pairing


def test_back_projected_points_project_to_their_own_pixel(frames):
    f = frames[0]
    pts = frame_points(f, world=True)
    assert len(pts) == int((f.depth > 0).sum())
    uv, ok = project(pts.points, f.intrinsics, f.pose, image_size=(f.height, f.width), depth_map=f.depth)
    assert bool(ok.all())
    torch.testing.assert_close(uv, pts.pixels.flip(1).float(), atol=2e-3, rtol=0)
    colors = torch.from_numpy(f.color)[pts.pixels[:, 0], pts.pixels[:, 1]].float() / 255
    torch.testing.assert_close(pts.colors, colors)


def test_pairing_stays_exact_after_3d_augmentation(frames):
    """Every voxel's pixel (sampled from the image by grid_sample) has exactly the voxel's input colour."""
    aug = dataclasses.replace(Augment3D(), color_shift=0.0, color_contrast=(1.0, 1.0), color_noise=0.0)
    torch.manual_seed(5)
    ds = Stage2Dataset(frames, voxel_size=0.05, augment=aug)
    item = ds[1]
    f = frames[1]
    color = torch.from_numpy(f.color).permute(2, 0, 1)[None].float() / 255
    from mm3dkit.point_pixel import sample_grid_features

    at_pixel = sample_grid_features(color, item["grid"], torch.zeros(len(item["grid"]), dtype=torch.long))
    torch.testing.assert_close(item["feats"] + 0.5, at_pixel, atol=1e-5, rtol=0)
    assert item["coords"].min() == 0 and item["coords"].dtype == torch.int32


def test_augmentation_rotates_about_up_axis_and_keeps_order():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(500, 3)
    aug = Augment3D(tilt=0.0, scale=(1.0, 1.0), translate=0.0, dropout=0.3, voxel_jitter=0.0)
    out = aug(pts, torch.rand(500, 3), generator=g)
    assert 0 < len(out.keep) <= 500 and bool((out.keep.diff() > 0).all())
    kept = pts[out.keep]
    torch.testing.assert_close(out.points[:, 2], kept[:, 2], atol=1e-5, rtol=0)  # up (z) unchanged
    exact = "donot_use_mm_for_euclid_dist"
    d_in, d_out = torch.cdist(kept, kept, compute_mode=exact), torch.cdist(out.points, out.points, compute_mode=exact)
    torch.testing.assert_close(d_in, d_out, atol=1e-4, rtol=0)  # rigid
    assert not torch.allclose(out.points, kept, atol=1e-3)


def test_external_points_use_occlusion_test(frames):
    f = frames[0]
    near = frame_points(f, world=True)
    rays = near.points - torch.as_tensor(f.pose[:3, 3], dtype=torch.float32)
    hidden = near.points + 0.5 * rays / rays.norm(dim=1, keepdim=True)  # behind the visible surface
    uv, ok = pair_external_points(torch.cat([near.points, hidden]), f, world=True)
    n = len(near)
    assert bool(ok[:n].all()) and not bool(ok[n:].any())
    torch.testing.assert_close(uv[:n], near.uv, atol=2e-3, rtol=0)
    scene = Scene(points=torch.cat([near.points, hidden]).numpy(),
                  colors=np.concatenate([f.color[near.pixels[:, 0], near.pixels[:, 1]]] * 2))
    pairs = scan_pairs(f, scene)
    assert len(pairs) == n
    item = Stage2Dataset([(f, scene)], voxel_size=0.1)[0]
    assert len(item["coords"]) > 0


def test_bilinear_sampling_matches_manual_interpolation_across_a_batch():
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(3, 5, 6, 8, generator=g)
    image_size = (12, 16)  # feature maps at half the image resolution
    batch = torch.tensor([2, 0, 0, 1, 2, 2, 0])
    uv = torch.rand(len(batch), 2, generator=g) * torch.tensor([15.0, 11.0])
    got = sample_pixel_features(maps, uv, batch, image_size)
    # manual: image pixel u -> feature-map pixel (u + 0.5) * w / W - 0.5, then bilinear with border clamping
    for k in range(len(batch)):
        x = ((uv[k, 0] + 0.5) * 8 / 16 - 0.5).clamp(0, 7)
        y = ((uv[k, 1] + 0.5) * 6 / 12 - 0.5).clamp(0, 5)
        x0, y0 = int(x.floor()), int(y.floor())
        x1, y1 = min(x0 + 1, 7), min(y0 + 1, 5)
        ax, ay = x - x0, y - y0
        m = maps[batch[k]]
        want = ((1 - ax) * (1 - ay) * m[:, y0, x0] + ax * (1 - ay) * m[:, y0, x1]
                + (1 - ax) * ay * m[:, y1, x0] + ax * ay * m[:, y1, x1])
        torch.testing.assert_close(got[k], want, atol=1e-5, rtol=0)


def test_pair_sampling_and_row_matching():
    scan = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    idx = sample_pairs(scan, 5)
    assert torch.bincount(scan[idx]).tolist() == [5, 3, 5] and len(idx.unique()) == len(idx)
    coords = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0], [1, 1, 2, 3], [0, 5, -1, 2]])
    perm = torch.tensor([2, 0, 3, 1])
    rows = match_rows(coords[perm], coords)
    assert torch.equal(coords[perm][rows], coords)


# ---------------------------------------------------------------------------------------------------- bad input


def test_frame_without_valid_depth_is_a_clear_error(frames):
    f = dataclasses.replace(frames[0], depth=np.zeros_like(frames[0].depth), name="sceneX/7")
    with pytest.raises(DataError, match="sceneX/7.*valid depth"):
        Stage2Dataset([f], voxel_size=0.1)[0]


def test_points_all_outside_the_image_are_a_clear_error(frames):
    f = dataclasses.replace(frames[0], name="sceneY/3")
    far = np.asarray(f.pose[:3, 3]) - 5.0 * np.asarray(f.pose[:3, 2])  # 5 m behind the camera
    scene = Scene(points=np.tile(far, (10, 1)).astype(np.float32), colors=np.zeros((10, 3), np.uint8))
    with pytest.raises(DataError, match="sceneY/3.*project into the image"):
        Stage2Dataset([(f, scene)], voxel_size=0.1)[0]


def test_images_of_different_sizes_need_image_size(frames):
    small = generate_scene(seed=1, n_frames=1, width=32, height=24).frames[0]
    ds = Stage2Dataset([frames[0], small], voxel_size=0.1)
    with pytest.raises(DataError, match="image_size"):
        collate_stage2([ds[0], ds[1]])
    ds = Stage2Dataset([frames[0], small], voxel_size=0.1, image_size=(24, 32))
    assert collate_stage2([ds[0], ds[1]])["images"].shape == (2, 3, 24, 32)


# ---------------------------------------------------------------------------------------------------- training


def test_short_run_lowers_loss_and_beats_random_init_retrieval(frames, tmp_path):
    method = _method()
    train = Stage2Dataset(frames, 0.08, Augment3D())
    plain = Stage2Dataset(frames, 0.08)
    before = evaluate_retrieval(method, plain, num_pairs=64)
    result = fit(method, train, _cfg(tmp_path, max_steps=40, lr=1e-2, log_every=5), collate_fn=collate_stage2)
    after = evaluate_retrieval(method, plain, num_pairs=64)
    losses = [r["loss"] for r in result.history]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1
    # many voxels of one surface share nearly the same pixel feature, so top-1 among 64 stays far from 1 here
    assert after["top1"] > 2 * max(before["top1"], after["chance"])
    assert after["mean_cosine"] > before["mean_cosine"] + 0.1
    # the teacher stayed frozen and in eval mode
    assert all(not p.requires_grad for p in method.teacher.parameters()) and not method.teacher.training
    # export: backbone.pth in PointContrast layout loads into a fresh network with a new head
    fresh = Res16UNet14A(3, 20, backend="torch")
    report = load_backbone(result.artefacts["backbone"], fresh)
    assert report.skipped_head == ["final.bias", "final.kernel"] and not report.missing
    torch.testing.assert_close(fresh.conv0p1s1.kernel, method.backbone.conv0p1s1.kernel)


def test_resume_after_interruption_matches_uninterrupted_run(frames, tmp_path):
    ds = Stage2Dataset(frames, 0.1, Augment3D())
    full = _method()
    fit(full, ds, _cfg(tmp_path / "full"), collate_fn=collate_stage2)
    cut = _method()
    with pytest.raises(Interrupted):
        fit(cut, ds, _cfg(tmp_path / "cut"), collate_fn=collate_stage2, stop_at_step=3)
    torch.manual_seed(42)
    resumed = Stage2Distill(_teacher(), Res16UNet14A(3, 8, backend="torch"), num_pairs=64, temperature=0.2)
    result = fit(resumed, ds, _cfg(tmp_path / "cut"), collate_fn=collate_stage2)
    assert result.step == 6
    for a, b in zip(resumed.backbone.parameters(), full.backbone.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_stage2_method_has_amp_off_and_l2_normalised_features(frames):
    method = _method()
    assert method.supports_amp is False
    batch = collate_stage2([Stage2Dataset(frames, 0.1)[i] for i in range(2)])
    z3, z2, scan = method.pair_features(batch)
    torch.testing.assert_close(z3.norm(dim=1), torch.ones(len(z3)))
    torch.testing.assert_close(z2.norm(dim=1), torch.ones(len(z2)))
    assert scan.max() == 1 and F.cosine_similarity(z3, z2).abs().max() <= 1.0 + 1e-6


def test_bad_stage1_checkpoint_is_a_clear_error(tmp_path):
    from mm3dkit.methods.stage2 import load_stage1_teacher

    with pytest.raises(CheckpointError, match="missing.pt"):
        load_stage1_teacher(tmp_path / "missing.pt", feature_dim=16)


def test_teacher_of_another_feature_size_is_a_clear_error(tmp_path):
    from mm3dkit.methods.stage2 import check_teacher_dim

    assert check_teacher_dim(_teacher(16), 16, "ok.pt") is not None
    with pytest.raises(CheckpointError, match="stage1_32.pt.*32-d pixel features.*feature_dim=16"):
        check_teacher_dim(_teacher(32), 16, tmp_path / "stage1_32.pt")



def test_run_writes_backbone_and_retrieval_and_cli_needs_stage1(tmp_path):
    from mm3dkit.methods import stage2
    from mm3dkit.synth import generate_dataset

    root = generate_dataset(tmp_path / "data", n_scenes=2, n_frames=2, width=32, height=24, progress=False)
    settings = dict(stage2.PROFILES["quick"], feature_dim=8, max_steps=2, batch_size=2, eval_items=2, eval_pairs=32,
                    image_size=[24, 32], voxel_size=0.15, progress=False, device="cpu")
    report = stage2.run(settings, root, None, tmp_path / "run", teacher=_teacher(8))
    assert set(report["before"]) >= {"top1", "mean_cosine", "chance"} and "after" in report
    assert (tmp_path / "run" / "backbone.pth").is_file() and (tmp_path / "run" / "retrieval.json").is_file()
    with pytest.raises(SystemExit):
        stage2.main(["--profile", "quick", "--data", str(root), "--out", str(tmp_path / "cli")])
    with pytest.raises(CheckpointError, match="does not exist"):
        stage2.main(["--profile", "quick", "--data", str(root), "--out", str(tmp_path / "cli"),
                     "--stage1", str(tmp_path / "no_stage1.pt")])

def test_ddp_two_processes_gloo(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MM3DKIT_SPARSE_BACKEND": "torch"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29531", __file__, str(tmp_path)], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["rank"] for r in rows) == [0, 1]
    assert rows[0]["checksum"] == pytest.approx(rows[1]["checksum"], rel=1e-9), "DDP keeps replicas identical"
    assert (tmp_path / "backbone.pth").exists() and (tmp_path / "done.json").exists()


if __name__ == "__main__":  # torchrun worker of test_ddp_two_processes_gloo: python -m torch.distributed.run ... OUT
    scene_frames = generate_scene(seed=3, n_frames=4, width=32, height=24).frames
    ddp_method = _method()
    res = fit(ddp_method, Stage2Dataset(scene_frames, 0.15, Augment3D()), _cfg(sys.argv[1], max_steps=3),
              collate_fn=collate_stage2)
    total = float(sum(p.detach().double().sum() for p in ddp_method.backbone.parameters()))
    print(json.dumps({"rank": torch.distributed.get_rank(), "step": res.step, "checksum": total}))

