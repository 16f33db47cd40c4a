"""SUN RGB-D reader on a tiny sample the test writes in VoteNet's sunrgbd_trainval layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from mm3dkit.data.classes import SUNRGBD_NAMES
from mm3dkit.data.sunrgbd import SUNRGBD, read_boxes, read_sunrgbd_frame, read_sunrgbd_scene
from mm3dkit.errors import DataError
from mm3dkit.geometry import back_project

H, W = 12, 16
K1 = np.array([[20.0, 0, 8.5], [0, 21.0, 6.5], [0, 0, 1]])  # 1-based principal point, as SUN stores it


def _tilt(angle=0.1):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _sample(base, idx=1, depth=None, label="chair 1 2 3 4 1.0 2.0 0.5 0.3 0.4 0.45 0.0 1.0\n"):
    """Points made like SUN's toolbox (1-based pixel grid, upright = Rtilt @ (x, z, -y))."""
    base.mkdir(parents=True, exist_ok=True)
    depth = np.linspace(1.0, 3.0, H * W).reshape(H, W) if depth is None else depth
    rows, cols = np.nonzero(depth > 0)
    d = depth[rows, cols]
    x3 = (cols + 1 - K1[0, 2]) * d / K1[0, 0]
    y3 = (rows + 1 - K1[1, 2]) * d / K1[1, 1]
    Rtilt = _tilt()
    up = np.stack([x3, d, -y3], 1) @ Rtilt.T
    rgb = np.full((len(up), 3), 0.5)
    for sub in ("image", "depth", "calib", "label"):
        (base / sub).mkdir(exist_ok=True)
    savemat(base / "depth" / f"{idx:06d}.mat", {"instance": np.concatenate([up, rgb], 1)})
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(base / "image" / f"{idx:06d}.jpg")
    (base / "calib" / f"{idx:06d}.txt").write_text(" ".join(map(str, Rtilt.flatten(order="F"))) + "\n"
                                                  + " ".join(map(str, K1.flatten(order="F"))) + "\n")
    (base / "label" / f"{idx:06d}.txt").write_text(label)
    return depth, up


def test_scene_boxes_hand_computed(tmp_path):
    base = tmp_path / "sunrgbd_trainval"
    _sample(base, label="chair 1 2 3 4 1.0 2.0 0.5 0.3 0.4 0.45 0.0 1.0\n"
                        "lamp 1 2 3 4 0 0 0 0.1 0.1 0.1 1 0\n"
                        "night_stand 1 2 3 4 0 1 0 0.2 0.25 0.3 1.0 1.0\n")
    s = read_sunrgbd_scene(tmp_path, 1)
    assert s.box_labels.tolist() == [SUNRGBD_NAMES.index("chair"), SUNRGBD_NAMES.index("night_stand")]
    np.testing.assert_allclose(s.boxes[0], [1.0, 2.0, 0.5, 0.8, 0.6, 0.9, np.pi / 2], rtol=1e-6)
    np.testing.assert_allclose(s.boxes[1, 6], np.pi / 4, rtol=1e-6)
    assert len(s) == H * W and s.colors[0].tolist() == [128, 128, 128] and len(SUNRGBD_NAMES) == 10


def test_frame_depth_and_pose_reproduce_points(tmp_path):
    depth = np.linspace(1.0, 3.0, H * W).reshape(H, W)
    depth[0, :5] = 0  # holes stay holes
    depth, up = _sample(tmp_path / "sunrgbd_trainval", depth=depth)
    f = read_sunrgbd_frame(tmp_path, 1)
    assert f.depth.shape == (H, W) and f.color.shape == (H, W, 3)
    np.testing.assert_allclose(f.depth, depth, atol=1e-5)
    np.testing.assert_allclose(f.intrinsics[:2, 2], [7.5, 5.5])
    pts, _ = back_project(f.depth, f.intrinsics, f.pose)
    np.testing.assert_allclose(pts.numpy(), up, atol=1e-4)


def test_splits(tmp_path):
    base = tmp_path / "sunrgbd_trainval"
    _sample(base, 1)
    _sample(base, 2)
    (base / "train_data_idx.txt").write_text("1\n")
    (base / "val_data_idx.txt").write_text("2\n")
    assert SUNRGBD(tmp_path, "val").ids == [2] and len(SUNRGBD(base, None)) == 2
    assert SUNRGBD(tmp_path, "train", kind="frame")[0].depth.shape == (H, W)


def test_bad_inputs(tmp_path):
    base = tmp_path / "sunrgbd_trainval"
    _sample(base, 1, label="chair 1 2 3\n")
    with pytest.raises(DataError, match="000001.txt.*line 1"):
        read_boxes(base / "label" / "000001.txt")
    (base / "calib" / "000001.txt").write_text("1 2 3\n")
    with pytest.raises(DataError, match="calib/000001.txt.*9 numbers"):
        read_sunrgbd_frame(tmp_path, 1)
    (base / "depth" / "000001.mat").write_bytes(b"garbage")
    with pytest.raises(DataError, match="000001.mat"):
        read_sunrgbd_scene(tmp_path, 1)
    savemat(base / "depth" / "000001.mat", {"instance": np.full((2, 6), np.nan)})
    with pytest.raises(DataError, match="000001.mat.*NaN"):
        read_sunrgbd_scene(tmp_path, 1)
    with pytest.raises(DataError, match="000009.mat.*missing"):
        read_sunrgbd_scene(tmp_path, 9)
    with pytest.raises(DataError, match="train_data_idx.txt.*missing"):
        SUNRGBD(tmp_path, "train")
