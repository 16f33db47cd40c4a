"""Stage 2 (paper section 3): distil frozen Stage-1 pixel features into the 3D sparse U-Net from single RGB-D scans.

Per scan (one RGB-D frame, no second scan, no registration):

1. back-project the depth (:func:`mm3dkit.point_pixel.frame_points`; each point keeps its pixel), or pair points of
   another source (mesh / LiDAR) by projection with an occlusion test;
2. augment in 3D (:class:`mm3dkit.augment3d.Augment3D`: rotation, scale, translation, dropout, voxel-size and
   colour jitter) and voxelise (one point, hence one pixel, per voxel);
3. on the device, for the batch: frozen Stage-1 network on the images (eval mode, no gradients) -> pixel features
   sampled bilinearly at the voxels' pixels; 3D network (Res16UNet, its ``final`` 1x1 conv is the head producing the
   2D feature size) -> L2-normalised point features;
4. InfoNCE of Equation (1) over ``num_pairs`` sampled pairs per scan, negatives from all other sampled pairs of the
   batch (:func:`mm3dkit.losses.point_infonce.point_infonce`).

Why the 2D features are computed in ``forward`` instead of cached: the teacher is frozen and needs one forward of
the 2D U-Net per image (cheap on a GPU next to the 3D network), while a cache of 16-d float maps costs ~5 MB per
240x320 frame (~120 GB for ScanNet at every 25th frame) and would pin the image resolution.

Command line (also ``--set key=value`` for any profile setting)::

    python -m mm3dkit.methods.stage2 --profile quick --data data/synth \\
        --stage1 runs/quick/stage1/checkpoints/final.pt --out runs/quick/stage2

writes ``{out}/checkpoints/``, ``metrics.csv``, ``done.json``, ``backbone.pth`` (PointContrast/CSC-compatible, see
:mod:`mm3dkit.backbone_io`) and ``retrieval.json`` (point-to-pixel retrieval before/after training).

Example:
    >>> PROFILES["paper"]["model"], PROFILES["paper"]["voxel_size"], PROFILES["paper"]["num_pairs"]
    ('Res16UNet34C', 0.025, 4096)
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from mm3dkit.augment3d import Augment3D
from mm3dkit.backbone_io import save_backbone
from mm3dkit.data.types import Frame, Scene
from mm3dkit.errors import CheckpointError, DataError
from mm3dkit.geometry import voxelize
from mm3dkit.losses.point_infonce import DEFAULT_TEMPERATURE, point_infonce, retrieval_metrics
from mm3dkit.models.res16unet import Res16UNetBase, build_res16unet
from mm3dkit.point_pixel import (FramePoints, frame_points, pair_external_points, sample_grid_features, sample_pairs,
                                 uv_to_grid)
from mm3dkit.sparse import sparse_tensor
from mm3dkit.training import TrainableMethod, TrainConfig, fit
from mm3dkit.training.profiles import parse_args, train_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PROFILES: dict[str, dict[str, Any]] = {
    # CPU demo on the synthetic set: small U-Net, coarse voxels, fewer pairs.
    "quick": {
        "model": "Res16UNet14A", "feature_dim": 16, "voxel_size": 0.08, "num_pairs": 512,
        "temperature": DEFAULT_TEMPERATURE, "image_size": [120, 160], "frame_stride": 1, "max_scenes": None,
        "augment": True, "eval_pairs": 256, "eval_items": 8, "backend": "torch",
        "max_steps": 150, "batch_size": 2, "lr": 0.005, "optimizer": "adamw", "weight_decay": 1e-4,
        "scheduler": "cosine", "warmup_steps": 10, "num_workers": 0, "log_every": 5, "ckpt_every": 50, "seed": 0,
    },
    # Paper scale: PointContrast's 3D model and settings (Res16UNet34C, 2.5 cm voxels, 4096 pairs, tau 0.4,
    # SGD lr 0.1, batch 32); the paper gives no Stage-2 schedule, so PointContrast's is used.
    "paper": {
        "model": "Res16UNet34C", "feature_dim": 16, "voxel_size": 0.025, "num_pairs": 4096,
        "temperature": DEFAULT_TEMPERATURE, "image_size": [240, 320], "frame_stride": 25, "max_scenes": None,
        "augment": True, "eval_pairs": 4096, "eval_items": 64, "backend": "auto",
        "max_steps": 20000, "batch_size": 32, "lr": 0.1, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4,
        "scheduler": "poly", "warmup_steps": 0, "num_workers": 8, "log_every": 20, "ckpt_every": 500, "seed": 0,
    },
}


# ----------------------------------------------------------------------------------------------------------------
# data


def _color_image(frame: Frame, image_size: Sequence[int] | None) -> torch.Tensor:
    """The frame's colour as a (3, H, W) float tensor, ImageNet-normalised, resized to ``image_size`` if given."""
    img = torch.from_numpy(np.array(frame.color, dtype=np.float32)).permute(2, 0, 1).div(255.0)
    if image_size is not None and tuple(image_size) != tuple(img.shape[1:]):
        # bilinear with align_corners=False keeps the pixel-centre convention of mm3dkit.geometry
        img = F.interpolate(img[None], size=tuple(int(s) for s in image_size), mode="bilinear",
                            align_corners=False, antialias=True)[0]
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (img - mean) / std


