"""Builds notebooks/02_point_distillation.ipynb (run: python notebooks/make_notebooks/02_point_distillation.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import code, md, params, write  # noqa: E402

cells = [
    md("""
# 02 · Stage 2: distilling 2D pixel features into a 3D point network

Stage 1 (notebook 01) trained a 2D ResUNet whose per-pixel 16-d features separate structures in an image. Stage 2
(paper, section 3) teaches PointContrast's 3D sparse U-Net (Res16UNet) to produce the **same features for the 3D
points**, from **single RGB-D scans** — no second scan, no registration:

1. every pixel with depth is back-projected to a 3D point that *remembers its pixel*, so point↔pixel pairs are exact;
2. the points are augmented in 3D (rotation about the up axis, small tilts, scaling, translation, point dropout,
   voxel-size and colour jitter) and voxelised;
3. the frozen Stage-1 network computes pixel features, sampled bilinearly at each voxel's pixel (the target);
4. the 3D network's L2-normalised point features are pulled towards their own pixel feature and pushed away from the
   pixel features of all other sampled pairs in the batch: InfoNCE, Equation (1).

The library does the work (`mm3dkit.methods.stage2`, `mm3dkit.point_pixel`, `mm3dkit.augment3d`,
`mm3dkit.losses.point_infonce`); this notebook runs the quick CPU profile on the synthetic set and looks at the result.
The same run from a shell:

```
python -m mm3dkit.methods.stage2 --profile quick --data data/synth \\
    --stage1 runs/quick/stage1/checkpoints/final.pt --out runs/quick/stage2
```
"""),
    params("""
data_dir = "data/synth"      # ScanNet-layout frames (the synthetic set of notebook 00)
run_dir = "runs/quick"       # Stage 1 wrote {run_dir}/stage1/; this notebook writes {run_dir}/stage2/
figures_dir = "figures"
profile = "quick"            # "quick" (CPU demo) or "paper" (Res16UNet34C, 2.5 cm voxels, 4096 pairs)
max_steps = None             # None: the profile's value
"""),
    code("""
import json
import matplotlib.pyplot as plt
import numpy as np
import csv
import torch

from mm3dkit.paths import project_path
from mm3dkit.synth import ensure_dataset
from mm3dkit.data.scannet import ScanNetFrames
from mm3dkit.geometry import voxelize, project
from mm3dkit.point_pixel import frame_points
from mm3dkit.methods import stage2

data_dir, run_dir, figures_dir = project_path(data_dir), project_path(run_dir), project_path(figures_dir)
figures_dir.mkdir(parents=True, exist_ok=True)
stage1_ckpt = run_dir / "stage1" / "checkpoints" / "final.pt"
out_dir = run_dir / "stage2"
if not stage1_ckpt.is_file():
    raise FileNotFoundError(
        f"No Stage-1 checkpoint at {stage1_ckpt}. Stage 2 distils the features of a trained Stage-1 network: "
        f"run notebooks/01_pixel_pretraining.ipynb (or `python -m mm3dkit.methods.stage1 --profile {profile} "
        f"--data {data_dir} --out {run_dir / 'stage1'}`) first, with the same run_dir.")
ensure_dataset(data_dir)
settings = dict(stage2.PROFILES[profile])
if max_steps is not None:
    settings["max_steps"] = int(max_steps)
print("Stage-1 checkpoint:", stage1_ckpt)
print({k: settings[k] for k in ("model", "feature_dim", "voxel_size", "num_pairs", "temperature", "max_steps",
                                "batch_size", "lr", "backend")})
"""),
    md("""
## Points and their pixels

Each back-projected point keeps the pixel it came from. Below, the points left after voxelisation (one per voxel)
are projected back into the image with the camera model: they land exactly on their pixels (the pairing error is
printed), and a top view shows the same points in 3D.
"""),
    code("""
frame = ScanNetFrames(data_dir, split="train", with_labels=False)[5]
pts = frame_points(frame, world=True)
vox = voxelize(pts.points, settings["voxel_size"])
kept = vox.index
uv, ok = project(pts.points[kept], frame.intrinsics, frame.pose, image_size=(frame.height, frame.width))
err = (uv - pts.uv[kept]).norm(dim=1)
print(f"{len(pts)} points from depth, {len(kept)} voxels at {settings['voxel_size']} m; "
      f"max point->pixel reprojection error {err.max():.2e} px, all in the image: {bool(ok.all())}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
axes[0].imshow(frame.color)
sc = axes[0].scatter(uv[:, 0], uv[:, 1], s=3, c=pts.points[kept][:, 2].numpy(), cmap="viridis")
axes[0].set_title("voxel points projected into the image (colour = height)")
axes[1].scatter(pts.points[kept][:, 0], pts.points[kept][:, 1], s=2, c=pts.colors[kept].numpy())
axes[1].set_aspect("equal"); axes[1].set_title("the same points, top view (point colour)")
fig.colorbar(sc, ax=axes[0], fraction=0.03)
fig.tight_layout(); fig.savefig(figures_dir / "02_point_pixel_projection.png", dpi=120)
plt.show()
"""),
    md("""
## Train

`stage2.run` loads the frozen Stage-1 network, builds the 3D network (its final 1×1 convolution outputs the 16-d
feature size), measures point→pixel retrieval at the random initialisation, trains with the kit's training loop
(checkpoints and resume in `{run_dir}/stage2/checkpoints`, `metrics.csv`) and measures retrieval again. Re-running
the cell resumes (or returns at once if the run is finished).
"""),
    code("""
report = stage2.run(settings, data_dir, stage1_ckpt, out_dir)
print("exported:", report["artefacts"])
"""),
    md("""
## Loss curve
"""),
    code("""
with open(out_dir / "metrics.csv") as fh:
    rows = list(csv.DictReader(fh))
metrics = {k: np.array([float(r[k]) for r in rows]) for k in ("step", "loss", "pos_cosine")}
fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
ax[0].plot(metrics["step"], metrics["loss"]); ax[0].set_xlabel("step"); ax[0].set_ylabel("InfoNCE loss")
ax[1].plot(metrics["step"], metrics["pos_cosine"]); ax[1].set_xlabel("step")
ax[1].set_ylabel("cosine(point, its pixel)")
fig.tight_layout(); fig.savefig(figures_dir / "02_stage2_loss.png", dpi=120)
plt.show()
print(f"loss: first logged {metrics['loss'][0]:.3f} -> last {metrics['loss'][-1]:.3f}")
"""),
    md("""
## Point→pixel retrieval before vs after

For each scan (no augmentation), sample pairs, and for each point feature find the most similar pixel feature among
the sampled pixels: top-1 accuracy (chance = 1 / number of pairs) and the mean cosine between a point and its own
pixel. Many pixels of one surface have almost the same feature, so top-1 is a strict measure; it should clearly rise
above the random initialisation.
"""),
    code("""
retrieval = json.loads((out_dir / "retrieval.json").read_text())
print(f"{'':8s} {'top-1':>8s} {'mean cos':>9s} {'chance':>8s}")
for when in ("before", "after"):
    if when in retrieval:
        r = retrieval[when]
        print(f"{when:8s} {r['top1']:8.3f} {r['mean_cosine']:9.3f} {r['chance']:8.3f}")
"""),
]

if __name__ == "__main__":
    print(write("02_point_distillation", cells))
