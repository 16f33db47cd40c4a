"""Builds notebooks/01_pixel_pretraining.ipynb (run: python notebooks/make_notebooks/01_pixel_pretraining.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _build import code, md, params, write  # noqa: E402

cells = [
    md("""
# 01 · Stage 1: pixel-level contrastive pre-training of the 2D ResUNet

The paper's first stage learns a **16-dimensional feature for every pixel** without labels:

* **Network** — a ResUNet: torchvision ResNet encoder (ResNet-34 from ImageNet in the paper) and a Monodepth2-style
  decoder that upsamples back to full resolution with skip connections; each pixel's feature is L2-normalised.
* **Two views** — every image is augmented twice, SimCLR-style (random resized crop, flip, colour jitter, grayscale,
  blur). The geometric part is an exact affine map, so for each pixel of view 1 we know where the *same original pixel*
  lies in view 2.
* **Positives and negatives** — such a matched pair is a **positive**; every other sampled pixel, of this image and of the
  **other images in the batch**, is a **negative**. The InfoNCE loss (the paper's Eq. 1) is a softmax over similarities:
  the positive must win against all negatives.
* **Temperature τ** — similarities are divided by τ before the softmax. A small τ sharpens it, so hard negatives (pixels
  that look alike) dominate the gradient; a large τ spreads the pull over all negatives. The paper does not state τ; the kit
  uses SimCLR's 0.1 (a parameter).
"""),
    params("""
data_dir = "data/synth"
run_dir = "runs/quick"
figures_dir = "figures"
profile = "quick"
device = "auto"
max_steps = None      # None: the profile's number of steps
"""),
    code("""
import json
import numpy as np
import matplotlib.pyplot as plt
import torch
from mm3dkit.paths import project_path
from mm3dkit.synth import ensure_dataset
from mm3dkit.methods import stage1
from mm3dkit.methods.stage1 import PROFILES, build_datasets, sample_correspondences, load_stage1_network
from mm3dkit.augment2d import IMAGENET_MEAN, IMAGENET_STD
from mm3dkit.heatmaps import feature_image_to_rgb

data_dir, run_dir, figures_dir = project_path(data_dir), project_path(run_dir), project_path(figures_dir)
figures_dir.mkdir(parents=True, exist_ok=True)
ensure_dataset(data_dir) if profile == "quick" else None
settings = dict(PROFILES[profile], device=device)
if max_steps is not None:
    settings["max_steps"] = int(max_steps)
print(json.dumps(settings, indent=1))
"""),
    md("""
## Two views and their correspondences

Below, one image's two augmented views; the lines join pixels of view 1 to the position of the same original pixel in
view 2 (computed from the views' affine maps, not by matching appearance). Pixels of view 1 whose original pixel is not
inside view 2 get no partner and are left out of the loss.
"""),
    code("""
train_views, eval_views = build_datasets(settings, data_dir)
print(f"{len(train_views)} training images, {len(eval_views)} held-out images for evaluation")
torch.manual_seed(3)
item = train_views[0]

def show(img):
    return (img.permute(1, 2, 0) * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN)).clamp(0, 1).numpy()

H, W = item["view1"].shape[1:]
corr = sample_correspondences(item["affine1"][None], item["affine2"][None], (H, W), per_image=25,
                              generator=torch.Generator().manual_seed(0))
v = corr["valid"][0]
fig, ax = plt.subplots(figsize=(10, 4))
ax.imshow(np.concatenate([show(item["view1"]), show(item["view2"])], axis=1))
for r1, c1, r2, c2 in zip(corr["rows1"][0][v], corr["cols1"][0][v], corr["rows2"][0][v], corr["cols2"][0][v]):
    ax.plot([c1, c2 + W], [r1, r2], "-o", ms=3, lw=0.8)
ax.set_title(f"view 1 | view 2: {int(v.sum())} of 25 sampled pixels have a partner"); ax.axis("off")
plt.show()
"""),
    md("""
## Training

`stage1.run` builds the ResUNet, evaluates the random initialisation, trains with the kit's shared loop (atomic
checkpoints, resume, metrics log; re-running this cell continues from the last checkpoint or reuses the finished run) and
evaluates again. The quick profile uses a ResNet-18 and random initialisation (ImageNet weights cannot be downloaded on
an offline machine: put torchvision's file in the torch cache and set `pretrained="imagenet"`, the paper's setting).
"""),
    code("""
report = stage1.run(settings, data_dir, run_dir / "stage1")
steps, losses = zip(*[(h["step"], h["loss"]) for h in report["history"]])
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(steps, losses); ax.set_xlabel("step"); ax.set_ylabel("pixel InfoNCE loss")
plt.show()
"""),
    md("""
## Did it learn correspondences?

**Top-1 correspondence accuracy**: for matched pixels of two augmented views of held-out images, how often is the most
similar view-2 feature (cosine) among all of that image's sampled view-2 pixels the right one? Random guessing gives
`1 / eval_pairs`.
"""),
    code("""
summary = {"random init": report["before"], "after Stage 1": report["after"], "chance": report["chance"]}
print(json.dumps(summary, indent=1))
(run_dir / "stage1" / "metrics_stage1.json").write_text(json.dumps(summary, indent=1))
# a check, not decoration: nbval runs this notebook in CI, so a Stage 1 that stops learning fails the suite
assert report["after"] > report["before"], "Stage-1 features do not beat random init at finding correspondences"
"""),
    md("""
## A first heatmap

The first three principal components of the 16-d features, shown as RGB (the full analysis is notebook 03): edges and
surface patches of the input should be visible in the features.
"""),
    code("""
net = load_stage1_network(run_dir / "stage1" / "checkpoints" / "final.pt")
imgs = torch.stack([eval_views[i]["view1"] for i in range(min(3, len(eval_views)))])
with torch.no_grad():
    feats = net(imgs)
fig, axes = plt.subplots(2, len(imgs), figsize=(4 * len(imgs), 6), squeeze=False)
for j in range(len(imgs)):
    axes[0, j].imshow(show(imgs[j])); axes[0, j].axis("off")
    axes[1, j].imshow(feature_image_to_rgb(feats[j], channels_first=True)); axes[1, j].axis("off")
axes[0, 0].set_title("input"); axes[1, 0].set_title("Stage-1 features (PCA -> RGB)")
plt.tight_layout(); fig.savefig(figures_dir / "stage1_features.png", dpi=80); plt.show()
"""),
]
print(write("01_pixel_pretraining", cells))
