"""Features of one RGB-D frame from the pre-trained networks, for pictures (Figure 2) and per-frame checks.

Thin glue over :mod:`mm3dkit.methods.stage2` (no feature extraction of its own): :func:`build_feature_method` puts
the frozen Stage-1 2D network and a 3D network (random initialisation, or the weights of a Stage-2 checkpoint /
``backbone.pth``) into a :class:`~mm3dkit.methods.stage2.Stage2Distill`; :func:`frame_features` runs it on one frame
through Stage 2's own dataset/collate/``pair_features`` path, so the pictures show exactly the features Stage 2
trains and evaluates; :func:`frame_agreement` is Stage 2's retrieval metric on that frame.

Example:
    >>> from torch import nn
    >>> from mm3dkit.models.res16unet import Res16UNet14A
    >>> from mm3dkit.synth import generate_scene
    >>> from mm3dkit.methods.stage2 import Stage2Distill
    >>> frame = generate_scene(0, n_frames=1, width=32, height=24).frames[0]
    >>> m = Stage2Distill(nn.Conv2d(3, 8, 1), Res16UNet14A(3, 8, backend="torch"))
    >>> ff = frame_features(m, frame, voxel_size=0.1)
    >>> ff.point_feats.shape[1], ff.pixel_map.shape[2], ff.point_feats.shape == ff.pixel_feats.shape
    (8, 8, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mm3dkit.data.types import Frame
from mm3dkit.errors import CheckpointError


@dataclass
class FrameFeatures:
    """Features of one frame. ``image (H, W, 3)`` uint8 input colour; ``pixel_map (h, w, C)`` the 2D network's
    L2-normalised feature map; per voxel (one point per voxel): ``points (M, 3)`` (the voxel's point, world
    coordinates for posed frames, z up; voxel coordinates x voxel size if not ``dense``), ``point_colors (M, 3)``
    in [0, 1], ``point_feats (M, C)`` the 3D network's and
    ``pixel_feats (M, C)`` the 2D features at each point's pixel (both L2-normalised, row-aligned). With ``dense``:
    every back-projected pixel ``dense_points (P, 3)`` (world coordinates), ``dense_colors (P, 3)`` and its voxel row
    ``dense_voxel (P,)``, so pictures can show all points, each with its voxel's feature (:meth:`dense`)."""

    image: np.ndarray
    pixel_map: torch.Tensor
    points: torch.Tensor
    point_colors: torch.Tensor
    point_feats: torch.Tensor
    pixel_feats: torch.Tensor
    name: str = ""
    dense_points: torch.Tensor | None = None
    dense_colors: torch.Tensor | None = None
    dense_voxel: torch.Tensor | None = None

    def dense(self, per_voxel: torch.Tensor) -> torch.Tensor:
        """Spread per-voxel values ``(M, ...)`` (features, colours) to every back-projected point ``(P, ...)``."""
        if self.dense_voxel is None:
            raise ValueError("these features were computed with dense=False")
        return per_voxel[self.dense_voxel.to(per_voxel.device)]


def _backbone_arch(path: Path, default: str) -> str:
    """The 3D architecture named in a ``backbone.pth`` (``arch``), else in one beside a Stage-2 run, else ``default``."""
    from mm3dkit.training.checkpoint import load_checkpoint

    for candidate in (path, path.parent.parent / "backbone.pth", path.parent / "backbone.pth"):
        if candidate.is_file():
            obj = load_checkpoint(candidate)
            if isinstance(obj, dict) and isinstance(obj.get("arch"), str):
                return obj["arch"]
    return default


