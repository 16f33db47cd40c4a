"""Builds notebooks/03_feature_heatmaps.ipynb (run: python notebooks/make_notebooks/03_feature_heatmaps.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import code, md, params, write  # noqa: E402

cells = [
    md("""
# 03 · Feature heatmaps (paper Figure 2)

A 16-d feature per pixel or per point cannot be looked at directly. As in the paper (following [34]), the features are
reduced to their first three principal components, shown as red, green and blue (each component scaled between its
1st and 99th percentile). Similar features get similar colours.

* **(a)** input image beside the heatmap of its Stage-1 2D features: structures of the image (edges, surfaces) should
  be visible in the features;
* **(b)** the Stage-2 3D network's point features beside the 2D features of the same frame, coloured with **one
  PCA fitted on both**, so the same colour means the same feature in the point cloud and in the image; the 2D-3D
  agreement (cosine of each point with its own pixel, and top-1 point→pixel retrieval) is printed beside it;
* **(c)** point features of the same frame before (random initialisation) and after Stage-2 pre-training.

The library computes everything: `mm3dkit.features` (models from the checkpoints, features of a frame through Stage 2's
own code path), `mm3dkit.heatmaps` (PCA → RGB), `mm3dkit.viz` (plotly / matplotlib / PLY). Run headless (papermill),
the notebook writes static PNGs and standalone HTML (plotly.js embedded: opens offline) of each panel into
`figures_dir` and coloured PLY point clouds into `{run_dir}/heatmaps/`. In a live Jupyter session, the widgets at the
end pick another frame and model.

Inputs: `{run_dir}/stage1/checkpoints/final.pt` (notebook 01) and `{run_dir}/stage2/checkpoints/final.pt` (notebook 02).
"""),
    params("""
data_dir = "data/synth"      # ScanNet-layout frames (the synthetic set of notebook 00)
run_dir = "runs/quick"       # notebooks 01 and 02 wrote {run_dir}/stage1/ and {run_dir}/stage2/
figures_dir = "figures"
profile = "quick"            # the Stage-2 profile the checkpoint was trained with (voxel size, image size, model)
split = "train"              # frames of this split (None: all scenes)
frame_index = 6              # the frame shown in the pictures
max_points = 50000           # points per interactive cloud (a browser stays fluid up to about this many)
eval_items = 8               # frames for the dataset-level 2D-3D agreement
seed = 0
interactive = False          # True in JupyterLab: frame/checkpoint widgets (off by default: widgets can stall headless runs)
"""),
    code("""
import json
import numpy as np
import torch
from IPython.display import display, Image as ShowImage

from mm3dkit.paths import project_path
from mm3dkit.synth import ensure_dataset
from mm3dkit.data.scannet import ScanNetFrames
from mm3dkit.methods import stage2
from mm3dkit.features import build_feature_method, frame_features, frame_agreement
from mm3dkit.heatmaps import fit_pca, fit_joint_pca
from mm3dkit.viz import Panel, plotly_panels, save_static_panels, write_html, write_ply, view_from_pose

data_dir, run_dir, figures_dir = project_path(data_dir), project_path(run_dir), project_path(figures_dir)
figures_dir.mkdir(parents=True, exist_ok=True)
stage1_ckpt = run_dir / "stage1" / "checkpoints" / "final.pt"
stage2_ckpt = run_dir / "stage2" / "checkpoints" / "final.pt"
for path, notebook in ((stage1_ckpt, "notebooks/01_pixel_pretraining.ipynb"),
                       (stage2_ckpt, "notebooks/02_point_distillation.ipynb")):
    if not path.is_file():
        raise FileNotFoundError(f"Missing checkpoint {path}: it is made by {notebook} (run it first with the same "
                                f"run_dir={run_dir}).")
ensure_dataset(data_dir)
settings = dict(stage2.PROFILES[profile])
device = "cuda" if torch.cuda.is_available() else "cpu"
trained = build_feature_method(stage1_ckpt, stage2_ckpt, settings, device=device)  # Stage-1 2D + Stage-2 3D
random_init = build_feature_method(stage1_ckpt, None, settings, seed=seed, device=device)  # same 2D, fresh 3D
frames = ScanNetFrames(data_dir, split=split, with_labels=False)
ply_dir = run_dir / "heatmaps"
ply_dir.mkdir(parents=True, exist_ok=True)
print(f"{len(frames)} frames; 3D model {type(trained.backbone).__name__}, voxel {settings['voxel_size']} m, "
      f"image size {settings['image_size']}, device {device}")
