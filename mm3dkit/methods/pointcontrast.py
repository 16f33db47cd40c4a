"""PointContrast (Xie et al., ECCV 2020): PointInfoNCE between matched points of two overlapping scans.

Per item: two frames of one RGB-D sequence whose overlap is at least ``min_overlap`` (:mod:`mm3dkit.overlap`,
cached per scene), each back-projected to world coordinates, augmented independently (:class:`~mm3dkit.augment3d.
Augment3D`) and voxelised; positives are voxels whose world points are nearest neighbours within ``match_radius``
(registration by the known poses). Per batch ``num_pairs`` matches are sampled; the loss is PointInfoNCE
(:func:`mm3dkit.losses.point_infonce.point_infonce`) of the L2-normalised features of view 0 against those of view
1, the other sampled matches of the batch being the negatives.

Settings taken from PointContrast's released ScanNet pre-training script/config: Res16UNet34C, 2.5 cm voxels,
``npos = 4096`` sampled over the batch, ``nceT = 0.4``, batch 32, SGD lr 0.1, 20k iterations, 32-d output
(``model_n_out``), match radius 1.5 voxels (``positive_pair_search_voxel_size_multiplier``), pairs with >= 30 %
overlap among every 25th frame, overlap measured on 5 cm voxels.

Command line::

    python -m mm3dkit.methods.pointcontrast --profile quick --data data/synth --out runs/quick/pointcontrast

writes ``{out}/checkpoints/``, ``metrics.csv``, ``done.json`` and ``backbone.pth``.

Example:
    >>> PROFILES["paper"]["num_pairs"], PROFILES["paper"]["temperature"], PROFILES["paper"]["min_overlap"]
    (4096, 0.4, 0.3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mm3dkit.augment3d import Augment3D
from mm3dkit.losses.point_infonce import point_infonce
from mm3dkit.methods.pretrain3d import Backbone3DMethod, make_backbone, pretraining_main, run_pretraining
from mm3dkit.models.res16unet import Res16UNetBase
from mm3dkit.overlap import PairViewDataset, collate_pair_views, dataset_overlap_pairs

PROFILES: dict[str, dict[str, Any]] = {
    # CPU demo on the synthetic set: small U-Net, coarse voxels, fewer pairs, every 2nd frame.
    "quick": {
        "model": "Res16UNet14A", "feature_dim": 16, "voxel_size": 0.08, "num_pairs": 512, "temperature": 0.4,
        "match_radius_factor": 1.5, "frame_stride": 2, "overlap_voxel_size": 0.1, "min_overlap": 0.3,
        "max_overlap": 1.0, "max_scenes": None, "augment": True, "backend": "torch",
        "max_steps": 40, "batch_size": 2, "lr": 0.005, "optimizer": "adamw", "weight_decay": 1e-4,
        "scheduler": "cosine", "warmup_steps": 5, "num_workers": 0, "log_every": 5, "ckpt_every": 20, "seed": 0,
    },
    # PointContrast's ScanNet setting (see the module docstring).
    "paper": {
        "model": "Res16UNet34C", "feature_dim": 32, "voxel_size": 0.025, "num_pairs": 4096, "temperature": 0.4,
        "match_radius_factor": 1.5, "frame_stride": 25, "overlap_voxel_size": 0.05, "min_overlap": 0.3,
        "max_overlap": 1.0, "max_scenes": None, "augment": True, "backend": "auto",
        "max_steps": 20000, "batch_size": 32, "lr": 0.1, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1e-4,
        "scheduler": "poly", "warmup_steps": 0, "num_workers": 8, "log_every": 20, "ckpt_every": 500, "seed": 0,
    },
}


def sample_matches(n: int, num: int, device: torch.device | None = None) -> torch.Tensor:
    """Up to ``num`` distinct random rows of ``n`` (global torch RNG, restored on resume)."""
    return torch.randperm(n)[:num].to(device)


class PointContrast(Backbone3DMethod):
    """PointInfoNCE on matched voxels of two views (batch from :func:`mm3dkit.overlap.collate_pair_views`).

    Example:
        >>> from mm3dkit.models.res16unet import Res16UNet14A
        >>> PointContrast(Res16UNet14A(3, 16, backend="torch"), num_pairs=64).temperature
        0.4
    """

    method_name = "pointcontrast"

    def __init__(self, backbone: Res16UNetBase, num_pairs: int = 4096, temperature: float = 0.4):
        super().__init__(backbone)
        self.num_pairs, self.temperature = num_pairs, temperature

    def matched_features(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised features of both views and the match rows ``(M, 2)`` into them."""
        z0 = self.point_features(batch["coords0"], batch["feats0"], normalize=True)
        z1 = self.point_features(batch["coords1"], batch["feats1"], normalize=True)
        return z0, z1, batch["matches"].long()

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        z0, z1, matches = self.matched_features(batch)
        if len(matches) < 2:
            raise ValueError(f"batch {batch.get('names')} has {len(matches)} point matches; PointInfoNCE needs >= 2 "
                             "(check min_overlap and match_radius_factor)")
        sel = matches[sample_matches(len(matches), self.num_pairs, matches.device)]
        q, k = z0[sel[:, 0]], z1[sel[:, 1]]
        loss = point_infonce(q, k, self.temperature, normalize=False)
        with torch.no_grad():
            top1 = ((q @ k.T).argmax(1) == torch.arange(len(q), device=q.device)).float().mean()
        return {"loss": loss, "match_top1": top1, "pairs": torch.tensor(float(len(sel)))}

    def export_meta(self) -> dict[str, Any]:
        return {"num_pairs": self.num_pairs, "temperature": self.temperature}


def build_pair_dataset(settings: dict[str, Any], data_root: str | Path, split: str | None = "train") -> PairViewDataset:
    """Overlapping pairs of the ScanNet-layout frames at ``data_root`` (computed once, cached) as two-view items."""
    pairs = dataset_overlap_pairs(data_root, split=split, max_scenes=settings["max_scenes"],
                                  frame_stride=settings["frame_stride"], voxel_size=settings["overlap_voxel_size"],
                                  min_overlap=settings["min_overlap"], max_overlap=settings["max_overlap"])
    return PairViewDataset(pairs, settings["voxel_size"], Augment3D() if settings["augment"] else None,
                           match_radius=settings["match_radius_factor"] * settings["voxel_size"])


def run(settings: dict[str, Any], data_root: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Pre-train PointContrast and write ``{out_dir}/backbone.pth``."""
    torch.manual_seed(settings.get("seed", 0))
    method = PointContrast(make_backbone(settings), settings["num_pairs"], settings["temperature"])
    return run_pretraining(method, build_pair_dataset(settings, data_root), collate_pair_views, settings, out_dir)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m mm3dkit.methods.pointcontrast --profile quick --data DIR --out DIR [--set k=v ...]``."""
    return pretraining_main(argv, PROFILES, run, "PointContrast pre-training (two overlapping scans, PointInfoNCE)")


if __name__ == "__main__":
    main()
