"""Builds notebooks/04_finetune.ipynb (run: python notebooks/make_notebooks/04_finetune.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import code, md, params, write  # noqa: E402

cells = [
    md("""
# 04 · Downstream fine-tuning with limited labels

The pre-trained 3D network of Stage 2 is judged the way the paper (and PointContrast / CSC) judge it: by
**fine-tuning** it on a downstream task and comparing with the same network trained **from scratch** on the same
labels. The data-efficient protocol keeps only a fixed, saved subset of the labels: a percentage of the training
scenes and/or a number of labelled points per scene, chosen by a seed and written to a JSON file that every run
records in its `metrics.json`.

Tasks (library: `mm3dkit.downstream`):

* `semseg`: Res16UNet + new head, cross-entropy with the ignore label, **mIoU on all points** (voxel predictions
  carried back to the points through the voxelisation's inverse map);
* `instance`: PointGroup-style offsets to the instance centre + clustering of the shifted points, ScanNet mAP;
* `detection`: boxes of the predicted instances (no VoteNet head), mAP@0.25 / mAP@0.5 with 3D IoU.

The same run from a shell:

```
python -m mm3dkit.downstream.finetune --profile quick --task semseg --data data/synth \\
    --init runs/quick/stage2/backbone.pth --out runs/quick/finetune/semseg_stage2 --set points_per_scene=200
```
"""),
    params("""
task = "semseg"              # "semseg", "instance" or "detection"
dataset = "synthetic"        # synthetic, scannet, s3dis, semantickitti, sunrgbd
scene_percent = 100          # % of training scenes with labels (1/5/10/20/100)
points_per_scene = 200       # labelled points per scene (20/50/100/200) or None for all points
budget_seed = 0              # picks the label subset
init = None                  # None: {run_dir}/stage2/backbone.pth; "scratch"; or a checkpoint path
data_dir = "data/synth"
run_dir = "runs/quick"       # reads {run_dir}/stage2/backbone.pth, writes {run_dir}/finetune/<name>/
figures_dir = "figures"
profile = "quick"            # "quick" (CPU demo, Res16UNet14A, 8 cm voxels) or "paper" (Res16UNet34C, 2 cm)
seed = 0
max_steps = None             # None: the profile's value
name = None                  # run name; None: <task>_<init>_s<percent>_p<points>_seed<budget_seed>
"""),
    code("""
import json
import matplotlib.pyplot as plt
import numpy as np

from mm3dkit.paths import project_path
from mm3dkit.synth import ensure_dataset
from mm3dkit.data.types import IGNORE_LABEL
from mm3dkit.downstream import finetune
from mm3dkit.downstream.datasets import dataset_info, get_dataset
from mm3dkit.downstream.semseg import SegmentationMethod, predict_scene
from mm3dkit.training.checkpoint import load_checkpoint

data_dir, run_dir, figures_dir = project_path(data_dir), project_path(run_dir), project_path(figures_dir)
figures_dir.mkdir(parents=True, exist_ok=True)
if dataset == "synthetic":
    ensure_dataset(data_dir)
if init is None:
    init = run_dir / "stage2" / "backbone.pth"
    if not init.is_file():
        raise FileNotFoundError(
            f"No Stage-2 backbone at {init}. Run notebooks/02_point_distillation.ipynb first with the same run_dir, "
            "or set init = 'scratch' to train from scratch.")
init_tag = "scratch" if str(init) == "scratch" else "pretrained"
settings = dict(finetune.PROFILES[profile], task=task, dataset=dataset, scene_percent=scene_percent,
                points_per_scene=points_per_scene, budget_seed=budget_seed, seed=seed)
if max_steps is not None:
    settings["max_steps"] = int(max_steps)
name = name or f"{task}_{init_tag}_s{scene_percent}_p{points_per_scene or 'all'}_seed{budget_seed}"
out_dir = run_dir / "finetune" / name
print("init:", init, "->", out_dir)
print({k: settings[k] for k in ("model", "voxel_size", "max_steps", "batch_size", "lr", "scene_percent",
                                "points_per_scene")})
"""),
    md("""
## Train and evaluate

`finetune.run` builds the label budget (or reuses the saved one in `{run_dir}/finetune/label_budgets/`), trains with
the kit's training loop (checkpoints, resume, metrics.csv) and evaluates on the evaluation split.
"""),
    code("""
metrics = finetune.run(settings, data_dir, init, out_dir, name=name)
print("label budget:", metrics["label_budget"]["file"])
print("  scenes:", metrics["label_budget"]["scenes"])
print("  labelled points per scene:", metrics["label_budget"]["num_labelled_points"] or "all")
print("backbone keys loaded from init:", metrics["init_loaded_keys"])
print(f"mIoU = {metrics['semseg']['miou']:.3f}   accuracy = {metrics['semseg']['accuracy']:.3f}")
for key in ("instance", "detection"):
    if key in metrics:
        print(key, {k: round(v, 3) for k, v in metrics[key].items() if k.startswith("map")})
history = metrics["train_history"]
plt.figure(figsize=(5, 3))
plt.plot([h["step"] for h in history], [h["loss"] for h in history])
plt.xlabel("step"); plt.ylabel("training loss"); plt.title("fine-tuning loss"); plt.tight_layout()
"""),
    md("""
## Per-class IoU and confusion matrix

Classes absent from both the evaluation ground truth and the predictions have no IoU (left blank); the mean is
over the classes present in the ground truth. Rows of the confusion matrix are the true classes, normalised to 1.
"""),
    code("""
rep = metrics["semseg"]
names = rep["class_names"]
conf = np.array(rep["confusion"], dtype=float)
present = [i for i in range(len(names)) if conf[i].sum() > 0 or conf[:, i].sum() > 0]
ious = [rep["per_class_iou"][names[i]] or 0.0 for i in present]
fig, ax = plt.subplots(1, 2, figsize=(13, 4.5))
ax[0].barh([names[i] for i in present], ious)
ax[0].set_xlim(0, 1); ax[0].set_xlabel("IoU"); ax[0].set_title(f"per-class IoU (mIoU {rep['miou']:.3f})")
sub = conf[np.ix_(present, present)]
sub = sub / np.maximum(sub.sum(1, keepdims=True), 1)
im = ax[1].imshow(sub, cmap="Blues", vmin=0, vmax=1)
ax[1].set_xticks(range(len(present)), [names[i] for i in present], rotation=90)
ax[1].set_yticks(range(len(present)), [names[i] for i in present])
ax[1].set_xlabel("predicted"); ax[1].set_ylabel("true"); ax[1].set_title("confusion (row-normalised)")
fig.colorbar(im, ax=ax[1]); fig.tight_layout()
fig.savefig(figures_dir / f"finetune_{name}_iou.png", dpi=120)
"""),
    md("""
## Predicted vs ground-truth labels on an evaluation scene

Top view of one evaluation scene, coloured by class (grey: unlabelled). The network is reloaded from the run's final
checkpoint: the figure shows exactly the evaluated model.
"""),
    code("""
info = dataset_info(dataset)
scene = get_dataset(dataset, data_dir, settings["eval_split"])[0]
method = SegmentationMethod(settings["model"], len(info.class_names), offset_head=task != "semseg",
                            backend=settings["backend"])
method.load_state_dict(load_checkpoint(out_dir / "checkpoints" / "final.pt")["model"])
pred = predict_scene(method, scene, settings["voxel_size"]).labels.numpy()
palette = plt.get_cmap("tab20")(np.arange(20))[:, :3]

def colours(labels):
    c = np.full((len(labels), 3), 0.7)
    ok = labels != IGNORE_LABEL
    c[ok] = palette[labels[ok] % 20]
    return c

rng = np.random.default_rng(0)
idx = rng.permutation(len(scene))[:30000]
idx = idx[np.argsort(scene.points[idx, 2])]  # draw low points first so objects stay visible from above
fig, ax = plt.subplots(1, 3, figsize=(15, 5))
for a, (title, c) in zip(ax, [("colour", scene.colors[idx] / 255.0), ("ground truth", colours(scene.semantic[idx])),
                              ("prediction", colours(pred[idx]))]):
    a.scatter(scene.points[idx, 0], scene.points[idx, 1], c=c, s=1)
    a.set_title(f"{scene.name}: {title}"); a.set_aspect("equal"); a.axis("off")
fig.tight_layout()
fig.savefig(figures_dir / f"finetune_{name}_scene.png", dpi=120)
"""),
    md("""
## Saved results

Everything above is in `metrics.json` beside the run's checkpoints; the label budget file makes the comparison
scratch vs pre-trained use exactly the same labels. `benchmarks/downstream_seeds.py` repeats this over seeds.
"""),
    code("""
print(out_dir / "metrics.json")
print(json.dumps({k: metrics[k] for k in ("name", "task", "dataset", "init", "steps")}, indent=1))
"""),
]

if __name__ == "__main__":
    print(write("04_finetune", cells))
