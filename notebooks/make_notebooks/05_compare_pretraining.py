"""Builds notebooks/05_compare_pretraining.ipynb (run: python notebooks/make_notebooks/05_compare_pretraining.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import code, md, params, write  # noqa: E402

cells = [
    md("""
# 05 · Comparing pre-training methods (Table 1)

The paper compares its single-scan pre-training ("Ours" = Stage 1 + Stage 2) with three point-only methods, all on
the same 3D network (Res16UNet34C) and fine-tuned the same way:

| method | needs | positives / negatives | module |
|---|---|---|---|
| PointContrast | two overlapping scans + poses | matched points of the two scans (PointInfoNCE) | `mm3dkit.methods.pointcontrast` |
| CSC | two overlapping scans + poses | as PointContrast, negatives split into 8 shape-context partitions | `mm3dkit.methods.csc` |
| DepthContrast | one scan | two augmentations of the scan, global features, MoCo queue | `mm3dkit.methods.depthcontrast` |
| Ours | one RGB-D scan + Stage-1 2D network | each point vs. its pixel's 2D feature | `mm3dkit.methods.stage2` |

PointContrast and CSC need pairs of frames that overlap by >= 30 %; `mm3dkit.overlap` computes the overlap of all
frame pairs of a sequence at once with voxel hashing and caches the pair list next to the data.

`mm3dkit.compare.run_comparison` pre-trains every method on the same data, fine-tunes each (and scratch) under the
same label budget and seed with `mm3dkit.downstream.finetune`, and writes the table as CSV/Markdown into
`{run_dir}/compare/` and a bar chart into `{figures_dir}/compare_pretraining.png`. Finished runs are reused.

The quick profile (default) runs tiny schedules on the synthetic set on a CPU: its numbers show that the pipeline
works, not which method is better. The same from a shell:

```
python -m mm3dkit.compare --data data/synth --run-dir runs/quick --profile quick
```
"""),
    params("""
data_dir = "data/synth"
run_dir = "runs/quick"       # Stage 1/2 outputs are reused from {run_dir}/stage1, {run_dir}/stage2 when present
figures_dir = "figures"
profile = "quick"
methods = ["scratch", "pointcontrast", "csc", "depthcontrast", "ours"]
tasks = ["semseg", "instance", "detection"]
budgets = [{"scene_percent": 100, "points_per_scene": None}]
seeds = [0]
pretrain_steps = 15          # None: the profiles' values
finetune_steps = 15
eval_max_scenes = 2          # None: all validation scenes
"""),
    code("""
from dataclasses import asdict

import matplotlib.pyplot as plt

from mm3dkit.compare import ComparePlan, run_comparison
from mm3dkit.overlap import dataset_overlap_pairs
from mm3dkit.paths import project_path
from mm3dkit.synth import ensure_dataset

data_dir, run_dir, figures_dir = project_path(data_dir), project_path(run_dir), project_path(figures_dir)
if not (data_dir / "scans").is_dir() and data_dir.name == "synth":
    ensure_dataset(data_dir)   # the synthetic quick set (notebook 00 makes the same)
"""),
    md("""
## Overlapping frame pairs

The pairs PointContrast and CSC train on (quick profile: every 2nd frame, 10 cm voxels; paper: every 25th frame,
5 cm voxels, overlap >= 30 %). The second call reads the cached json.
"""),
    code("""
from mm3dkit.methods import pointcontrast

pc = pointcontrast.PROFILES[profile]
pairs = dataset_overlap_pairs(data_dir, split="train", frame_stride=pc["frame_stride"],
                              voxel_size=pc["overlap_voxel_size"], min_overlap=pc["min_overlap"])
print(len(pairs), "pairs; first:", pairs[:3])
plt.figure(figsize=(4, 2.5))
plt.hist([p.overlap for p in pairs], bins=20)
plt.xlabel("overlap ratio"); plt.ylabel("pairs"); plt.tight_layout(); plt.show()
"""),
    md("""
## Pre-train, fine-tune, tabulate
"""),
    code("""
pre = {} if pretrain_steps is None else {"max_steps": pretrain_steps, "log_every": 5}
fine = {} if finetune_steps is None else {"max_steps": finetune_steps, "log_every": 5}
if eval_max_scenes is not None:
    fine["eval_max_scenes"] = eval_max_scenes
plan = ComparePlan(methods=methods, tasks=tasks, datasets={"synthetic" if profile == "quick" else "scannet": str(data_dir)},
                   budgets=budgets, seeds=seeds, profile=profile, pretrain_overrides=pre, finetune_overrides=fine)
result = run_comparison(plan, run_dir, data_dir, figures_dir)
print(result["markdown"])
print(result["files"])
"""),
    code("""
from IPython.display import Image, display

display(Image(filename=result["files"]["figure"]))
"""),
    md("""
Each cell is the mean over seeds of the fine-tuned metric (semantic segmentation mIoU, instance segmentation and
detection mAP@0.5, in %) and in brackets its difference to scratch, as in the paper's Table 1. `results.csv`
has one row per fine-tuning run (with its folder, whose `metrics.json` records the label budget and the
initialisation). For the paper-scale comparison use `profile = "paper"`, ScanNet as `data_dir`, more budgets
and seeds; the other datasets (S3DIS, SemanticKITTI, SUN RGB-D) are added to `plan.datasets` with their roots.
"""),
]

if __name__ == "__main__":
    print(write("05_compare_pretraining", cells))
