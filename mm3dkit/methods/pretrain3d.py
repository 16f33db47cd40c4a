"""Shared base of the 3D pre-training baselines (PointContrast, CSC, DepthContrast): the Res16UNet, aligned
per-voxel features, backbone export, and one command line for all.

Every baseline is a :class:`Backbone3DMethod` (a :class:`~mm3dkit.training.TrainableMethod` owning ``backbone``, a
Res16UNet whose ``final`` layer is the pre-training head) and is trained with the kit's :func:`~mm3dkit.training.fit`
(resume, checkpoints, DDP). At the end it writes ``{out}/backbone.pth`` with :func:`mm3dkit.backbone_io.save_backbone`,
the same file Stage 2 writes, so fine-tuning treats every pre-training the same way.

Example:
    >>> m = Backbone3DMethod(build_res16unet("Res16UNet14A", 3, 8, backend="torch"))
    >>> grid = torch.randint(0, 64, (300, 3), generator=torch.Generator().manual_seed(0)).unique(dim=0)
    >>> coords = torch.cat([torch.zeros(len(grid), 1, dtype=torch.long), grid], 1).int()  # one scan
    >>> m.point_features(coords, torch.rand(len(grid), 3)).shape == (len(grid), 8)
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mm3dkit.backbone_io import save_backbone
from mm3dkit.methods.stage2 import match_rows
from mm3dkit.models.res16unet import Res16UNetBase, build_res16unet
from mm3dkit.sparse import sparse_tensor
from mm3dkit.training import TrainableMethod, TrainConfig, fit
from mm3dkit.training.profiles import parse_args, train_config


class Backbone3DMethod(TrainableMethod):
    """A pre-training method around one Res16UNet ``backbone``; exports it as ``backbone.pth``.

    MinkowskiEngine kernels are fp32, hence ``supports_amp = False``.
    """

    supports_amp = False
    method_name = "pretrain3d"

    def __init__(self, backbone: Res16UNetBase):
        super().__init__()
        self.backbone = backbone

    def point_features(self, coords: torch.Tensor, feats: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Backbone output for every input voxel, in the input's row order (both sparse backends)."""
        out = self.backbone(sparse_tensor(feats.float(), coords, self.backbone.backend_name))
        z = out.F[match_rows(out.C, coords)].float()
        return F.normalize(z, dim=1) if normalize else z

    def export_meta(self) -> dict[str, Any]:
        """Settings written into ``backbone.pth``'s ``meta``."""
        return {}

    def export(self, out_dir: Path) -> dict[str, str]:
        meta = {"method": f"mm3dkit.{self.method_name}", **self.export_meta(),
                "head": "final = the pre-training head; re-initialise it downstream"}
        return {"backbone": str(save_backbone(self.backbone, Path(out_dir) / "backbone.pth", meta))}


def make_backbone(settings: dict[str, Any]) -> Res16UNetBase:
    """A fresh Res16UNet of ``settings['model']`` with ``settings['feature_dim']`` outputs (colour input)."""
    return build_res16unet(settings["model"], in_channels=3, out_channels=settings["feature_dim"],
                           backend=settings.get("backend"))


def run_pretraining(method: Backbone3DMethod, dataset: Dataset, collate_fn: Callable[[list[Any]], Any],
                    settings: dict[str, Any], out_dir: str | Path, cfg: TrainConfig | None = None) -> dict[str, Any]:
    """Train with :func:`fit` and return ``{"history", "artefacts", "backbone"}`` (``backbone``: path of the file)."""
    out = Path(out_dir)
    cfg = cfg or train_config(settings, str(out))
    result = fit(method, dataset, cfg, collate_fn=collate_fn)
    return {"history": result.history, "artefacts": result.artefacts, "backbone": str(out / "backbone.pth")}


def pretraining_main(argv: list[str] | None, profiles: dict[str, dict[str, Any]],
                     run: Callable[[dict[str, Any], str, str], dict[str, Any]], description: str) -> dict[str, Any]:
    """``--profile/--data/--out/--set`` command line shared by the baselines; ``run(settings, data, out)``."""
    args = parse_args(argv, profiles, description=description)
    if args.data is None:
        raise SystemExit("--data is required (a ScanNet-layout folder, e.g. data/synth)")
    report = run(args.settings, args.data, args.out)
    last = report["history"][-1] if report.get("history") else {}
    print(json.dumps({"backbone": report.get("backbone"), "last_metrics": last}, indent=2))
    return report


__all__ = ["Backbone3DMethod", "make_backbone", "pretraining_main", "run_pretraining"]
