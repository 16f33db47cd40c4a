"""Fine-tune a (pre-trained or scratch) Res16UNet on a downstream task with a fixed label budget, then evaluate.

Tasks: ``semseg`` (mIoU, per-class IoU on all points), ``instance`` (PointGroup-style offsets + clustering, ScanNet
mAP / mAP@0.5 / mAP@0.25) and ``detection`` (boxes of the predicted instances, mAP@0.25 / mAP@0.5 with 3D IoU).
Training uses :func:`mm3dkit.training.fit` (checkpoints/resume, AMP, DDP, progress, metrics.csv); the run folder
gets ``metrics.json`` with the results, the initialisation and the label budget used.

    python -m mm3dkit.downstream.finetune --profile quick --task semseg --data data/synth \\
        --init runs/quick/stage2/backbone.pth --out runs/quick/finetune/semseg_pre --set scene_percent=20

Example:
    >>> PROFILES["quick"]["model"], PROFILES["paper"]["model"], PROFILES["paper"]["voxel_size"]
    ('Res16UNet14A', 'Res16UNet34C', 0.02)
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mm3dkit.augment3d import Augment3D
from mm3dkit.data.types import IGNORE_LABEL, Scene
from mm3dkit.downstream.datasets import dataset_info, get_dataset
from mm3dkit.downstream.detection import instance_boxes
from mm3dkit.downstream.instance import cluster_instances
from mm3dkit.downstream.label_budget import LabelBudget, budget_filename, load_or_make_budget
from mm3dkit.downstream.metrics import (Instances, confusion_matrix, evaluate_detection, evaluate_instances,
                                        semseg_report)
from mm3dkit.downstream.semseg import SceneVoxels, SegmentationMethod, collate_voxels, predict_scene
from mm3dkit.training.profiles import parse_args, train_config
from mm3dkit.training.trainer import fit

TASKS = ("semseg", "instance", "detection")

PROFILES: dict[str, dict[str, Any]] = {
    # CPU demo on the synthetic set; model and voxel size match Stage 2's quick profile so its backbone loads.
    "quick": {
        "task": "semseg", "dataset": "synthetic", "model": "Res16UNet14A", "voxel_size": 0.08, "backend": "auto",
        "scene_percent": 100, "points_per_scene": None, "budget_seed": 0, "budget_dir": None,
        "train_split": "train", "eval_split": "val", "eval_max_scenes": None, "augment": True,
        "cluster_radius": 0.08, "cluster_min_points": 50, "min_region_size": 100, "offset_weight": 1.0,
        "max_steps": 60, "batch_size": 2, "lr": 0.002, "optimizer": "adamw", "weight_decay": 1e-4,
        "scheduler": "cosine", "warmup_steps": 5, "num_workers": 0, "log_every": 5, "ckpt_every": 30, "seed": 0,
        "progress": True,
    },
    # Paper scale (PointContrast / CSC fine-tuning on ScanNet): Res16UNet34C, 2 cm voxels, SGD lr 0.1, batch 48 and a
    # poly schedule; PointGroup's clustering radius 3 cm and 50 points; ScanNet's 100-point minimum region.
    "paper": {
        "task": "semseg", "dataset": "scannet", "model": "Res16UNet34C", "voxel_size": 0.02, "backend": "auto",
        "scene_percent": 100, "points_per_scene": None, "budget_seed": 0, "budget_dir": None,
        "train_split": "train", "eval_split": "val", "eval_max_scenes": None, "augment": True,
        "cluster_radius": 0.03, "cluster_min_points": 50, "min_region_size": 100, "offset_weight": 1.0,
        "max_steps": 15000, "batch_size": 48, "lr": 0.1, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4,
        "scheduler": "poly", "warmup_steps": 0, "num_workers": 8, "log_every": 20, "ckpt_every": 500, "seed": 0,
        "progress": True,
    },
}


class _Subset:
    """The scenes of ``dataset`` whose names are in ``names`` (lazy: scenes are read when indexed)."""

    def __init__(self, dataset: Sequence[Scene], names: Sequence[str]):
        all_names = scene_names(dataset)
        keep = set(names)
        self.dataset, self.index = dataset, [i for i, n in enumerate(all_names) if n in keep]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Scene:
        return self.dataset[self.index[i]]


def scene_names(dataset: Sequence[Scene]) -> list[str]:
    """Names of a dataset's scenes without reading them where the reader lists its folders (``.dirs``)."""
    if hasattr(dataset, "dirs"):
        return [Path(d).name for d in dataset.dirs]
    return [s.name for s in dataset]


