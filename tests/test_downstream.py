"""Fine-tuning: a tiny run lowers the loss and writes metrics with its label budget; backbone loading; clustering."""

import json

import numpy as np
import pytest
import torch

from mm3dkit.backbone_io import save_backbone
from mm3dkit.data.types import IGNORE_LABEL, Scene
from mm3dkit.downstream import finetune
from mm3dkit.downstream.datasets import dataset_info, get_dataset
from mm3dkit.downstream.detection import instance_boxes
from mm3dkit.downstream.instance import cluster_instances
from mm3dkit.downstream.semseg import SceneVoxels, SegmentationMethod, collate_voxels, predict_scene
from mm3dkit.errors import CheckpointError, DataError
from mm3dkit.models.res16unet import build_res16unet

WALL, FLOOR, CHAIR = 0, 1, 4


def tiny_scene(seed: int, name: str) -> Scene:
    """A 1.5 m room corner: red floor, blue wall and two green 'chair' cubes (instances 1 and 2)."""
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.random((300, 2)) * 1.5, np.zeros(300)]
    wall = np.c_[np.zeros(200), rng.random((200, 2)) * 1.5]
    cubes = [rng.random((120, 3)) * 0.3 + np.array([x, 0.6, 0.05]) for x in (0.3 + 0.1 * seed, 1.0)]
    pts = np.concatenate([floor, wall, *cubes]).astype(np.float32)
    colors = np.concatenate([np.tile([200, 40, 40], (300, 1)), np.tile([40, 40, 200], (200, 1)),
                             np.tile([40, 200, 40], (240, 1))]).astype(np.uint8)
    sem = np.r_[np.full(300, FLOOR), np.full(200, WALL), np.full(240, CHAIR)]
    inst = np.r_[np.full(500, -1), np.full(120, 1), np.full(120, 2)]
    return Scene(pts, colors, sem.astype(np.int64), inst.astype(np.int64), name=name)


SETTINGS = dict(finetune.PROFILES["quick"], voxel_size=0.1, max_steps=8, backend="torch", batch_size=2, lr=0.01, warmup_steps=0,
                scheduler="constant", log_every=1, ckpt_every=100, progress=False, augment=False,
                min_region_size=20, cluster_min_points=10, cluster_radius=0.1)


def test_tiny_finetune_lowers_loss_and_records_budget(tmp_path):
    task = "instance"  # trains semantic + offset heads; evaluates semseg, instances and boxes
    train = [tiny_scene(i, f"scene{i:04d}_00") for i in range(4)]
    val = [tiny_scene(9, "scene0009_00")]
    settings = dict(SETTINGS, task=task, scene_percent=50, points_per_scene=200, budget_seed=1)
    m = finetune.run(settings, None, "scratch", tmp_path / "ft" / task, train_scenes=train, eval_scenes=val)
    losses = [h["loss"] for h in m["train_history"]]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3])
    saved = json.loads((tmp_path / "ft" / task / "metrics.json").read_text())
    budget = saved["label_budget"]
    assert budget["scene_percent"] == 50 and budget["points_per_scene"] == 200 and budget["seed"] == 1
    assert len(budget["scenes"]) == 2 and set(budget["num_labelled_points"].values()) == {200}
    assert (tmp_path / "ft" / "label_budgets" / "synthetic_scenes50_points200_seed1.json").is_file()
    assert saved["init"] == "scratch" and 0.0 <= saved["semseg"]["miou"] <= 1.0
    assert set(saved["semseg"]["per_class_iou"]) == set(dataset_info("synthetic").class_names)
    if task == "instance":
        assert {"map", "map50", "map25"} <= set(saved["instance"])
        assert {"map25", "map50"} <= set(saved["detection"])


