"""Contrastive Scene Contexts (Hou et al., CVPR 2021): PointContrast with the negatives of each point partitioned
by relative direction and distance, one InfoNCE per partition (:mod:`mm3dkit.losses.csc_loss`).

Data, augmentation, matching and network are PointContrast's (:mod:`mm3dkit.methods.pointcontrast`). Per scan,
``num_pairs`` matches are sampled (CSC samples per scene, PointContrast per batch); the partitions are computed from
the matched points of view 0 in world coordinates (the un-augmented frame, z up, as CSC undoes its augmentation).

Settings from CSC's released sparse-conv pre-training script: Res16UNet34C, 2.5 cm voxels, 32-d output,
``npos = 4096`` per scan, ``nceT = 0.4``, ``shape_context`` with ``r1 = 2``, ``r2 = 20`` voxels (0.05 m, 0.5 m),
``nbins_xy = nbins_zy = 2`` (8 partitions), batch 32 (8 GPUs), SGD lr 0.1, 100k iterations.

Command line::

    python -m mm3dkit.methods.csc --profile quick --data data/synth --out runs/quick/csc

Example:
    >>> PROFILES["paper"]["r1"], PROFILES["paper"]["r2"], PROFILES["paper"]["n_azimuth"] * PROFILES["paper"]["n_polar"] * 2
    (0.05, 0.5, 8)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mm3dkit.losses.csc_loss import CSC_R1, CSC_R2, csc_loss
from mm3dkit.methods.pointcontrast import PROFILES as PC_PROFILES
from mm3dkit.methods.pointcontrast import PointContrast, build_pair_dataset
from mm3dkit.methods.pretrain3d import make_backbone, pretraining_main, run_pretraining
from mm3dkit.models.res16unet import Res16UNetBase
from mm3dkit.overlap import collate_pair_views
from mm3dkit.point_pixel import sample_pairs

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {**PC_PROFILES["quick"], "num_pairs": 256, "r1": CSC_R1, "r2": CSC_R2, "n_azimuth": 2, "n_polar": 2},
    "paper": {**PC_PROFILES["paper"], "r1": CSC_R1, "r2": CSC_R2, "n_azimuth": 2, "n_polar": 2,
              "max_steps": 100000},
}


class ContrastiveSceneContexts(PointContrast):
    """CSC loss on matched voxels of two views, per scan, averaged over the scans of the batch.

    Example:
        >>> from mm3dkit.models.res16unet import Res16UNet14A
        >>> ContrastiveSceneContexts(Res16UNet14A(3, 16, backend="torch")).partitions
        8
    """

    method_name = "csc"

    def __init__(self, backbone: Res16UNetBase, num_pairs: int = 4096, temperature: float = 0.4,
                 r1: float = CSC_R1, r2: float = CSC_R2, n_azimuth: int = 2, n_polar: int = 2):
        super().__init__(backbone, num_pairs, temperature)
        self.r1, self.r2, self.n_azimuth, self.n_polar = r1, r2, n_azimuth, n_polar

    @property
    def partitions(self) -> int:
        return 2 * self.n_azimuth * self.n_polar

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        z0, z1, matches = self.matched_features(batch)
        scan = batch["match_scan"].long()
        sel = sample_pairs(scan, self.num_pairs)  # per scan, global torch RNG
        losses = []
        for b in scan[sel].unique().tolist():  # one loss per scan (CSC iterates over the batch the same way)
            rows = matches[sel[scan[sel] == b]]
            if len(rows) < 2:
                continue
            losses.append(csc_loss(z0[rows[:, 0]], z1[rows[:, 1]], batch["world0"][rows[:, 0]], self.temperature,
                                   self.r1, self.r2, self.n_azimuth, self.n_polar))
        if not losses:
            raise ValueError(f"batch {batch.get('names')} has no scan with >= 2 point matches")
        return {"loss": torch.stack(losses).mean(), "pairs": torch.tensor(float(len(sel)))}

    def export_meta(self) -> dict[str, Any]:
        return {"num_pairs": self.num_pairs, "temperature": self.temperature, "r1": self.r1, "r2": self.r2,
                "n_azimuth": self.n_azimuth, "n_polar": self.n_polar}


def run(settings: dict[str, Any], data_root: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Pre-train CSC and write ``{out_dir}/backbone.pth``."""
    torch.manual_seed(settings.get("seed", 0))
    method = ContrastiveSceneContexts(make_backbone(settings), settings["num_pairs"], settings["temperature"],
                                      settings["r1"], settings["r2"], settings["n_azimuth"], settings["n_polar"])
    return run_pretraining(method, build_pair_dataset(settings, data_root), collate_pair_views, settings, out_dir)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m mm3dkit.methods.csc --profile quick --data DIR --out DIR [--set k=v ...]``."""
    return pretraining_main(argv, PROFILES, run, "Contrastive Scene Contexts pre-training (partitioned PointInfoNCE)")


if __name__ == "__main__":
    main()
