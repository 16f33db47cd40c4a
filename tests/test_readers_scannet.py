"""ScanNet readers on files in the exact SensReader/scene layout (written by the generator or by hand), bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from mm3dkit.data.scannet import ScanNetFrames, ScanNetScenes, read_frame, read_scene
from mm3dkit.errors import DataError
from mm3dkit.synth import generate_dataset


@pytest.fixture()
def root(tmp_path_factory, tmp_path):
    src = generate_dataset(tmp_path_factory.mktemp("src"), n_scenes=2, n_frames=3, width=48, height=36, progress=False)
    dst = tmp_path / "scannet"
    shutil.copytree(src, dst)
    return dst


def test_frames_scenes_and_splits(root):
    frames = ScanNetFrames(root)
    assert len(frames) == 6 and frames.skipped_invalid_pose == 0
    f = frames[0]
    assert f.color.dtype == np.uint8 and f.depth.dtype == np.float32 and f.semantic.shape == f.depth.shape
    assert f.semantic.min() >= -100 and f.semantic.max() < 20 and f.instance.min() >= -1
    scenes = ScanNetScenes(root, split="train")
    s = scenes[0]
    assert s.points.shape[1] == 3 and len(s.semantic) == len(s)
    assert set(np.unique(s.instance)) >= {0, 1}, "instances from the aggregation"
    assert len(s.boxes) == len(s.box_labels) > 0 and (s.boxes[:, 3:6] > 0).all()
    assert 0 not in s.box_labels and 1 not in s.box_labels, "no wall/floor boxes"


def test_colour_is_resized_to_depth_resolution(root):
    scene = root / "scans" / "scene0000_00"
    big = Image.open(scene / "color" / "0.jpg").resize((96, 72))
    big.save(scene / "color" / "0.jpg")
    K_color = np.eye(4)
    K_color[:3, :3] = [[2 * 43.2, 0, 47.5], [0, 2 * 43.2, 35.5], [0, 0, 1]]
    np.savetxt(scene / "intrinsic" / "intrinsic_color.txt", K_color)
    (scene / "intrinsic" / "intrinsic_depth.txt").unlink()
    f = read_frame(scene, 0)
    assert f.color.shape == (36, 48, 3)
    np.testing.assert_allclose(f.intrinsics[0, 0], 43.2, rtol=1e-6)
    np.testing.assert_allclose(f.intrinsics[0, 2], 23.5, rtol=1e-6)


def test_invalid_poses_are_skipped_and_counted(root):
    pose = root / "scans" / "scene0001_00" / "pose" / "1.txt"
    pose.write_text("\n".join(["-inf -inf -inf -inf"] * 4))
    frames = ScanNetFrames(root)
    assert len(frames) == 5 and frames.skipped_invalid_pose == 1


@pytest.mark.parametrize("case", ["missing_color", "unreadable", "depth_dtype", "all_invalid", "bad_label", "bad_pose"])
def test_bad_frames_name_the_file(root, case):
    scene = root / "scans" / "scene0000_00"
    target, message = {
        "missing_color": (scene / "color" / "0.jpg", "missing"),
        "unreadable": (scene / "color" / "0.jpg", "cannot be read"),
        "depth_dtype": (scene / "depth" / "0.png", "16-bit"),
        "all_invalid": (scene / "depth" / "0.png", "no valid pixel"),
        "bad_label": (scene / "label-filt" / "0.png", "not in scannetv2-labels"),
        "bad_pose": (scene / "pose" / "0.txt", "4x4"),
    }[case]
    if case == "missing_color":
        target.unlink()
    elif case == "unreadable":
        target.write_bytes(b"definitely not a jpeg")
    elif case == "depth_dtype":
        Image.fromarray(np.full((36, 48), 7, np.uint8)).save(target)
    elif case == "all_invalid":
        Image.fromarray(np.zeros((36, 48), np.uint16)).save(target)
    elif case == "bad_label":
        Image.fromarray(np.full((36, 48), 999, np.uint16)).save(target)
    elif case == "bad_pose":
        target.write_text("1 0 0\n0 1 0\n")
    with pytest.raises(DataError) as err:
        read_frame(scene, 0)
    assert target.name in str(err.value) and message in str(err.value)


def test_bad_scene_files(root):
    scene = root / "scans" / "scene0000_00"
    seg = scene / "scene0000_00_vh_clean_2.0.010000.segs.json"
    seg.write_text('{"segIndices": [1, 2, 3]}')
    with pytest.raises(DataError, match="segment indices but the mesh has"):
        read_scene(scene)
    seg.unlink()
    with pytest.raises(DataError, match="segs.json: file is missing"):
        read_scene(scene)
    (scene / "scene0000_00_vh_clean_2.ply").write_text("ply\nbroken")
    with pytest.raises(DataError, match="_vh_clean_2.ply"):
        read_scene(scene)
    with pytest.raises(DataError, match="does not exist"):
        ScanNetFrames(root / "nowhere")
    (root / "scannetv2-labels.combined.tsv").unlink()
    with pytest.raises(DataError, match="label map"):
        read_frame(root / "scans" / "scene0001_00", 0)
