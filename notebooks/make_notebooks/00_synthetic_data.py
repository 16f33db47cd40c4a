"""Builds notebooks/00_synthetic_data.ipynb (run: python notebooks/make_notebooks/00_synthetic_data.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import code, md, params, write  # noqa: E402

cells = [
    md("""
# 00 · Data: RGB-D frames, scenes and the synthetic indoor set

Everything in mm3dkit consumes two records (`mm3dkit.data.types`):

* a **Frame**: colour (H×W×3 uint8), depth (H×W metres, 0 = missing), intrinsics K, camera-to-world pose, and optional
  per-pixel semantic / instance labels;
* a **Scene**: a labelled point cloud (points, colours, per-point semantic and instance ids, boxes).

Real datasets (ScanNet, S3DIS, SUN RGB-D, SemanticKITTI) cannot be downloaded on a fresh machine, so the kit ships a
**procedural synthetic indoor generator**: rooms with furniture built from boxes, textured surfaces (stripes, checkers,
wood grain, grids) so images have the edges and surface patches a 2D network can learn from, Lambertian shading,
Kinect-like depth noise and missing depth. It is rendered by ray casting (Open3D) and written in **ScanNet's on-disk
layout**, so the very same reader (`mm3dkit.data.scannet`) serves synthetic and real data.
"""),
    params("""
data_dir = "data/synth"      # where the synthetic set is written (relative to the project root)
figures_dir = "figures"
profile = "quick"            # quick: 8 scenes x 16 frames at 320x240
seed = 0
"""),
    code("""
import time
import numpy as np
import matplotlib.pyplot as plt
from mm3dkit.paths import project_path
from mm3dkit.synth import QUICK, ensure_dataset
from mm3dkit.data.scannet import ScanNetFrames, ScanNetScenes
from mm3dkit.data.classes import SCANNET20_NAMES

data_dir, figures_dir = project_path(data_dir), project_path(figures_dir)
presets = {"quick": QUICK, "paper": dict(n_scenes=100, n_frames=60, width=640, height=480)}
t0 = time.perf_counter()
ensure_dataset(data_dir, presets[profile], seed=seed)
print(f"synthetic set ready at {data_dir} ({time.perf_counter() - t0:.1f} s; finished scenes are reused)")
"""),
    md("""
## The frames, read back with the ScanNet reader

`ScanNetFrames` reads `color/N.jpg`, `depth/N.png` (uint16 millimetres), `pose/N.txt`, the intrinsics and the label
images, resizes colour to the depth resolution and maps raw label ids through `scannetv2-labels.combined.tsv` to the
20 ScanNet benchmark classes. Frames with invalid (-inf) poses are skipped and counted.
"""),
    code("""
frames = ScanNetFrames(data_dir, split="train")
print(f"{len(frames)} training frames, {frames.skipped_invalid_pose} skipped for invalid poses")
picks = [frames[i] for i in np.linspace(0, len(frames) - 1, 4).astype(int)]
fig, axes = plt.subplots(3, 4, figsize=(13, 7.5))
for j, f in enumerate(picks):
    axes[0, j].imshow(f.color); axes[0, j].set_title(f.name, fontsize=9)
    axes[1, j].imshow(np.where(f.depth > 0, f.depth, np.nan), cmap="viridis")
    axes[2, j].imshow(np.where(f.semantic >= 0, f.semantic, np.nan), cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
for ax in axes.ravel():
    ax.set_xticks([]); ax.set_yticks([])
for ax, t in zip(axes[:, 0], ["colour", "depth (m)", "ScanNet-20 label"]):
    ax.set_ylabel(t)
plt.tight_layout(); plt.show()
"""),
    md("""
## A scene: the labelled point cloud

Each scene also has a ScanNet-style labelled point cloud (`*_vh_clean_2.ply` + `.labels.ply` + segments + aggregation).
Its per-point labels are what the downstream tasks (04) are trained and evaluated on; boxes are derived from instances.
"""),
    code("""
scenes = ScanNetScenes(data_dir, split="train")
scene = scenes[0]
counts = np.bincount(scene.semantic[scene.semantic >= 0], minlength=20)
print(f"{scene.name}: {len(scene)} points, {len(np.unique(scene.instance[scene.instance >= 0]))} instances, "
      f"{len(scene.boxes)} boxes")
print({SCANNET20_NAMES[i]: int(c) for i, c in enumerate(counts) if c})
sub = np.random.default_rng(0).choice(len(scene), size=min(len(scene), 20000), replace=False)
fig = plt.figure(figsize=(11, 5))
ax = fig.add_subplot(1, 2, 1, projection="3d"); ax.scatter(*scene.points[sub].T, c=scene.colors[sub] / 255, s=0.5)
ax.set_title("colour"); ax.set_axis_off()
ax = fig.add_subplot(1, 2, 2, projection="3d")
ax.scatter(*scene.points[sub].T, c=np.where(scene.semantic[sub] >= 0, scene.semantic[sub], 19), cmap="tab20", vmin=0, vmax=19, s=0.5)
ax.set_title("ScanNet-20 labels"); ax.set_axis_off()
plt.tight_layout(); plt.show()
"""),
    md("""
## Pointing the kit at real data

* **ScanNet**: export frames with ScanNet's `SensReader` into `scans/<scene>/{color,depth,pose,intrinsic}` and keep the
  scene files (`*_vh_clean_2.ply`, `*.labels.ply`, `*.aggregation.json`, `*.segs.json`) and
  `scannetv2-labels.combined.tsv` beside them: `ScanNetFrames(root)` / `ScanNetScenes(root, split="train")`.
* The readers for S3DIS, SemanticKITTI, SUN RGB-D and generic RGB-D sequences live in `mm3dkit.data` (see README).
"""),
]
print(write("00_synthetic_data", cells))
