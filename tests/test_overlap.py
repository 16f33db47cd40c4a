"""Overlap-pair selection (synthetic sequences with known poses), its cache, and point correspondences."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mm3dkit import overlap
from mm3dkit.augment3d import Augment3D
from mm3dkit.errors import DataError
from mm3dkit.overlap import (FramePair, PairViewDataset, collate_pair_views, correspondences, dataset_overlap_pairs,
                             overlap_matrix, scene_overlap_pairs, select_pairs, voxel_keys)

W, H = 40, 30
K = np.array([[30.0, 0, (W - 1) / 2], [0, 30.0, (H - 1) / 2], [0, 0, 1]])


def _pose(yaw: float = 0.0, shift: float = 0.0) -> np.ndarray:
    """Camera-to-world: camera looks along world +x rotated by ``yaw`` about world z, moved ``shift`` along y."""
    c, s = math.cos(yaw), math.sin(yaw)
    forward, right, down = np.array([c, s, 0.0]), np.array([s, -c, 0.0]), np.array([0.0, 0, -1])
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, forward], 1)
    T[:3, 3] = [0.0, shift, 1.5]
    return T


def _write_scene(folder: Path, poses: list[np.ndarray], depth_m: float = 2.0) -> Path:
    for sub in ("depth", "pose", "intrinsic", "color"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    K4 = np.eye(4)
    K4[:3, :3] = K
    np.savetxt(folder / "intrinsic" / "intrinsic_depth.txt", K4)
    for i, pose in enumerate(poses):
        Image.fromarray(np.full((H, W), int(depth_m * 1000), np.uint16)).save(folder / "depth" / f"{i}.png")
        Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(folder / "color" / f"{i}.jpg")
        np.savetxt(folder / "pose" / f"{i}.txt", pose)
    return folder


@pytest.fixture()
def scene(tmp_path: Path) -> Path:
    # 0: reference; 1: same pose; 2: looking the opposite way; 3: shifted sideways by ~half the view width
    half_width = 2.0 * (W / 2) / 30.0
    return _write_scene(tmp_path / "scans" / "scene0000_00",
                        [_pose(), _pose(), _pose(math.pi), _pose(0.0, half_width)])


def _ratios(scene: Path, voxel: float = 0.05) -> torch.Tensor:
    return overlap_matrix([overlap.frame_voxel_keys(scene, i, voxel, 1) for i in range(4)])


def test_overlap_ratios_known_poses(scene: Path) -> None:
    r = _ratios(scene)
    assert r[0, 1] == pytest.approx(1.0)
    assert r[0, 2] == pytest.approx(0.0)
    assert 0.3 < float(r[0, 3]) < 0.7
    assert torch.allclose(r, r.T)


def test_overlap_matrix_matches_loop_reference() -> None:
    g = torch.Generator().manual_seed(0)
    keys = [torch.unique(torch.randint(0, 50, (int(n),), generator=g)) for n in (30, 10, 40, 5)]
    got = overlap_matrix(keys)
    for i in range(4):
        for j in range(4):
            a, b = set(keys[i].tolist()), set(keys[j].tolist())
            assert float(got[i, j]) == pytest.approx(len(a & b) / min(len(a), len(b)))


def test_dilated_overlap_matches_loop_reference() -> None:
    # directed ratio i->j: fraction of i's voxels with an occupied voxel of j within one voxel (Chebyshev <= 1)
    g = torch.Generator().manual_seed(2)
    grids = [torch.unique(torch.randint(0, 6, (n, 3), generator=g), dim=0) for n in (25, 40, 8)]
    keys = [voxel_keys(c.float() + 0.5, 1.0) for c in grids]
    got = overlap_matrix(keys, [overlap.dilate_keys(k) for k in keys])
    for i in range(3):
        for j in range(3):
            def directed(a: torch.Tensor, b: torch.Tensor) -> float:
                hits = sum(any(int((p - q).abs().max()) <= 1 for q in b) for p in a)
                return hits / len(a)
            expect = 1.0 if i == j else max(directed(grids[i], grids[j]), directed(grids[j], grids[i]))
            assert float(got[i, j]) == pytest.approx(expect), (i, j)


def test_voxel_keys_unique_per_voxel() -> None:
    pts = torch.tensor([[0.01, 0.01, 0.01], [0.04, 0.02, 0.0], [-0.01, 0.0, 0.0], [0.0, 0.06, 0.0]])
    assert voxel_keys(pts, 0.05).numel() == 3


def test_scene_pairs_selection_and_cache(scene: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = scene_overlap_pairs(scene, frame_stride=1, voxel_size=0.05, min_overlap=0.3, pixel_stride=1)
    got = {(p.frame0, p.frame1) for p in pairs}
    assert (0, 1) in got and (0, 3) in got and (1, 3) in got
    assert not any(2 in ij for ij in got)
    cache = json.loads((scene / overlap.CACHE_NAME).read_text())
    assert len(cache["entries"]) == 1

    def boom(*args, **kwargs):
        raise AssertionError("cache not used")

    monkeypatch.setattr(overlap, "frame_voxel_keys", boom)
    again = scene_overlap_pairs(scene, frame_stride=1, voxel_size=0.05, min_overlap=0.3, pixel_stride=1)
    assert again == pairs
    with pytest.raises(AssertionError, match="cache not used"):  # other parameters: another cache entry
        scene_overlap_pairs(scene, frame_stride=1, voxel_size=0.05, min_overlap=0.5, pixel_stride=1)


def test_cache_dir_used_for_read_only_data(scene: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    pairs = scene_overlap_pairs(scene, frame_stride=1, voxel_size=0.05, pixel_stride=1, cache_dir=cache_dir)
    assert pairs and len(list(cache_dir.glob("*.json"))) == 1
    assert not (scene / overlap.CACHE_NAME).exists()


def test_no_pairs_is_a_data_error(tmp_path: Path) -> None:
    _write_scene(tmp_path / "scans" / "scene0000_00", [_pose(), _pose(math.pi)])
    with pytest.raises(DataError, match="no frame pairs"):
        dataset_overlap_pairs(tmp_path, split=None, frame_stride=1, voxel_size=0.05)
    with pytest.raises(DataError, match="depth"):
        overlap.sequence_frames(tmp_path / "missing_scene")


def test_select_pairs_upper_triangle() -> None:
    r = torch.tensor([[1.0, 0.4, 0.2], [0.4, 1.0, 0.9], [0.2, 0.9, 1.0]])
    assert select_pairs(r, 0.3) == [(0, 1, 0.4), (1, 2, 0.9)]
    assert select_pairs(r, 0.3, max_overlap=0.8) == [(0, 1, 0.4)]


def test_correspondences_match_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    p0, p1 = torch.rand(60, 3, generator=g), torch.rand(80, 3, generator=g)
    got = {tuple(r) for r in correspondences(p0, p1, 0.1).tolist()}
    ref = set()
    for i in range(len(p0)):
        d = (p1 - p0[i]).norm(dim=1)
        j = int(d.argmin())
        if d[j] < 0.1:
            ref.add((i, j))
    assert got == ref and len(ref) > 0


def test_pair_dataset_and_collate(scene: Path) -> None:
    pairs = [FramePair(str(scene), 0, 1, 1.0), FramePair(str(scene), 0, 3, 0.5)]
    ds = PairViewDataset(pairs, voxel_size=0.1, augment=Augment3D(), match_radius=0.15)
    torch.manual_seed(0)
    items = [ds[0], ds[1]]
    for it in items:
        m = it["matches"]
        assert len(m) > 0
        assert int(m[:, 0].max()) < len(it["coords0"]) and int(m[:, 1].max()) < len(it["coords1"])
    batch = collate_pair_views(items)
    assert batch["coords0"].shape[1] == 4 and set(batch["coords0"][:, 0].tolist()) == {0, 1}
    m, scan = batch["matches"], batch["match_scan"]
    assert torch.equal(batch["coords0"][m[:, 0], 0].long(), scan)
    assert torch.equal(batch["coords1"][m[:, 1], 0].long(), scan)
    # identical frames with identity augmentation: every voxel matches itself
    same = PairViewDataset([FramePair(str(scene), 0, 1, 1.0)], voxel_size=0.1)[0]
    assert len(same["matches"]) == len(same["coords0"]) == len(same["coords1"])