"""),
    code("""
def compute(index):
    \"\"\"Features of frame ``index`` from both 3D networks (the 2D network is the same Stage-1 one).\"\"\"
    frame = frames[index]
    kw = dict(voxel_size=settings["voxel_size"], image_size=settings["image_size"])
    return frame, frame_features(trained, frame, **kw), frame_features(random_init, frame, **kw)


frame, ff, ff0 = compute(frame_index)
view = view_from_pose(frame.pose)
tag = ff.name.replace("/", "_") or f"frame{frame_index}"  # e.g. scene0000_00_0, for file names
print(f"frame {ff.name}: {ff.image.shape[1]}x{ff.image.shape[0]} image, {tuple(ff.pixel_map.shape[:2])} feature map, "
      f"{len(ff.dense_points)} points in {len(ff.points)} voxels")
"""),
    md("""
## (a) Input image and its 2D feature heatmap

The PCA is fitted on this image's own pixel features.
"""),
    code("""
pca_2d = fit_pca(ff.pixel_map.reshape(-1, ff.pixel_map.shape[-1]), seed=seed)
panels_a = [Panel("input image", image=ff.image),
            Panel("2D features (Stage 1)", image=pca_2d.image_colors(ff.pixel_map))]
print("explained variance of the 3 components:", np.round(pca_2d.explained_variance_ratio.numpy(), 3))
png_a = save_static_panels(panels_a, figures_dir / "heatmap_a_image.png")
write_html(plotly_panels(panels_a, max_points), figures_dir / "heatmap_a_image.html")
display(ShowImage(filename=str(png_a)))
"""),
    md("""
## (b) Point features beside image features (one joint PCA)

One PCA is fitted on the image's pixel features and the 3D network's point features together (each set given the
same weight), so colours can be compared across the panels. Middle: the 2D features at each point's pixel (what the
3D network was trained to reproduce). The numbers measure the agreement directly: the mean cosine between a point's
feature and its own pixel's feature, and top-1 retrieval (is a point's most similar pixel, among the sampled pairs,
its own?; chance = 1 / pairs), on this frame and over `eval_items` frames (`stage2.evaluate_retrieval`).
"""),
    code("""
C = ff.pixel_map.shape[-1]
pca_joint = fit_joint_pca(ff.pixel_map.reshape(-1, C), ff.point_feats, seed=seed)
rgb_3d, rgb_2d_at_points = pca_joint.colors(ff.point_feats), pca_joint.colors(ff.pixel_feats)
# each back-projected pixel is drawn with the features of its voxel (the network sees one point per voxel)
panels_b = [Panel("3D point features (Stage 2)", points=ff.dense_points, colors=ff.dense(rgb_3d), view=view),
            Panel("2D features at the points' pixels", points=ff.dense_points, colors=ff.dense(rgb_2d_at_points),
                  view=view),
            Panel("2D image features", image=pca_joint.image_colors(ff.pixel_map))]
png_b = save_static_panels(panels_b, figures_dir / "heatmap_b_point_vs_pixel.png")
write_html(plotly_panels(panels_b, max_points), figures_dir / "heatmap_b_point_vs_pixel.html")
write_ply(ply_dir / f"{tag}_points_stage2_joint.ply", ff.dense_points, ff.dense(rgb_3d))
write_ply(ply_dir / f"{tag}_pixels_stage1_joint.ply", ff.dense_points, ff.dense(rgb_2d_at_points))
display(ShowImage(filename=str(png_b)))

eval_set = stage2.build_datasets(settings, data_dir, split)[1]
agreement = {
    "this frame, random 3D": frame_agreement(ff0, settings["eval_pairs"], seed),
    "this frame, Stage 2": frame_agreement(ff, settings["eval_pairs"], seed),
    f"{eval_items} frames, random 3D": stage2.evaluate_retrieval(random_init, eval_set, settings["eval_pairs"],
                                                                 eval_items, seed=seed),
    f"{eval_items} frames, Stage 2": stage2.evaluate_retrieval(trained, eval_set, settings["eval_pairs"], eval_items,
                                                               seed=seed),
}
print(f"{'2D-3D agreement':26s} {'mean cos':>9s} {'top-1':>7s} {'chance':>7s}")
for name, m in agreement.items():
    print(f"{name:26s} {m['mean_cosine']:9.3f} {m['top1']:7.3f} {m['chance']:7.3f}")
