"""Synthetic generator: determinism, ScanNet layout, units, label consistency, placement, image structure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData

from mm3dkit.geometry import back_project, project
from mm3dkit.synth import generate_dataset, generate_scene
from mm3dkit.synth.layout import FLOOR_FURNITURE, make_room


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("synth"), n_scenes=2, n_frames=3, width=64, height=48,
                            progress=False)


def test_same_seed_gives_byte_identical_files(tiny_set, tmp_path, folder_digest):
    again = generate_dataset(tmp_path / "again", n_scenes=2, n_frames=3, width=64, height=48, progress=False)
    assert folder_digest(tiny_set / "scans") == folder_digest(again / "scans")
    other = generate_dataset(tmp_path / "other", n_scenes=1, n_frames=3, width=64, height=48, seed=5, progress=False)
    assert folder_digest(other / "scans" / "scene0000_00") != folder_digest(tiny_set / "scans" / "scene0000_00")


def test_scannet_layout_and_units(tiny_set):
    scene = tiny_set / "scans" / "scene0000_00"
    for rel in ("color/0.jpg", "depth/0.png", "pose/0.txt", "label-filt/0.png", "instance-filt/0.png",
                "intrinsic/intrinsic_color.txt", "intrinsic/intrinsic_depth.txt", "scene0000_00_vh_clean_2.ply",
                "scene0000_00_vh_clean_2.labels.ply", "scene0000_00_vh_clean_2.0.010000.segs.json",
                "scene0000_00.aggregation.json"):
        assert (scene / rel).is_file(), rel
    depth = np.asarray(Image.open(scene / "depth" / "0.png"))
    assert depth.dtype == np.uint16 and 300 < np.median(depth[depth > 0]) < 8000, "uint16 millimetres"
    assert np.asarray(Image.open(scene / "label-filt" / "0.png")).dtype == np.uint16
    assert np.loadtxt(scene / "pose" / "0.txt").shape == (4, 4)
    header = (tiny_set / "scannetv2-labels.combined.tsv").read_text().splitlines()[0].split("\t")
    assert header[:5] == ["id", "raw_category", "category", "count", "nyu40id"]
    train = (tiny_set / "scannetv2_train.txt").read_text().split()
    val = (tiny_set / "scannetv2_val.txt").read_text().split()
    assert sorted(train + val) == ["scene0000_00", "scene0001_00"] and not set(train) & set(val)
    assert json.loads((tiny_set / "synth_meta.json").read_text())["seed"] == 0
    assert not list((tiny_set / "scans").glob(".*partial")), "no partial scene left behind"


def test_scene_files_are_consistent(tiny_set):
    scene = tiny_set / "scans" / "scene0000_00"
    verts = PlyData.read(str(scene / "scene0000_00_vh_clean_2.labels.ply"))["vertex"].data
    seg = json.loads((scene / "scene0000_00_vh_clean_2.0.010000.segs.json").read_text())["segIndices"]
    groups = json.loads((scene / "scene0000_00.aggregation.json").read_text())["segGroups"]
    assert len(seg) == len(verts)
    covered = set().union(*(g["segments"] for g in groups))
    assert set(seg) <= covered, "every segment belongs to an object"
    assert {g["label"] for g in groups} >= {"wall", "floor"}
    assert 1 <= verts["label"].min() and verts["label"].max() <= 40


def test_frame_labels_match_scene_points():
    s = generate_scene(seed=3, n_frames=2, width=80, height=60, noise=False)
    f = s.frames[1]
    # project the labelled scene points into the frame: visible points carry the pixel's semantic label
    uv, ok = project(s.scene.points, f.intrinsics, f.pose, depth_map=f.depth, occlusion_tol=0.01)
    px = uv[ok].round().long().numpy()
    pix_labels = f.semantic[px[:, 1], px[:, 0]]
    agree = (pix_labels == s.scene.semantic[ok.numpy()]).mean()
    assert ok.sum() > 500 and agree > 0.95
    pts, pix = back_project(f.depth, f.intrinsics, f.pose)
    assert pts[:, 2].min() > -0.05 and pts[:, 2].max() < 3.05, "points lie between floor and ceiling"


def test_furniture_does_not_overlap():
    for seed in range(5):
        room = make_room(np.random.default_rng(seed))
        feet = [o.bounds() for o in room.objects if o.category in FLOOR_FURNITURE]
        assert len(feet) >= 3
        for i in range(len(feet)):
            for j in range(i + 1, len(feet)):
                (a0, a1), (b0, b1) = feet[i], feet[j]
                assert not (np.all(a0[:2] < b1[:2]) and np.all(b0[:2] < a1[:2])), f"seed {seed}: {i} overlaps {j}"


def test_images_have_structure_and_missing_depth():
    s = generate_scene(seed=0, n_frames=3, width=96, height=72)
    for f in s.frames:
        gray = f.color.astype(float).mean(axis=2)
        grad = np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean()
        assert grad > 2.0, "images need edges and patterns"
        assert len(np.unique(f.semantic)) >= 2
        assert 0.5 < (f.depth > 0).mean() < 1.0, "some but not most depth is missing"