def scan_pairs(frame: Frame, scene: Scene | None = None, world: bool = True, occlusion_tol: float = 0.05,
               min_points: int = 16) -> FramePoints:
    """Points of one scan with their pixels: back-projected depth, or ``scene``'s points projected into ``frame``.

    ``world`` uses world coordinates (z up) when the frame has a pose. ``scene`` points (world coordinates) are
    kept only where they project into the image unoccluded.
    """
    if scene is None:
        return frame_points(frame, world=world and frame.pose is not None, min_points=min_points)
    pts = torch.as_tensor(scene.points, dtype=torch.float32)
    uv, ok = pair_external_points(pts, frame, world=True, occlusion_tol=occlusion_tol, min_points=min_points)
    colors = torch.from_numpy(np.asarray(scene.colors)[ok.numpy()]).float() / 255.0
    return FramePoints(points=pts[ok], colors=colors, pixels=uv[ok].round().long().flip(1), uv=uv[ok])


class Stage2Dataset(Dataset):
    """Single-scan items for Stage 2: augmented voxelised points, their colours, their pixels and the image.

    ``frames`` is any indexable of :class:`Frame` (e.g. ``ScanNetFrames``) or of ``(Frame, Scene)`` pairs (points
    from another source, paired by projection with an occlusion test). Each item is a dict: ``coords (M, 3)`` int32
    voxel coordinates (shifted to start at 0), ``feats (M, 3)`` colours - 0.5 (PointContrast's input), ``grid
    (M, 2)`` each voxel's pixel in ``grid_sample`` coordinates, ``image (3, H, W)`` the normalised colour image.

    Example:
        >>> from mm3dkit.synth import generate_scene
        >>> ds = Stage2Dataset(generate_scene(0, n_frames=1, width=32, height=24).frames, voxel_size=0.1)
        >>> item = ds[0]
        >>> item["coords"].shape[1], item["feats"].shape[1], item["image"].shape
        (3, 3, torch.Size([3, 24, 32]))
    """

    def __init__(self, frames: Sequence[Frame] | Sequence[tuple[Frame, Scene]] | Dataset, voxel_size: float,
                 augment: Augment3D | None = None, image_size: Sequence[int] | None = None, world: bool = True,
                 min_points: int = 16):
        self.frames, self.voxel_size, self.image_size, self.world = frames, voxel_size, image_size, world
        self.augment = augment or Augment3D.identity()
        self.min_points = min_points

    def __len__(self) -> int:
        return len(self.frames)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.frames[i]
        frame, scene = item if isinstance(item, tuple) else (item, None)
        fp = scan_pairs(frame, scene, self.world, min_points=self.min_points)
        aug = self.augment(fp.points, fp.colors)
        vox = voxelize(aug.points, self.voxel_size * aug.voxel_scale)
        keep = vox.index  # one point (hence one pixel) per voxel
        return {
            "coords": (vox.coords - vox.coords.min(0).values).int(),
            "feats": aug.colors[keep] - 0.5,
            "grid": uv_to_grid(fp.uv[aug.keep[keep]], (frame.height, frame.width)),
            "image": _color_image(frame, self.image_size),
            "name": frame.name,
        }