def _rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def evaluate(method: SegmentationMethod, scenes: Sequence[Scene], settings: dict[str, Any], instances: bool,
             max_scenes: int | None = None) -> dict[str, Any]:
    """mIoU and per-class IoU on all points (+ instance mAP and box mAP when ``instances``) over ``scenes``."""
    info = dataset_info(settings["dataset"])
    names = list(info.class_names)
    n_cls = len(names)
    conf = np.zeros((n_cls, n_cls), np.int64)
    preds, gts, valid, pboxes, plabels, pscores, gboxes, glabels = [], [], [], [], [], [], [], []
    n = len(scenes) if max_scenes is None else min(len(scenes), max_scenes)
    for i in range(n):
        scene = scenes[i]
        pred = predict_scene(method, scene, settings["voxel_size"])
        conf += confusion_matrix(scene.semantic, pred.labels, n_cls)
        if not instances:
            continue
        score = pred.probs.gather(1, pred.labels[:, None])[:, 0].numpy()
        inst = cluster_instances(scene.points, pred.offsets.numpy(), pred.labels.numpy(), score, info.thing_classes,
                                 settings["cluster_radius"], settings["cluster_min_points"],
                                 grid=settings["voxel_size"] / 2)
        gt = Instances.from_ids(np.asarray(scene.instance), np.asarray(scene.semantic))
        preds.append(inst)
        gts.append(gt)
        valid.append(np.asarray(scene.semantic) != IGNORE_LABEL)
        pboxes.append(instance_boxes(scene.points, inst.masks, info.oriented_boxes))
        plabels.append(inst.labels)
        pscores.append(inst.scores)
        if scene.boxes is not None and scene.box_labels is not None:
            gboxes.append(scene.boxes)
            glabels.append(scene.box_labels)
        else:
            keep = np.isin(gt.labels, info.thing_classes) & (gt.masks.sum(1) > 0)
            gboxes.append(instance_boxes(scene.points, gt.masks[keep], info.oriented_boxes))
            glabels.append(gt.labels[keep])
    out: dict[str, Any] = {"num_scenes": n, "semseg": semseg_report(conf, names)}
    if instances:
        things = list(info.thing_classes)
        out["instance"] = evaluate_instances(preds, gts, things, [names[c] for c in things],
                                             settings["min_region_size"], valid_masks=valid)
        out["detection"] = evaluate_detection(pboxes, plabels, pscores, gboxes, glabels, things,
                                              [names[c] for c in things], oriented=info.oriented_boxes)
        out["detection"]["boxes_from"] = "predicted instances (no VoteNet head)"
    return out


def run(settings: dict[str, Any], data_root: str | Path | None, init: str | Path | None, out_dir: str | Path,
        train_scenes: Sequence[Scene] | None = None, eval_scenes: Sequence[Scene] | None = None,
        name: str | None = None) -> dict[str, Any]:
    """Fine-tune and evaluate; writes ``{out_dir}/metrics.json`` and returns its content.

    ``init``: a backbone file or ``None``/``"scratch"``. ``train_scenes``/``eval_scenes`` replace the dataset's splits
    (tests). The label budget is loaded from (or made and saved to) ``settings['budget_dir']`` (default: the folder
    beside ``out_dir`` named ``label_budgets``), so runs beside each other share it.
    """
    task = settings["task"]
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    out = Path(out_dir)
    info = dataset_info(settings["dataset"])
    if train_scenes is None:
        if data_root is None:
            raise ValueError("run needs data_root (or train_scenes/eval_scenes)")
        train_scenes = get_dataset(settings["dataset"], data_root, settings["train_split"])
    if eval_scenes is None:
        eval_scenes = get_dataset(settings["dataset"], data_root, settings["eval_split"])
    budget_dir = Path(settings["budget_dir"]) if settings.get("budget_dir") else out.parent / "label_budgets"
    budget_path = budget_dir / budget_filename(settings["dataset"], settings["scene_percent"],
                                               settings["points_per_scene"], settings["budget_seed"])
    names = scene_names(train_scenes)
    by_name = dict(zip(names, range(len(names))))
    budget: LabelBudget = load_or_make_budget(
        budget_path, names, settings["scene_percent"], settings["points_per_scene"], settings["budget_seed"],
        settings["dataset"], semantic_of=lambda n: train_scenes[by_name[n]].semantic, write=_rank0())
    instances = task in ("instance", "detection")
    cfg = train_config(settings, str(out))
    torch.manual_seed(cfg.seed)
    method = SegmentationMethod(settings["model"], len(info.class_names), offset_head=instances, init=init,
                                backend=settings.get("backend"), offset_weight=settings["offset_weight"])
    train_set = SceneVoxels(_Subset(train_scenes, budget.scenes), settings["voxel_size"],
                            Augment3D() if settings["augment"] else None, budget, instances)
    result = fit(method, train_set, cfg, collate_fn=collate_voxels)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.device in ("auto", "cuda") else "cpu")
    method.to(device)
    metrics: dict[str, Any] = {
        "name": name or out.name, "task": task, "dataset": settings["dataset"], "model": settings["model"],
        "init": "scratch" if init is None or str(init) == "scratch" else str(init),
        "init_loaded_keys": len(method.load_report.loaded) if method.load_report else 0,
        "init_unexpected_keys": len(method.load_report.unexpected) if method.load_report else 0,
        "label_budget": {"file": str(budget_path), **budget.summary()},
        "steps": result.step, "train_history": result.history, "settings": settings,
        **evaluate(method, eval_scenes, settings, instances, settings.get("eval_max_scenes")),
    }
    if _rank0():
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=1, default=float))
        tmp.replace(out / "metrics.json")
    return metrics


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m mm3dkit.downstream.finetune --profile quick --task semseg --data DIR --init PATH|scratch
    --out DIR [--set k=v ...]``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--init", default="scratch")
    pre.add_argument("--task", default=None, choices=TASKS)
    known, rest = pre.parse_known_args(argv)
    args = parse_args(rest, PROFILES, description="Fine-tune a Res16UNet downstream. Also: --task "
                      f"{'|'.join(TASKS)}, --init PATH|scratch (a backbone.pth or PointContrast/CSC checkpoint)")
    if known.task:
        args.settings["task"] = known.task
    if args.data is None:
        raise SystemExit("--data is required (e.g. data/synth)")
    m = run(args.settings, args.data, known.init, args.out)
    summary = {"miou": m["semseg"]["miou"], "label_budget": m["label_budget"]["file"]}
    for key in ("instance", "detection"):
        if key in m:
            summary[key] = {k: v for k, v in m[key].items() if k.startswith("map")}
    print(json.dumps(summary, indent=2))
    return m


if __name__ == "__main__":
    main()
