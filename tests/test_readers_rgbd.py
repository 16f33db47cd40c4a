"""Generic RGB-D readers: depth encodings (checked against Open3D), .log trajectories, camera JSON, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mm3dkit.data.rgbd import (OPEN3D_MAX_DEPTH, RGBDSequence, decode_depth, read_camera_json, read_depth,
                               read_rgbd_frame, read_trajectory_log)
from mm3dkit.errors import DataError
from mm3dkit.geometry import back_project

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "open3d_rgbd"
K = np.array([[4.0, 0, 2.0], [0, 4.0, 1.5], [0, 0, 1]])


def needs_shared():
    if not SHARED.is_dir():
        pytest.skip(f"Open3D test frames not found at {SHARED} (shared data folder absent)")


def _o3d_depth(fn_name: str, raw: np.ndarray) -> np.ndarray:
    o3d = pytest.importorskip("open3d")
    color = o3d.geometry.Image(np.zeros(raw.shape + (3,), np.uint8))
    rgbd = getattr(o3d.geometry.RGBDImage, fn_name)(color, o3d.geometry.Image(np.ascontiguousarray(raw)))
    return np.asarray(rgbd.depth)


def test_decode_hand_computed():
    assert decode_depth(np.array([[1500]], np.uint16), "mm")[0, 0] == pytest.approx(1.5)
    assert decode_depth(np.array([[7500]], np.uint16), "tum")[0, 0] == pytest.approx(1.5)
    assert decode_depth(np.array([[1500 << 3]], np.uint16), "sun")[0, 0] == pytest.approx(1.5)
    # NYU: bytes swapped, depth = 351.3 / (1092.5 - d); 2047 (invalid marker) -> 0
    raw = np.array([[700, 2047]], np.uint16).byteswap()
    assert decode_depth(raw, "nyu")[0].tolist() == pytest.approx([351.3 / 392.5, 0.0])
    assert decode_depth(np.array([[9000]], np.uint16), "mm", max_depth=8.0)[0, 0] == 0


@pytest.mark.parametrize("enc,fn", [("tum", "create_from_tum_format"), ("sun", "create_from_sun_format"),
                                    ("nyu", "create_from_nyu_format")])
def test_decode_matches_open3d(enc, fn):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 65535, size=(8, 16), dtype=np.uint16)
    if enc == "nyu":
        raw = rng.integers(0, 1100, size=(8, 16)).astype(np.uint16).byteswap()
    ours = decode_depth(raw, enc, OPEN3D_MAX_DEPTH[enc])
    ref = _o3d_depth(fn, raw)
    np.testing.assert_allclose(ours, ref, atol=1e-3)  # Open3D rounds through millimetres


def test_wrong_dtype_and_unreadable(tmp_path):
    Image.fromarray(np.full((3, 4), 7, np.uint8)).save(tmp_path / "d8.png")
    with pytest.raises(DataError, match="d8.png.*16-bit"):
        read_depth(tmp_path / "d8.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="bad.png.*cannot be read"):
        read_depth(tmp_path / "bad.png")
    with pytest.raises(DataError, match="missing.png.*missing"):
        read_depth(tmp_path / "missing.png")


def _write_pair(tmp_path, depth_mm, color_size):
    Image.fromarray(depth_mm.astype(np.uint16)).save(tmp_path / "d.png")
    Image.fromarray(np.full((color_size[0], color_size[1], 3), 100, np.uint8)).save(tmp_path / "c.png")


def test_frame_resizes_colour_same_aspect(tmp_path):
    _write_pair(tmp_path, np.full((3, 4), 1000), (6, 8))
    f = read_rgbd_frame(tmp_path / "c.png", tmp_path / "d.png", K)
    assert f.color.shape == (3, 4, 3) and f.depth.dtype == np.float32 and np.all(f.depth == 1.0)


def test_frame_bad_inputs(tmp_path):
    _write_pair(tmp_path, np.full((3, 4), 1000), (5, 5))
    with pytest.raises(DataError, match="c.png.*aspect ratio"):
        read_rgbd_frame(tmp_path / "c.png", tmp_path / "d.png", K)
    _write_pair(tmp_path, np.zeros((3, 4)), (3, 4))
    with pytest.raises(DataError, match="d.png.*no valid pixel"):
        read_rgbd_frame(tmp_path / "c.png", tmp_path / "d.png", K)


def test_log_and_json_bad_input(tmp_path):
    (tmp_path / "t.log").write_text("0 0 1\n1 0 0\n")
    with pytest.raises(DataError, match="t.log.*blocks of 5"):
        read_trajectory_log(tmp_path / "t.log")
    (tmp_path / "t.log").write_text("0 0 1\n1 0 0 a\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    with pytest.raises(DataError, match="t.log"):
        read_trajectory_log(tmp_path / "t.log")
    (tmp_path / "c.json").write_text('{"width": 4}')
    with pytest.raises(DataError, match="c.json.*camera JSON"):
        read_camera_json(tmp_path / "c.json")


def test_sequence_skips_invalid_pose(tmp_path):
    for sub in ("color", "depth"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        Image.fromarray(np.full((3, 4), 1000 + i, np.uint16)).save(tmp_path / "depth" / f"{i:05d}.png")
        Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "color" / f"{i:05d}.jpg")
    (tmp_path / "cam.json").write_text('{"width": 4, "height": 3, "intrinsic_matrix": [4,0,0,0,4,0,2,1.5,1]}')
    blocks = []
    for i in range(3):
        m = np.eye(4) if i != 1 else np.full((4, 4), np.nan)
        blocks.append(f"{i} {i} {i + 1}\n" + "\n".join(" ".join(map(str, r)) for r in m))
    (tmp_path / "traj.log").write_text("\n".join(blocks) + "\n")
    seq = RGBDSequence(tmp_path, camera="cam.json", trajectory="traj.log")
    assert len(seq) == 2 and seq.skipped_invalid_pose == 1
    np.testing.assert_allclose(seq[1].depth, 1.002, atol=1e-6)
    np.testing.assert_allclose(seq[0].intrinsics, K)


def test_open3d_frames_load_and_overlap():
    needs_shared()
    seq = RGBDSequence(SHARED, camera="camera_primesense.json", trajectory="trajectory.log")
    assert len(seq) == 5 and seq.skipped_invalid_pose == 0
    f0, f4 = seq[0], seq[4]
    assert f0.color.shape == (480, 640, 3) and f0.depth.shape == (480, 640)
    assert f0.intrinsics[0, 0] == 525.0 and f0.intrinsics[0, 2] == 319.5
    p0, _ = back_project(f0.depth, f0.intrinsics, f0.pose)
    p4, _ = back_project(f4.depth, f4.intrinsics, f4.pose)
    # voxel overlap in world space: the two views see mostly the same surfaces
    v0 = set(map(tuple, torch.floor(p0[::7] / 0.05).long().tolist()))
    v4 = torch.floor(p4[::7] / 0.05).long().tolist()
    share = np.mean([tuple(v) in v0 for v in v4])
    assert share > 0.5, share
    # with a wrong pose (identity) the overlap collapses: the check is sensitive to the poses
    p4_wrong, _ = back_project(f4.depth, f4.intrinsics, np.eye(4))
    wrong = np.mean([tuple(v) in v0 for v in torch.floor(p4_wrong[::7] / 0.05).long().tolist()])
    assert wrong < share / 2, (wrong, share)


@pytest.mark.parametrize("enc,color,depth,fn", [
    ("tum", "TUM_color.png", "TUM_depth.png", "create_from_tum_format"),
    ("sun", "SUN_color.jpg", "SUN_depth.png", "create_from_sun_format"),
    ("nyu", "NYU_color.ppm", "NYU_depth.pgm", "create_from_nyu_format"),
])
def test_other_formats_match_open3d(enc, color, depth, fn):
    needs_shared()
    d = SHARED / "other_formats"
    f = read_rgbd_frame(d / color, d / depth, np.array([[518.0, 0, 320], [0, 518.0, 240], [0, 0, 1]]), enc,
                        max_depth=OPEN3D_MAX_DEPTH[enc])
    assert f.color.shape == (480, 640, 3) and 0.3 < np.median(f.depth[f.depth > 0]) < 7.0
    raw = np.asarray(Image.open(d / depth)).astype(np.uint16)  # Pillow reads PGM big-endian like Open3D's tutorial
    np.testing.assert_allclose(f.depth, _o3d_depth(fn, raw), atol=1e-3)
