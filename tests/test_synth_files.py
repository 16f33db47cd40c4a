"""Synthetic set on disk, read back with plain Pillow/plyfile/json (independently of mm3dkit's readers); resume, CLI,
workers, camera paths, depth noise model and label conventions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData
from scipy.spatial import cKDTree

from mm3dkit.data.classes import nyu40_to_scannet20
from mm3dkit.data.types import IGNORE_LABEL
from mm3dkit.errors import DataError
from mm3dkit.synth import generate_dataset, generate_scene
from mm3dkit.synth.__main__ import main
from mm3dkit.synth.layout import make_room
from mm3dkit.synth.render import camera_path

SIZE = {"width": 64, "height": 48}


@pytest.fixture(scope="module")
def one_scene(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("synth_files"), n_scenes=1, n_frames=2, progress=False, **SIZE)



def test_files_read_back_consistently(one_scene):
    """Back-projected depth pixels land on the scene's surface points, with the same class and object."""
    scene = one_scene / "scans" / "scene0000_00"
    with open(one_scene / "scannetv2-labels.combined.tsv", newline="") as fh:
        tsv = {int(r["id"]): int(r["nyu40id"]) for r in csv.DictReader(fh, delimiter="\t")}
    verts = PlyData.read(str(scene / "scene0000_00_vh_clean_2.labels.ply"))["vertex"].data
    colored = PlyData.read(str(scene / "scene0000_00_vh_clean_2.ply"))["vertex"].data
    assert {"x", "y", "z", "red", "green", "blue"} <= set(colored.dtype.names) and len(colored) == len(verts)
    xyz = np.stack([verts["x"], verts["y"], verts["z"]], 1).astype(np.float64)
    seg = np.array(json.loads((scene / "scene0000_00_vh_clean_2.0.010000.segs.json").read_text())["segIndices"])
    groups = json.loads((scene / "scene0000_00.aggregation.json").read_text())["segGroups"]
    seg_to_object = {s: g["objectId"] for g in groups for s in g["segments"]}
    vert_object = np.array([seg_to_object[s] for s in seg])
    K_color = np.loadtxt(scene / "intrinsic" / "intrinsic_color.txt")
    K = np.loadtxt(scene / "intrinsic" / "intrinsic_depth.txt")
    assert K.shape == (4, 4) and np.allclose(K, K_color) and np.allclose(K[3], [0, 0, 0, 1])
    assert abs(K[0, 0] - 0.9 * SIZE["width"]) < 1 and abs(K[0, 0] - K[1, 1]) < 1e-6
    tree = cKDTree(xyz)
    for i in range(2):
        color = np.asarray(Image.open(scene / "color" / f"{i}.jpg"))
        depth_img = Image.open(scene / "depth" / f"{i}.png")
        depth = np.asarray(depth_img)
        raw = np.asarray(Image.open(scene / "label-filt" / f"{i}.png"))
        inst = np.asarray(Image.open(scene / "instance-filt" / f"{i}.png"))
        pose = np.loadtxt(scene / "pose" / f"{i}.txt")
        assert color.shape == (SIZE["height"], SIZE["width"], 3) and color.dtype == np.uint8
        assert depth.shape == raw.shape == inst.shape == color.shape[:2]
        assert depth.dtype == np.uint16 and raw.dtype == np.uint16 and inst.dtype == np.uint8
        assert np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-5) and np.allclose(pose[3], [0, 0, 0, 1])
        assert set(np.unique(raw).tolist()) - {0} <= set(tsv), "every raw id is listed in the tsv"
        v, u = np.nonzero(depth)
        z = depth[v, u] / 1000.0  # millimetres
        cam = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], 1)
        world = cam @ pose[:3, :3].T + pose[:3, 3]
        dist, nn = tree.query(world)
        near = dist < 0.05  # ceiling pixels have no scene points (as in ScanNet); surface spacing is ~5 cm
        assert near.mean() > 0.6 and np.median(dist) < 0.04
        pix_nyu = np.array([tsv[r] for r in raw[v, u][near]])
        assert (pix_nyu == verts["label"][nn[near]]).mean() > 0.9
        assert (inst[v, u][near].astype(int) - 1 == vert_object[nn[near]]).mean() > 0.9


def test_resume_skips_finished_and_replaces_partial(one_scene, tmp_path, folder_digest):
    out = tmp_path / "set"
    generate_dataset(out, n_scenes=1, n_frames=2, progress=False, **SIZE)
    first = out / "scans" / "scene0000_00" / "color" / "0.jpg"
    stamp = first.stat().st_mtime_ns
    partial = out / "scans" / ".scene0001_00.partial"  # left behind by an interrupted run
    (partial / "color").mkdir(parents=True)
    (partial / "color" / "0.jpg").write_bytes(b"truncated")
    generate_dataset(out, n_scenes=2, n_frames=2, progress=False, **SIZE)
    assert first.stat().st_mtime_ns == stamp, "finished scene is not rewritten"
    assert not partial.exists() and (out / "scans" / "scene0001_00" / "color" / "1.jpg").is_file()
    assert folder_digest(out / "scans" / "scene0000_00") == folder_digest(one_scene / "scans" / "scene0000_00")
    assert sorted((out / "scannetv2_train.txt").read_text().split() + (out / "scannetv2_val.txt").read_text().split()) \
        == ["scene0000_00", "scene0001_00"]


