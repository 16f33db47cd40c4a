"""DepthContrast (Zhang et al., ICCV 2021), voxel format on the sparse U-Net: scan-level instance discrimination.

Per item: one RGB-D frame back-projected to world coordinates, two independent augmentations
(:class:`~mm3dkit.augment3d.Augment3D`), each voxelised. The query encoder (Res16UNet -> global average pooling per
scan -> MLP projection head) embeds view 1, a momentum copy of it embeds view 2 (the key); the loss is InfoNCE of
each query against its key and a queue of keys of earlier batches (:func:`mm3dkit.losses.moco_infonce.moco_infonce`).
The momentum update and the queue update run in :meth:`DepthContrast.on_step_end` (after each optimiser step); the
queue and the key encoder are buffers/parameters of the method, so they are checkpointed and resumed exactly.

Settings from DepthContrast's released voxel-format config and model: ``TEMPERATURE 0.1``, ``EMBEDDING_DIM 128``,
``NUM_NEGATIVES 131072`` (queue), momentum 0.999, MLP ``[256, 256, 128]``, SGD lr 0.12 with a cosine schedule,
batch 32 per GPU. Differences: the trunk is the kit's Res16UNet (its ``final`` layer gives the 256-d per-voxel
features that are pooled) instead of DepthContrast's own U-Net, and the augmentation is the kit's (no random
cuboid crop); only the within-format (voxel) loss is used, not the point-format branch.

Command line::

    python -m mm3dkit.methods.depthcontrast --profile quick --data data/synth --out runs/quick/depthcontrast

Example:
    >>> PROFILES["paper"]["temperature"], PROFILES["paper"]["queue_size"], PROFILES["paper"]["key_momentum"]
    (0.1, 131072, 0.999)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from mm3dkit.augment3d import Augment3D
from mm3dkit.data.types import Frame
from mm3dkit.losses.moco_infonce import moco_infonce
from mm3dkit.methods.pretrain3d import Backbone3DMethod, make_backbone, pretraining_main, run_pretraining
from mm3dkit.models.res16unet import Res16UNetBase
from mm3dkit.overlap import _batched, make_view
from mm3dkit.point_pixel import frame_points
from mm3dkit.sparse import sparse_tensor

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {
        "model": "Res16UNet14A", "feature_dim": 32, "hidden_dim": 64, "embed_dim": 32, "voxel_size": 0.08,
        "temperature": 0.1, "queue_size": 64, "key_momentum": 0.99, "frame_stride": 1, "max_scenes": None,
        "backend": "torch",
        "max_steps": 40, "batch_size": 4, "lr": 0.005, "optimizer": "adamw", "weight_decay": 1e-4,
        "scheduler": "cosine", "warmup_steps": 5, "num_workers": 0, "log_every": 5, "ckpt_every": 20, "seed": 0,
    },
    "paper": {
        "model": "Res16UNet34C", "feature_dim": 256, "hidden_dim": 256, "embed_dim": 128, "voxel_size": 0.025,
        "temperature": 0.1, "queue_size": 131072, "key_momentum": 0.999, "frame_stride": 25, "max_scenes": None,
        "backend": "auto",
        "max_steps": 20000, "batch_size": 32, "lr": 0.12, "optimizer": "sgd", "momentum": 0.9,
        "weight_decay": 1e-4, "scheduler": "cosine", "warmup_steps": 0, "num_workers": 8, "log_every": 20,
        "ckpt_every": 500, "seed": 0,
    },
}


class TwoViewScans(Dataset):
    """Single-scan items with two independent augmentations: ``coords1/feats1`` and ``coords2/feats2``.

    ``frames``: any indexable of :class:`Frame` (e.g. ``ScanNetFrames``); points in world coordinates when posed.
    """

    def __init__(self, frames: Sequence[Frame] | Dataset, voxel_size: float, augment: Augment3D | None = None,
                 min_points: int = 16):
        self.frames, self.voxel_size = frames, voxel_size
        self.augment = augment or Augment3D()
        self.min_points = min_points

    def __len__(self) -> int:
        return len(self.frames)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        frame = self.frames[i]
        fp = frame_points(frame, world=frame.pose is not None, min_points=self.min_points)
        v1 = make_view(fp.points, fp.colors, self.voxel_size, self.augment)
        v2 = make_view(fp.points, fp.colors, self.voxel_size, self.augment)
        return {"coords1": v1.coords, "feats1": v1.feats, "coords2": v2.coords, "feats2": v2.feats,
                "name": frame.name}


def collate_two_views(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch :class:`TwoViewScans` items (scan index first in ``coords1/coords2``)."""
    return {"coords1": _batched([it["coords1"] for it in items]), "feats1": torch.cat([it["feats1"] for it in items]),
            "coords2": _batched([it["coords2"] for it in items]), "feats2": torch.cat([it["feats2"] for it in items]),
            "names": [it["name"] for it in items]}


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Module:
    """DepthContrast's MLP head: Linear - BatchNorm - ReLU - Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))


def global_average(features: torch.Tensor, scan: torch.Tensor, n_scans: int) -> torch.Tensor:
    """Mean feature per scan ``(n_scans, C)`` (vectorised ``index_add``)."""
    sums = torch.zeros(n_scans, features.shape[1], device=features.device, dtype=features.dtype)
    sums.index_add_(0, scan, features)
    counts = torch.bincount(scan, minlength=n_scans).clamp(min=1).to(features.dtype)
    return sums / counts[:, None]


@torch.no_grad()
def _gather(t: torch.Tensor) -> torch.Tensor:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return t
    parts = [torch.empty_like(t) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, t.contiguous())
    return torch.cat(parts)


class DepthContrast(Backbone3DMethod):
    """MoCo-style scan-level contrast with a momentum key encoder and a queue.

    Example:
        >>> from mm3dkit.models.res16unet import Res16UNet14A
        >>> m = DepthContrast(Res16UNet14A(3, 32, backend="torch"), hidden_dim=16, embed_dim=8, queue_size=12)
        >>> m.queue.shape, all(not p.requires_grad for p in m.key_backbone.parameters())
        (torch.Size([12, 8]), True)
    """

    method_name = "depthcontrast"

    def __init__(self, backbone: Res16UNetBase, hidden_dim: int = 256, embed_dim: int = 128,
                 queue_size: int = 131072, momentum: float = 0.999, temperature: float = 0.1):
        super().__init__(backbone)
        self.head = projection_head(backbone.out_channels, hidden_dim, embed_dim)
        self.key_backbone = copy.deepcopy(backbone)
        self.key_head = copy.deepcopy(self.head)
        for p in [*self.key_backbone.parameters(), *self.key_head.parameters()]:
            p.requires_grad_(False)
        self.momentum, self.temperature = momentum, temperature
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, embed_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None

    def embed(self, coords: torch.Tensor, feats: torch.Tensor, key: bool = False) -> torch.Tensor:
        """L2-normalised scan embeddings ``(B, embed_dim)`` of the query (or key) encoder."""
        net, head = (self.key_backbone, self.key_head) if key else (self.backbone, self.head)
        out = net(sparse_tensor(feats.float(), coords, net.backend_name))
        scan = out.C[:, 0].long().to(out.F.device)
        n = int(coords[:, 0].max()) + 1
        return F.normalize(head(global_average(out.F.float(), scan, n)), dim=1)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        q = self.embed(batch["coords1"], batch["feats1"])
        with torch.no_grad():
            k = self.embed(batch["coords2"], batch["feats2"], key=True)
        loss = moco_infonce(q, k, self.queue, self.temperature, normalize=False)
        if self.training:
            self._pending = k.detach()
        with torch.no_grad():
            pos = (q * k).sum(1).mean()
        return {"loss": loss, "pos_cosine": pos}

    @torch.no_grad()
    def on_step_end(self, step: int) -> None:
        """Momentum update of the key encoder, then enqueue this step's keys (oldest out)."""
        m = self.momentum
        for pk, pq in zip([*self.key_backbone.parameters(), *self.key_head.parameters()],
                          [*self.backbone.parameters(), *self.head.parameters()]):
            pk.mul_(m).add_(pq.detach(), alpha=1 - m)
        for bk, bq in zip([*self.key_backbone.buffers(), *self.key_head.buffers()],
                          [*self.backbone.buffers(), *self.head.buffers()]):
            bk.copy_(bq)  # batch-norm statistics follow the query encoder
        if self._pending is None:
            return
        keys = _gather(self._pending)[: len(self.queue)]
        self._pending = None
        n, size = len(keys), len(self.queue)
        idx = (int(self.queue_ptr) + torch.arange(n, device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.fill_((int(self.queue_ptr) + n) % size)

    def export_meta(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "queue_size": len(self.queue), "momentum": self.momentum}


def build_dataset(settings: dict[str, Any], data_root: str | Path, split: str | None = "train") -> TwoViewScans:
    """Two-view single-scan items over the ScanNet-layout frames at ``data_root``."""
    from mm3dkit.data.scannet import ScanNetFrames

    frames = ScanNetFrames(data_root, split=split, frame_stride=settings["frame_stride"], with_labels=False,
                           max_scenes=settings["max_scenes"])
    return TwoViewScans(frames, settings["voxel_size"])


def build_method(settings: dict[str, Any]) -> DepthContrast:
    return DepthContrast(make_backbone(settings), settings["hidden_dim"], settings["embed_dim"],
                         settings["queue_size"], settings["key_momentum"], settings["temperature"])


def run(settings: dict[str, Any], data_root: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Pre-train DepthContrast and write ``{out_dir}/backbone.pth``."""
    torch.manual_seed(settings.get("seed", 0))
    return run_pretraining(build_method(settings), build_dataset(settings, data_root), collate_two_views, settings,
                           out_dir)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m mm3dkit.methods.depthcontrast --profile quick --data DIR --out DIR [--set k=v ...]``."""
    return pretraining_main(argv, PROFILES, run, "DepthContrast pre-training (voxel format, MoCo queue)")


if __name__ == "__main__":
    main()