def test_pointcontrast_checkpoint_initialises_backbone(tmp_path):
    src = build_res16unet("Res16UNet14A", 3, 32, backend="torch")
    torch.nn.init.constant_(src.bn0.bn.weight, 0.5)
    state = {f"module.{k}": v for k, v in src.state_dict().items()}  # DDP-wrapped, as PointContrast saves
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "checkpoint.pth")
    method = SegmentationMethod("Res16UNet14A", 20, init=tmp_path / "checkpoint.pth", backend="torch")
    assert method.load_report.prefix == "module."
    assert method.load_report.skipped_head == ["final.bias", "final.kernel"]  # new 20-class head
    assert torch.equal(method.net.bn0.bn.weight, src.bn0.bn.weight)
    assert torch.equal(method.net.block1[0].conv1.kernel, src.block1[0].conv1.kernel)
    # the kit's own backbone.pth too
    save_backbone(src, tmp_path / "backbone.pth")
    assert SegmentationMethod("Res16UNet14A", 20, init=tmp_path / "backbone.pth", backend="torch").load_report.loaded


def test_bad_init_and_bad_data_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        SegmentationMethod("Res16UNet14A", 20, init=tmp_path / "junk.pth", backend="torch")
    save_backbone(build_res16unet("Res16UNet14A", 6, 16, backend="torch"), tmp_path / "rgbxyz.pth")
    with pytest.raises(CheckpointError, match="rgbxyz.pth"):  # 6 input channels vs 3
        SegmentationMethod("Res16UNet14A", 20, init=tmp_path / "rgbxyz.pth", backend="torch")
    unlabelled = Scene(np.zeros((5, 3), np.float32), np.zeros((5, 3), np.uint8), name="nolabels")
    with pytest.raises(DataError, match="nolabels"):
        SceneVoxels([unlabelled], 0.1)[0]
    with pytest.raises(DataError, match="does not exist"):
        get_dataset("synthetic", tmp_path / "missing", "train")


def test_predictions_reach_every_point_and_budget_masks_labels():
    scene = tiny_scene(0, "s")
    method = SegmentationMethod("Res16UNet14A", 20, offset_head=True, backend="torch")
    pred = predict_scene(method, scene, 0.2)
    assert pred.probs.shape == (len(scene), 20) and pred.offsets.shape == (len(scene), 3)
    assert torch.allclose(pred.probs.sum(1), torch.ones(len(scene)))
    from mm3dkit.downstream.label_budget import make_budget

    budget = make_budget([scene], 100, 5, seed=0)
    item = SceneVoxels([scene], 0.1, budget=budget, instances=True)[0]
    labelled = item["labels"] != IGNORE_LABEL
    assert 1 <= int(labelled.sum()) <= 5
    assert not item["has_offset"][~labelled].any()
    batch = collate_voxels([item, item])
    assert batch["coords"][:, 0].unique().tolist() == [0, 1]


def test_clustering_recovers_instances_from_true_offsets_and_boxes():
    scene = tiny_scene(0, "s")
    centres = {k: scene.points[scene.instance == k].mean(0) for k in (1, 2)}
    offsets = np.zeros_like(scene.points)
    for k, c in centres.items():
        offsets[scene.instance == k] = c - scene.points[scene.instance == k]
    inst = cluster_instances(scene.points, offsets, scene.semantic, np.ones(len(scene)), classes=[CHAIR],
                             radius=0.05, min_points=10)
    assert len(inst.masks) == 2
    found = sorted(tuple(np.unique(scene.instance[m])) for m in inst.masks)
    assert found == [(1,), (2,)]
    boxes = instance_boxes(scene.points, inst.masks)
    assert np.all(boxes[:, 3:6] <= 0.3 + 1e-6) and np.all(boxes[:, 6] == 0)
    rot = instance_boxes(np.array([[0, 0, 0], [2, 2, 0], [1, 1, 1], [1.1, 0.9, 0.5]]), np.ones((1, 4), bool),
                         oriented=True)
    assert abs(abs(np.tan(rot[0, 6])) - 1) < 0.2  # heading along the diagonal