def test_other_settings_in_same_folder_is_refused(one_scene):
    with pytest.raises(DataError, match="synth_meta.json.*other settings"):
        generate_dataset(one_scene, n_scenes=1, n_frames=2, width=80, height=60, progress=False)


def test_workers_give_identical_files(tmp_path, folder_digest):
    a = generate_dataset(tmp_path / "a", n_scenes=2, n_frames=1, width=40, height=30, workers=1, progress=False)
    b = generate_dataset(tmp_path / "b", n_scenes=2, n_frames=1, width=40, height=30, workers=2, progress=False)
    assert folder_digest(a / "scans") == folder_digest(b / "scans")


def test_cli_writes_set_and_preview(tmp_path, capsys):
    main(["--out", str(tmp_path / "d"), "--scenes", "1", "--frames", "2", "--width", "48", "--height", "36",
          "--seed", "3", "--preview", str(tmp_path / "fig" / "p.png")])
    assert "wrote 1 scenes" in capsys.readouterr().out
    assert json.loads((tmp_path / "d" / "synth_meta.json").read_text())["seed"] == 3
    assert np.asarray(Image.open(tmp_path / "d" / "scans" / "scene0000_00" / "depth" / "1.png")).shape == (36, 48)
    preview = np.asarray(Image.open(tmp_path / "fig" / "p.png").convert("L"))
    assert preview.shape[0] > 100 and preview.std() > 10


def test_camera_paths_are_smooth_at_eye_height_inside_the_room():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        room = make_room(rng)
        poses = np.stack(camera_path(room, 20, rng))
        R, t = poses[:, :3, :3], poses[:, :3, 3]
        assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-9) and np.allclose(np.linalg.det(R), 1)
        assert np.all((t[:, 2] > 1.1) & (t[:, 2] < 1.7)), "eye height"
        assert np.all((t[:, :2] > 0.3) & (t[:, :2] < room.size[:2] - 0.3)), "inside the room"
        assert np.abs(R[:, 2, 0]).max() < 1e-9, "no roll: the camera x axis (right) stays horizontal"
        assert np.all(R[:, 2, 1] < 0), "OpenCV y axis (image down) points down in the z-up world"
        step = np.linalg.norm(np.diff(t, axis=0), axis=1)
        assert step.max() < 0.5 and step.max() < 3 * np.median(step) + 1e-6, "smooth path"


def test_depth_noise_grows_with_distance_and_is_quantised():
    # the camera path is drawn before rendering, so frame 0 has the same pose with and without noise
    clean = generate_scene(seed=2, n_frames=1, width=120, height=90, noise=False).frames[0]
    noisy = generate_scene(seed=2, n_frames=1, width=120, height=90, noise=True).frames[0]
    assert np.array_equal(clean.pose, noisy.pose) and np.array_equal(clean.semantic, noisy.semantic)
    both = (clean.depth > 0) & (noisy.depth > 0)
    z, err = clean.depth[both], (noisy.depth - clean.depth)[both]
    near, far = z < np.quantile(z, 0.3), z > np.quantile(z, 0.7)
    assert np.std(err[far]) > 2 * np.std(err[near]), "Kinect-like noise grows with depth"
    assert np.abs(noisy.depth * 1000 - np.round(noisy.depth * 1000)).max() < 0.01, "millimetre quantisation"
    assert (clean.depth == 0).mean() < (noisy.depth == 0).mean(), "dropouts only with the sensor model"


def test_labels_follow_kit_conventions():
    s = generate_scene(seed=4, n_frames=2, width=48, height=36)
    for f, raw in zip(s.frames, s.raw_labels):
        ok = (f.semantic == IGNORE_LABEL) | ((f.semantic >= 0) & (f.semantic < 20))
        assert ok.all() and f.semantic.shape == f.depth.shape and f.depth.dtype == np.float32
        assert np.array_equal(f.instance < 0, raw == 0), "instance -1 exactly where nothing was hit"
    assert np.array_equal(s.scene.semantic, nyu40_to_scannet20(s.nyu40))
    assert s.scene.points.dtype == np.float32 and s.scene.colors.dtype == np.uint8
    assert (s.scene.semantic >= 0).mean() > 0.9, "walls, floor and furniture are ScanNet-20 classes"