def collate_stage2(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items: ``coords (N, 4)`` with the scan index first (the sparse API's layout), concatenated ``feats`` and
    ``grid``, stacked ``images`` (the dataset's ``image_size`` makes them one size)."""
    sizes = {tuple(it["image"].shape) for it in items}
    if len(sizes) > 1:
        raise DataError(", ".join(it["name"] for it in items), f"images of different sizes {sorted(sizes)} in one "
                        "batch; set the 'image_size' setting so all are resized to one size")
    coords = torch.cat([torch.cat([torch.full((len(it["coords"]), 1), b, dtype=torch.int32), it["coords"]], 1)
                        for b, it in enumerate(items)])
    return {"coords": coords, "feats": torch.cat([it["feats"] for it in items]),
            "grid": torch.cat([it["grid"] for it in items]), "images": torch.stack([it["image"] for it in items]),
            "names": [it["name"] for it in items]}


# ----------------------------------------------------------------------------------------------------------------
# the frozen 2D teacher


def load_stage1_teacher(path: str | Path, feature_dim: int | None = None) -> nn.Module:
    """The frozen Stage-1 network from its checkpoint (eval mode, no gradients).

    Raises :class:`CheckpointError` naming the file when it cannot be used, e.g. when its features have another
    size than ``feature_dim`` (the 3D head is built for that size).
    """
    if not Path(path).is_file():
        raise CheckpointError(path, "Stage-1 checkpoint does not exist; train Stage 1 first "
                              "(python -m mm3dkit.methods.stage1 ..., or notebooks/01_pixel_pretraining.ipynb)")
    from mm3dkit.methods.stage1 import load_stage1_network  # Stage-1's own loader knows its checkpoint layout

    return freeze(check_teacher_dim(load_stage1_network(path), feature_dim, path))


def check_teacher_dim(net: nn.Module, feature_dim: int | None, source: str | Path) -> nn.Module:
    """``net`` if its pixel features have ``feature_dim`` channels (or ``feature_dim`` is None), else a
    :class:`CheckpointError` naming ``source`` and both sizes."""
    dim = teacher_feature_dim(net)
    if feature_dim is not None and dim != feature_dim:
        raise CheckpointError(source, f"Stage-1 network produces {dim}-d pixel features but Stage 2 is set up for "
                              f"feature_dim={feature_dim}; use a matching checkpoint or --set feature_dim={dim}")
    return net


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and no gradients for every parameter."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def teacher_feature_dim(net: nn.Module) -> int:
    """Output channels of a 2D feature network (its ``feature_dim``/``out_channels`` attribute, else one dry run)."""
    for attr in ("feature_dim", "out_channels"):
        if isinstance(getattr(net, attr, None), int):
            return int(getattr(net, attr))
    was_training = net.training
    net.eval()
    with torch.no_grad():
        dim = int(net(torch.zeros(1, 3, 64, 64, device=next(net.parameters()).device)).shape[1])
    net.train(was_training)
    return dim


# ----------------------------------------------------------------------------------------------------------------
# the method


def _pack(c: torch.Tensor) -> torch.Tensor:
    c = c.long()
    lo = c.min(0).values
    span = c.max(0).values - lo + 1
    c = c - lo
    key = c[:, 0]
    for d in range(1, c.shape[1]):
        key = key * span[d] + c[:, d]
    return key


def match_rows(out_coords: torch.Tensor, in_coords: torch.Tensor) -> torch.Tensor:
    """For each input coordinate row, the row of ``out_coords`` holding the same coordinate (same set, any order).

    The sparse backends may return a stride-1 output in another row order than the input (MinkowskiEngine's hash
    map); this re-aligns the outputs with the voxels (and hence with their pixels) for both backends.
    """
    out_c, in_c = out_coords.to(in_coords.device).long(), in_coords.long()
    if out_c.shape == in_c.shape and torch.equal(out_c, in_c):
        return torch.arange(len(in_c), device=in_c.device)
    keys = _pack(torch.cat([out_c, in_c]))
    k_out, k_in = keys[: len(out_c)], keys[len(out_c):]
    order = torch.argsort(k_out)
    pos = torch.searchsorted(k_out[order], k_in).clamp(max=len(order) - 1)
    if not torch.equal(k_out[order][pos], k_in):
        raise RuntimeError("3D network output coordinates differ from its input voxels")
    return order[pos]


class Stage2Distill(TrainableMethod):
    """3D point features trained to match frozen 2D pixel features (InfoNCE, Equation (1)).

    ``teacher``: frozen 2D network ``(B, 3, H, W) -> (B, C, h, w)``; ``backbone``: a Res16UNet whose ``final``
    layer outputs ``C`` channels. MinkowskiEngine kernels are fp32, so ``supports_amp = False`` (the teacher still
    runs under bf16 autocast on CUDA: it is frozen and its features are normalised).

    Example:
        >>> from mm3dkit.models.res16unet import Res16UNet14A
        >>> teacher = nn.Conv2d(3, 8, 1)
        >>> m = Stage2Distill(teacher, Res16UNet14A(3, 8, backend="torch"), num_pairs=32)
        >>> sorted(n for n, p in m.named_parameters() if p.requires_grad)[0].startswith("backbone.")
        True
    """

    supports_amp = False

    def __init__(self, teacher: nn.Module, backbone: Res16UNetBase, num_pairs: int = 4096,
                 temperature: float = DEFAULT_TEMPERATURE):
        super().__init__()
        self.teacher = freeze(teacher)
        self.backbone = backbone
        self.num_pairs, self.temperature = num_pairs, temperature

    def train(self, mode: bool = True) -> Stage2Distill:
        super().train(mode)
        self.teacher.eval()  # frozen: batch-norm statistics never change
        return self

    def pixel_features(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen 2D features ``(B, C, h, w)``, float32."""
        with torch.no_grad():
            if images.is_cuda:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return self.teacher(images).float()
            return self.teacher(images).float()

    def pair_features(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """L2-normalised ``(point_features, pixel_features, scan_index)`` for every voxel of the batch."""
        coords = batch["coords"]
        scan = coords[:, 0].long()
        target = sample_grid_features(self.pixel_features(batch["images"]), batch["grid"], scan)
        out = self.backbone(sparse_tensor(batch["feats"].float(), coords, self.backbone.backend_name))
        z3 = out.F[match_rows(out.C, coords)]
        return F.normalize(z3.float(), dim=1), F.normalize(target, dim=1), scan

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        z3, z2, scan = self.pair_features(batch)
        sel = sample_pairs(scan, self.num_pairs)  # global torch RNG (restored on resume)
        loss = point_infonce(z3[sel], z2[sel], self.temperature, normalize=False)
        with torch.no_grad():
            pos_cos = (z3[sel] * z2[sel]).sum(1).mean()
        return {"loss": loss, "pos_cosine": pos_cos, "pairs": torch.tensor(float(len(sel)))}

    def export(self, out_dir: Path) -> dict[str, str]:
        meta = {"method": "mm3dkit.stage2", "num_pairs": self.num_pairs, "temperature": self.temperature,
                "head": "final = 1x1 conv to the 2D feature size; re-initialise it downstream (paper)"}
        return {"backbone": str(save_backbone(self.backbone, Path(out_dir) / "backbone.pth", meta))}


@torch.no_grad()
def evaluate_retrieval(method: Stage2Distill, dataset: Dataset, num_pairs: int = 256, max_items: int | None = None,
                       batch_size: int = 4, seed: int = 0, device: str | torch.device | None = None) -> dict[str, float]:
    """Point-to-pixel top-1 retrieval accuracy and mean cosine of true pairs, per scan among ``num_pairs`` sampled
    pairs, averaged over scans (``chance`` = 1 / pairs). Eval mode; the global RNGs are left untouched."""
    device = torch.device(device) if device is not None else next(method.backbone.parameters()).device
    was_training = method.training
    method.eval()
    gen = torch.Generator().manual_seed(seed)
    n = len(dataset) if max_items is None else min(max_items, len(dataset))  # type: ignore[arg-type]
    sums = {"top1": 0.0, "mean_cosine": 0.0, "chance": 0.0}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the dataset's augmentation (if any) draws from the global RNG
        for start in range(0, n, batch_size):
            batch = collate_stage2([dataset[i] for i in range(start, min(n, start + batch_size))])
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            z3, z2, scan = method.pair_features(batch)
            sel = sample_pairs(scan, num_pairs, gen)
            for b in scan[sel].unique():
                rows = sel[scan[sel] == b]
                m = retrieval_metrics(z3[rows], z2[rows])
                for k in sums:
                    sums[k] += m[k]
    method.train(was_training)
    return {k: v / max(1, n) for k, v in sums.items()} | {"scans": float(n)}


# ----------------------------------------------------------------------------------------------------------------
# entry point


def build_method(settings: dict[str, Any], stage1_checkpoint: str | Path | None,
                 teacher: nn.Module | None = None) -> Stage2Distill:
    """Teacher from the Stage-1 checkpoint (or a given 2D network) + a fresh Res16UNet of ``settings['model']``
    whose head outputs the feature size."""
    if teacher is None:
        if stage1_checkpoint is None:
            raise ValueError("build_method needs a Stage-1 checkpoint or a teacher network")
        teacher = load_stage1_teacher(stage1_checkpoint, settings["feature_dim"])
    backbone = build_res16unet(settings["model"], in_channels=3, out_channels=settings["feature_dim"],
                               backend=settings.get("backend"))
    return Stage2Distill(teacher, backbone, settings["num_pairs"], settings["temperature"])


def build_datasets(settings: dict[str, Any], data_root: str | Path, split: str | None = "train"
                   ) -> tuple[Stage2Dataset, Stage2Dataset]:
    """(training set with augmentation, evaluation set without) over the ScanNet-layout frames at ``data_root``."""
    from mm3dkit.data.scannet import ScanNetFrames

    frames = ScanNetFrames(data_root, split=split, frame_stride=settings["frame_stride"], with_labels=False,
                           max_scenes=settings["max_scenes"])
    size = settings["image_size"]
    train = Stage2Dataset(frames, settings["voxel_size"], Augment3D() if settings["augment"] else None, size)
    return train, Stage2Dataset(frames, settings["voxel_size"], None, size)


def run(settings: dict[str, Any], data_root: str | Path, stage1_checkpoint: str | Path | None, out_dir: str | Path,
        cfg: TrainConfig | None = None, evaluate: bool = True, teacher: nn.Module | None = None) -> dict[str, Any]:
    """Train Stage 2 and write ``backbone.pth`` and ``retrieval.json`` (before/after) into ``out_dir``.

    ``teacher`` replaces the Stage-1 checkpoint by a given frozen 2D network (tests, ablations).
    """
    out = Path(out_dir)
    cfg = cfg or train_config(settings, str(out))
    torch.manual_seed(cfg.seed)
    method = build_method(settings, stage1_checkpoint, teacher)
    train_set, eval_set = build_datasets(settings, data_root)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.device in ("auto", "cuda") else "cpu")
    report: dict[str, Any] = {}
    before_path = out / "retrieval_before.json"
    if evaluate and not (out / "checkpoints" / "last.pt").exists():  # before = the random initialisation
        method.to(device)
        report["before"] = evaluate_retrieval(method, eval_set, settings["eval_pairs"], settings["eval_items"])
        out.mkdir(parents=True, exist_ok=True)
        before_path.write_text(json.dumps(report["before"], indent=2))
    elif before_path.exists():
        report["before"] = json.loads(before_path.read_text())
    result = fit(method, train_set, cfg, collate_fn=collate_stage2)
    if evaluate:
        report["after"] = evaluate_retrieval(method, eval_set, settings["eval_pairs"], settings["eval_items"])
        (out / "retrieval.json").write_text(json.dumps(report, indent=2))
    report["history"] = result.history
    report["artefacts"] = result.artefacts
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m mm3dkit.methods.stage2 --profile quick --data DIR --stage1 CKPT --out DIR [--set k=v ...]``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--stage1", default=None)
    known, rest = pre.parse_known_args(argv)
    args = parse_args(rest, PROFILES, description="Stage 2: distil Stage-1 pixel features into a 3D sparse U-Net. "
                      "Also needs --stage1 PATH: the Stage-1 checkpoint (e.g. runs/quick/stage1/checkpoints/final.pt)")
    if known.stage1 is None:
        raise SystemExit("--stage1 is required: the Stage-1 checkpoint, e.g. runs/quick/stage1/checkpoints/final.pt")
    if args.data is None:
        raise SystemExit("--data is required (a ScanNet-layout folder, e.g. data/synth)")
    report = run(args.settings, args.data, known.stage1, args.out)
    print(json.dumps({k: report.get(k) for k in ("before", "after", "artefacts")}, indent=2))
    return report


if __name__ == "__main__":
    main()
