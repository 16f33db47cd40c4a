"""Stage 1 (paper section 3): pixel-level contrastive pre-training of the 2D ResUNet.

Each image gives two augmented views (:class:`mm3dkit.augment2d.PairAugment`). For ``num_pairs`` random pixels of
view 1 per image, the exact affine maps give where the same original pixel lies in view 2 (a continuous position:
view-2 features are sampled there bilinearly, so positives match to sub-pixel accuracy); pixels that fall outside
view 2 are dropped. All of this is vectorised on the device (:func:`sample_correspondences`). The loss is the
pixel InfoNCE of :mod:`mm3dkit.losses.pixel_infonce`, negatives from every image of the batch.

Command line (``--set key=value`` overrides any profile setting)::

    python -m mm3dkit.methods.stage1 --profile quick --data data/synth --out runs/quick/stage1

writes ``checkpoints/`` (``final.pt`` at the end), ``metrics.csv``, ``done.json``, ``resunet.pth`` and
``correspondence.json`` (top-1 correspondence accuracy of random init vs trained, on held-out frames).

Example:
    >>> PROFILES["paper"]["encoder"], PROFILES["paper"]["feature_dim"], PROFILES["paper"]["negatives"]
    ('resnet34', 16, 'batch')
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from mm3dkit.augment2d import PairAugment, original_to_view, view_to_original
from mm3dkit.data.scannet import scene_dirs
from mm3dkit.data.types import Frame
from mm3dkit.errors import CheckpointError, DataError
from mm3dkit.losses.pixel_infonce import DEFAULT_TEMPERATURE, pixel_infonce
from mm3dkit.models.resunet import ResUNet
from mm3dkit.training import TrainableMethod, fit, load_checkpoint, save_atomic
from mm3dkit.training.profiles import parse_args, train_config

PROFILES: dict[str, dict[str, Any]] = {
    # CPU demo on the synthetic set. Random init: ImageNet weights cannot be fetched offline (set pretrained=imagenet
    # once torchvision's resnet18 file is in the torch cache).
    "quick": {
        "encoder": "resnet18", "pretrained": "none", "feature_dim": 16, "image_size": [96, 128], "num_pairs": 1024,
        "temperature": DEFAULT_TEMPERATURE, "negatives": "batch", "symmetric": True, "crop_scale": [0.2, 1.0],
        "frame_stride": 1, "eval_images": 16, "eval_pairs": 256,
        "max_steps": 200, "batch_size": 8, "lr": 0.001, "optimizer": "adamw", "weight_decay": 1e-4,
        "scheduler": "cosine", "warmup_steps": 10, "num_workers": 0, "log_every": 10, "ckpt_every": 50, "seed": 0,
        "device": "auto",
    },
    # Paper's reference setup: ResNet-34 from ImageNet, 16-d features. The paper gives no Stage-1 schedule: SimCLR-like
    # settings at ScanNet scale (every 25th frame), 4096 pairs per image.
    "paper": {
        "encoder": "resnet34", "pretrained": "imagenet", "feature_dim": 16, "image_size": [240, 320],
        "num_pairs": 4096, "temperature": DEFAULT_TEMPERATURE, "negatives": "batch", "symmetric": True,
        "crop_scale": [0.2, 1.0], "frame_stride": 25, "eval_images": 256, "eval_pairs": 1024,
        "max_steps": 30000, "batch_size": 32, "lr": 0.001, "optimizer": "adamw", "weight_decay": 1e-4,
        "scheduler": "cosine", "warmup_steps": 1000, "num_workers": 8, "log_every": 50, "ckpt_every": 1000, "seed": 0,
        "device": "auto",
    },
}


# ------------------------------------------------------------------------------------------------------------------
# data


def image_files(root: str | Path, split: str | None = "train", frame_stride: int = 1) -> list[Path]:
    """Colour images of a ScanNet-layout dataset (``<scene>/color/N.jpg``), every ``frame_stride``-th per scene."""
    files: list[Path] = []
    for d in scene_dirs(root, split if split and (Path(root) / f"scannetv2_{split}.txt").is_file() else None):
        ids = sorted(int(p.stem) for p in (d / "color").glob("*.jpg"))
        files += [d / "color" / f"{i}.jpg" for i in ids[::frame_stride]]
    if not files:
        raise DataError(root, "no colour images found (expected <scene>/color/N.jpg)")
    return files


def _load_rgb(item: Path | Frame | np.ndarray) -> torch.Tensor:
    if isinstance(item, Frame):
        arr = item.color
    elif isinstance(item, np.ndarray):
        arr = item
    else:
        try:
            arr = np.asarray(Image.open(item).convert("RGB"))
        except OSError as exc:
            raise DataError(item, f"cannot be read as an image ({exc})") from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise DataError(getattr(item, "name", "image"), f"expected an H x W x 3 uint8 image, got {arr.shape} {arr.dtype}")
    return torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)


class PairViews(Dataset):
    """Items ``{"view1", "view2", "affine1", "affine2"}`` from image files, :class:`Frame` objects or uint8 arrays
    (any indexable: e.g. a kit reader's dataset)."""

    def __init__(self, images: Sequence[Path | Frame | np.ndarray] | Dataset, augment: PairAugment):
        self.images, self.augment = images, augment

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        v1, v2 = self.augment(_load_rgb(self.images[i]))
        return {"view1": v1.image, "view2": v2.image, "affine1": v1.affine, "affine2": v2.affine}


# ------------------------------------------------------------------------------------------------------------------
# correspondences and loss


def sample_correspondences(affine1: torch.Tensor, affine2: torch.Tensor, size: tuple[int, int], per_image: int,
                           generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """``per_image`` random view-1 pixels per image and their continuous positions in view 2 (vectorised).

    Returns ``rows1, cols1`` (B, N) integer pixels, ``rows2, cols2`` (B, N) float positions and ``valid`` (B, N):
    the same original pixel lies inside view 2.
    """
    B, (H, W) = affine1.shape[0], size
    dev = affine1.device
    rows1 = torch.randint(0, H, (B, per_image), device=dev, generator=generator)
    cols1 = torch.randint(0, W, (B, per_image), device=dev, generator=generator)
    x, y = view_to_original(affine1[:, None, :].double(), rows1.double(), cols1.double())
    rows2, cols2 = original_to_view(affine2[:, None, :].double(), x, y)
    valid = (rows2 >= 0) & (rows2 <= H - 1) & (cols2 >= 0) & (cols2 <= W - 1)
    return {"rows1": rows1, "cols1": cols1, "rows2": rows2.float(), "cols2": cols2.float(), "valid": valid}


def matched_features(f1: torch.Tensor, f2: torch.Tensor, corr: dict[str, torch.Tensor]
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features of the valid matches: ``z1`` at view-1 pixels, ``z2`` bilinearly at view-2 positions, image index."""
    B, _, H, W = f1.shape
    b = torch.arange(B, device=f1.device)[:, None].expand_as(corr["rows1"])
    z1 = f1.permute(0, 2, 3, 1)[b, corr["rows1"], corr["cols1"]]
    grid = torch.stack([(corr["cols2"] + 0.5) / W * 2 - 1, (corr["rows2"] + 0.5) / H * 2 - 1], dim=-1)[:, :, None]
    z2 = F.grid_sample(f2, grid.to(f2.dtype), mode="bilinear", align_corners=False).squeeze(-1).permute(0, 2, 1)
    v = corr["valid"]
    return z1[v], F.normalize(z2[v], dim=1), b[v]


class PixelContrast(TrainableMethod):
    """Stage-1 method: the ResUNet and its pixel InfoNCE over matched pixels of two views."""

    def __init__(self, net: ResUNet, num_pairs: int = 4096, temperature: float = DEFAULT_TEMPERATURE,
                 negatives: str = "batch", symmetric: bool = True):
        super().__init__()
        self.net, self.num_pairs, self.temperature = net, num_pairs, temperature
        self.negatives, self.symmetric = negatives, symmetric

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        views = torch.cat([batch["view1"], batch["view2"]])
        f1, f2 = self.net(views).float().chunk(2)
        corr = sample_correspondences(batch["affine1"], batch["affine2"], tuple(f1.shape[-2:]), self.num_pairs)
        z1, z2, img = matched_features(f1, f2, corr)
        loss = pixel_infonce(z1, z2, img, self.temperature, self.negatives, self.symmetric)
        return {"loss": loss, "matched_fraction": corr["valid"].float().mean()}

    def export(self, out_dir: Path) -> dict[str, str]:
        path = Path(out_dir) / "resunet.pth"
        save_atomic({"arch": self.net.get_extra_state(), "state_dict": self.net.state_dict()}, path)
        return {"resunet": str(path)}


# ------------------------------------------------------------------------------------------------------------------
# evaluation and loading


@torch.no_grad()
def correspondence_accuracy(net: nn.Module, dataset: PairViews, pairs_per_image: int = 256, seed: int = 0,
                            device: torch.device | str = "cpu", batch_size: int = 8) -> float:
    """Top-1 correspondence accuracy: for matched pixels of two augmented views, how often the most similar view-2
    feature (cosine) among the image's sampled view-2 pixels is the right one. Chance is ``1 / pairs_per_image``.

    Views and pixels are drawn from a fixed seed, so numbers are comparable between checkpoints.
    """
    was_training = net.training
    net.eval().to(device)
    hits = total = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        items = [dataset[i] for i in range(len(dataset))]
        g = torch.Generator(device="cpu").manual_seed(seed)
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            batch = {k: torch.stack([it[k] for it in chunk]).to(device) for k in chunk[0]}
            f1, f2 = net(torch.cat([batch["view1"], batch["view2"]])).float().chunk(2)
            corr = sample_correspondences(batch["affine1"].cpu(), batch["affine2"].cpu(), tuple(f1.shape[-2:]),
                                          pairs_per_image, generator=g)
            corr = {k: v.to(device) for k, v in corr.items()}
            z1, z2, img = matched_features(f1, f2, corr)
            sims = (z1 @ z2.T).masked_fill(img[:, None] != img[None, :], float("-inf"))
            hits += int((sims.argmax(1) == torch.arange(len(z1), device=z1.device)).sum())
            total += len(z1)
    net.train(was_training)
    return hits / max(total, 1)


def load_stage1_network(path: str | Path) -> ResUNet:
    """The ResUNet of a Stage-1 checkpoint (``checkpoints/final.pt`` or ``resunet.pth``), on CPU, eval mode."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict") or ckpt.get("model")
    if not isinstance(state, dict):
        raise CheckpointError(path, "has no 'model' or 'state_dict' entry")
    prefix = "net." if any(k.startswith("net.") for k in state) else ""
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    arch = ckpt.get("arch") or state.get("_extra_state")
    if not isinstance(arch, dict) or "encoder" not in arch:
        raise CheckpointError(path, "is not a Stage-1 ResUNet checkpoint (no architecture record)")
    net = ResUNet(arch["encoder"], arch["feature_dim"], pretrained="none")
    try:
        net.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(path, f"weights do not fit ResUNet {arch} ({exc})") from exc
    return net.eval()


# ------------------------------------------------------------------------------------------------------------------
# entry points


def build_datasets(settings: dict[str, Any], data: str | Path) -> tuple[PairViews, PairViews]:
    """Training views (train split) and a small fixed evaluation set (val split, or the train files if none)."""
    size = tuple(settings["image_size"])
    train_aug = PairAugment(out_size=size, scale=tuple(settings["crop_scale"]))
    train = PairViews(image_files(data, "train", settings["frame_stride"]), train_aug)
    try:
        eval_files = image_files(data, "val", 1)
    except DataError:
        eval_files = image_files(data, None, 1)
    step = max(1, len(eval_files) // settings["eval_images"])
    evaluation = PairViews(eval_files[::step][: settings["eval_images"]], PairAugment(out_size=size,
                                                                                      scale=tuple(settings["crop_scale"])))
    return train, evaluation


def collate_views(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def run(settings: dict[str, Any], data: str | Path, out: str | Path) -> dict[str, Any]:
    """Train Stage 1 with ``settings`` (a profile) on ``data``; returns and writes the before/after accuracy."""
    out = Path(out)
    torch.manual_seed(settings["seed"])
    net = ResUNet(settings["encoder"], settings["feature_dim"], settings["pretrained"])
    method = PixelContrast(net, settings["num_pairs"], settings["temperature"], settings["negatives"],
                           settings["symmetric"])
    train, evaluation = build_datasets(settings, data)
    cfg = train_config(settings, str(out))
    from mm3dkit.training.distributed import resolve_device

    device = resolve_device(cfg.device)
    report_path = out / "correspondence.json"
    before = (json.loads(report_path.read_text())["before"] if report_path.is_file()
              else correspondence_accuracy(net, evaluation, settings["eval_pairs"], device=device))
    out.mkdir(parents=True, exist_ok=True)
    if not report_path.is_file():
        report_path.write_text(json.dumps({"before": before}))
    result = fit(method, train, cfg, collate_fn=collate_views)
    after = correspondence_accuracy(method.net, evaluation, settings["eval_pairs"], device=device)
    report = {"before": before, "after": after, "chance": 1 / settings["eval_pairs"], "steps": result.step,
              "eval_images": len(evaluation), "final_checkpoint": str(result.final_checkpoint)}
    report_path.write_text(json.dumps(report, indent=2))
    return {**report, "history": result.history}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv, PROFILES, description="Stage 1: pixel-level contrastive pre-training of the 2D ResUNet")
    report = run(args.settings, args.data or "data/synth", args.out)
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