def build_feature_method(stage1_checkpoint: str | Path, stage2_checkpoint: str | Path | None = None,
                         settings: dict[str, Any] | None = None, seed: int = 0,
                         device: str | torch.device = "cpu"):
    """Frozen Stage-1 teacher + a 3D network, in eval mode on ``device``.

    Without ``stage2_checkpoint`` the 3D network keeps its random initialisation (seeded with ``seed``; the global
    RNG is left untouched), i.e. "before pre-training". With it (``{run}/stage2/checkpoints/final.pt`` or
    ``backbone.pth``) all weights, head included, are loaded: the head produces the distilled 2D feature size.
    ``settings`` defaults to Stage 2's ``quick`` profile (its ``model`` names the architecture unless the file does).
    Missing or unusable files raise :class:`CheckpointError` naming the file.
    """
    from mm3dkit.backbone_io import load_backbone
    from mm3dkit.methods.stage2 import PROFILES, Stage2Distill, load_stage1_teacher, teacher_feature_dim
    from mm3dkit.models.res16unet import build_res16unet

    settings = dict(settings or PROFILES["quick"])
    if not Path(stage1_checkpoint).is_file():
        raise CheckpointError(stage1_checkpoint, "no such file (run Stage 1 first)")
    teacher = load_stage1_teacher(stage1_checkpoint)
    dim = teacher_feature_dim(teacher)
    arch = settings["model"]
    if stage2_checkpoint is not None:
        stage2_checkpoint = Path(stage2_checkpoint)
        if not stage2_checkpoint.is_file():
            raise CheckpointError(stage2_checkpoint, "no such file (run Stage 2 first)")
        arch = _backbone_arch(stage2_checkpoint, arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = build_res16unet(arch, in_channels=3, out_channels=dim, backend=settings.get("backend"))
    if stage2_checkpoint is not None:
        load_backbone(stage2_checkpoint, backbone, strict_head=True)
    method = Stage2Distill(teacher, backbone, settings.get("num_pairs", 4096))
    return method.to(device).eval()


@torch.no_grad()
def frame_features(method, frame: Frame, voxel_size: float, image_size: Sequence[int] | None = None,
                   dense: bool = True) -> FrameFeatures:
    """2D and 3D features of one frame through Stage 2's path (no augmentation; eval mode).

    ``voxel_size`` and ``image_size`` as in the Stage-2 settings the network was trained with. ``dense`` also
    returns every back-projected point with the row of its voxel (voxels are sparse at training voxel sizes).
    """
    from mm3dkit.geometry import voxelize
    from mm3dkit.methods.stage2 import Stage2Dataset, collate_stage2, scan_pairs

    dataset = Stage2Dataset([frame], voxel_size, None, image_size)
    item = dataset[0]
    extra: dict[str, torch.Tensor] = {}
    if dense:
        # the dataset's own steps without augmentation: same points, same voxels, same row order
        fp = scan_pairs(frame, None, dataset.world, min_points=dataset.min_points)
        vox = voxelize(fp.points, voxel_size)
        if not torch.equal((vox.coords - vox.coords.min(0).values).int(), item["coords"]):
            raise RuntimeError("dense points do not match Stage 2's voxels (did Stage2Dataset change?)")
        extra = {"dense_points": fp.points, "dense_colors": fp.colors, "dense_voxel": vox.inverse}
    points = fp.points[vox.index] if dense else item["coords"].float() * voxel_size
    batch = collate_stage2([item])
    device = next(method.backbone.parameters()).device
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    was_training = method.training
    method.eval()
    z3, z2, _ = method.pair_features(batch)
    fmap = F.normalize(method.pixel_features(batch["images"])[0], dim=0).permute(1, 2, 0)
    method.train(was_training)
    feats = item["feats"]
    return FrameFeatures(image=np.ascontiguousarray(frame.color), pixel_map=fmap.cpu(),
                         points=points, point_colors=(feats + 0.5).clamp(0, 1),
                         point_feats=z3.cpu(), pixel_feats=z2.cpu(), name=frame.name, **extra)


def frame_agreement(ff: FrameFeatures, num_pairs: int | None = 1024, seed: int = 0) -> dict[str, float]:
    """2D-3D agreement on one frame: Stage 2's retrieval metric (top-1 point->pixel retrieval among ``num_pairs``
    sampled pairs, chance = 1 / pairs, and mean cosine of true pairs); ``num_pairs=None`` uses every voxel.

    Example:
        >>> z = F.normalize(torch.randn(50, 8), dim=1)
        >>> ff = FrameFeatures(np.zeros((2, 2, 3), np.uint8), torch.zeros(2, 2, 8), torch.zeros(50, 3),
        ...                    torch.zeros(50, 3), z, z)
        >>> frame_agreement(ff, num_pairs=10)
        {'top1': 1.0, 'mean_cosine': 1.0, 'chance': 0.1}
    """
    from mm3dkit.losses.point_infonce import retrieval_metrics
    from mm3dkit.point_pixel import sample_pairs

    n = len(ff.point_feats)
    rows = torch.arange(n) if num_pairs is None else sample_pairs(torch.zeros(n, dtype=torch.long), num_pairs,
                                                                  torch.Generator().manual_seed(seed))
    m = retrieval_metrics(ff.point_feats[rows], ff.pixel_feats[rows])
    return {k: round(v, 6) for k, v in m.items()}