(figures_dir / "heatmap_b_agreement.json").write_text(json.dumps(agreement, indent=2))
"""),
    md("""
## (c) Point features before and after pre-training

Each network's features get their own PCA (a random network's feature space has nothing in common with the trained
one). After Stage 2 the colours should follow the objects and surfaces of the scene.
"""),
    code("""
rgb_before = fit_pca(ff0.point_feats, seed=seed).colors(ff0.point_feats)
rgb_after = fit_pca(ff.point_feats, seed=seed).colors(ff.point_feats)
panels_c = [Panel("input colours", points=ff.dense_points, colors=ff.dense_colors, view=view),
            Panel("before: random initialisation", points=ff0.dense_points, colors=ff0.dense(rgb_before), view=view),
            Panel("after: Stage-2 pre-training", points=ff.dense_points, colors=ff.dense(rgb_after), view=view)]
png_c = save_static_panels(panels_c, figures_dir / "heatmap_c_before_after.png")
write_html(plotly_panels(panels_c, max_points), figures_dir / "heatmap_c_before_after.html")
write_ply(ply_dir / f"{tag}_points_random.ply", ff0.dense_points, ff0.dense(rgb_before))
write_ply(ply_dir / f"{tag}_points_stage2.ply", ff.dense_points, ff.dense(rgb_after))
display(ShowImage(filename=str(png_c)))
print("files:", sorted(p.name for p in figures_dir.glob("heatmap_*")), "| PLY:", sorted(p.name for p in ply_dir.glob("*.ply")))
"""),
    md("""
## Explore (live Jupyter only)

Pick a frame and a 3D network; the interactive figure shows the point features coloured with a PCA fitted jointly
with that frame's image features (drag to rotate). Run headless, this cell shows the default frame only.
"""),
    code("""
models = {"Stage 2 (pre-trained)": trained, "random initialisation": random_init}


def explore_figure(index, model_name):
    f = frame_features(models[model_name], frames[index], settings["voxel_size"], settings["image_size"])
    pca = fit_joint_pca(f.pixel_map.reshape(-1, f.pixel_map.shape[-1]), f.point_feats, seed=seed)
    return plotly_panels([Panel("input image", image=f.image),
                          Panel(f"point features: {model_name}", points=f.dense_points,
                                colors=f.dense(pca.colors(f.point_feats)), view=view_from_pose(frames[index].pose)),
                          Panel("image features (same PCA)", image=pca.image_colors(f.pixel_map))],
                         max_points, title=f"frame {f.name}")


import sys

# nbclient (papermill, nbconvert --execute) starts kernels with an in-memory history file: no one is watching there
headless = any(arg.startswith("--HistoryManager.hist_file=:memory:") for arg in sys.argv)
live = (not headless) if interactive is None else bool(interactive)
try:
    import ipywidgets as widgets
except ImportError:  # no ipywidgets: the default frame only
    widgets = None
if not live:
    print("headless run: the default frame is in the pictures above and in the HTML files:",
          sorted(p.name for p in figures_dir.glob("heatmap_*.html")))
elif widgets is None:
    explore_figure(frame_index, "Stage 2 (pre-trained)").show()
else:
    pick_frame = widgets.IntSlider(value=frame_index, min=0, max=len(frames) - 1, description="frame")
    pick_model = widgets.Dropdown(options=list(models), description="3D network")
    shown = widgets.Output()

    def redraw(_=None):
        with shown:
            shown.clear_output()
            explore_figure(pick_frame.value, pick_model.value).show()

    pick_frame.observe(redraw, names="value")
    pick_model.observe(redraw, names="value")
    display(widgets.HBox([pick_frame, pick_model]), shown)
    redraw()
"""),
]

if __name__ == "__main__":
    print(write("03_feature_heatmaps", cells))
