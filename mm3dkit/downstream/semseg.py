"""Semantic (and PointGroup-style instance) segmentation with a Res16UNet: voxelised scenes, the trainable method,
and predictions carried back to every point of a scene.

* :class:`SceneVoxels`: training/evaluation items from :class:`Scene` records: voxel ``coords``, ``feats`` (colour
  - 0.5, PointContrast's input), per-voxel ``labels`` (only points inside the label budget count; a voxel takes the
  label of a labelled point in it) and, for instances, per-voxel ``offsets`` to the instance centre;
* :class:`SegmentationMethod`: the Res16UNet (initialised from a backbone file or scratch, new ``final`` head) +
  cross-entropy with :data:`IGNORE_LABEL`, and optionally an offset head trained with an L1 loss (PointGroup);
* :func:`predict_scene`: per-point class probabilities (and offsets) of a whole scene through the voxelisation's
  inverse map.

Example:
    >>> import numpy as np
    >>> from mm3dkit.data.types import Scene
    >>> rng = np.random.default_rng(0)
    >>> scene = Scene(rng.random((500, 3)).astype(np.float32), np.zeros((500, 3), np.uint8),
    ...               (rng.random(500) * 3).astype(np.int64), name="toy")
    >>> method = SegmentationMethod("Res16UNet14A", num_classes=3, backend="torch")
    >>> pred = predict_scene(method, scene, voxel_size=0.1)
    >>> pred.probs.shape
    torch.Size([500, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from mm3dkit.augment3d import Augment3D
from mm3dkit.backbone_io import LoadReport, load_backbone
from mm3dkit.data.types import IGNORE_LABEL, Scene
from mm3dkit.downstream.label_budget import LabelBudget
from mm3dkit.errors import DataError
from mm3dkit.geometry import voxelize
from mm3dkit.methods.stage2 import match_rows
from mm3dkit.models.res16unet import build_res16unet
from mm3dkit.sparse import sparse_tensor
from mm3dkit.training.trainer import TrainableMethod


class SceneVoxels(Dataset):
    """Voxelised scenes for segmentation training/evaluation.

    ``budget`` (a :class:`LabelBudget` with labelled points, or ``None`` = all points) restricts which points' labels
    are used. With ``instances=True`` items also carry ``offsets`` (voxel -> centre of its instance, computed after
    augmentation) and ``has_offset``.
    """

    def __init__(self, scenes: Sequence[Scene], voxel_size: float, augment: Augment3D | None = None,
                 budget: LabelBudget | None = None, instances: bool = False):
        self.scenes, self.voxel_size = scenes, voxel_size
        self.augment = augment or Augment3D.identity()
        self.budget = budget
        self.instances = instances

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int) -> dict[str, Any]:
        scene = self.scenes[i]
        if scene.semantic is None:
            raise DataError(scene.name, "scene has no semantic labels; it cannot be used for fine-tuning")
        pts = torch.from_numpy(np.asarray(scene.points, np.float32))
        cols = torch.from_numpy(np.asarray(scene.colors)).float() / 255.0
        sem = torch.from_numpy(np.asarray(scene.semantic)).long()
        mask = self.budget.label_mask(scene) if self.budget is not None else None
        if mask is not None:
            sem = torch.where(torch.from_numpy(mask), sem, torch.full_like(sem, IGNORE_LABEL))
        aug = self.augment(pts, cols)
        vox = voxelize(aug.points, self.voxel_size * aug.voxel_scale)
        sem = sem[aug.keep]
        # a voxel's label: a labelled point inside it wins over unlabelled ones (amax; IGNORE_LABEL is negative)
        labels = torch.full((len(vox.coords),), IGNORE_LABEL, dtype=torch.long)
        labels.scatter_reduce_(0, vox.inverse, sem, reduce="amax")
        item = {"coords": (vox.coords - vox.coords.min(0).values).int(), "feats": aug.colors[vox.index] - 0.5,
                "labels": labels, "name": scene.name}
        if self.instances:
            item.update(_instance_offsets(scene, aug.keep, aug.points, vox, sem))
        return item


def _instance_offsets(scene: Scene, keep: torch.Tensor, points: torch.Tensor, vox, sem: torch.Tensor) -> dict:
    """Offset of each voxel's point to its instance centre (mean of the instance's points after augmentation).

    Only voxels whose kept point is itself labelled (inside the label budget) get a target (``has_offset``); the
    centre is that of the whole annotated instance (a point's instance annotation is taken to include its centre).
    """
    inst = torch.from_numpy(np.asarray(scene.instance if scene.instance is not None
                                       else np.full(len(scene), -1))).long()[keep]
    n_inst = int(inst.max()) + 2 if inst.numel() else 1
    slot = inst + 1  # slot 0 = no instance
    sums = torch.zeros(n_inst, 3).index_add_(0, slot, points.float())
    counts = torch.zeros(n_inst).index_add_(0, slot, torch.ones(len(slot)))
    centres = sums / counts.clamp(min=1)[:, None]
    kept_slot = slot[vox.index]
    offsets = centres[kept_slot] - points[vox.index].float()
    return {"offsets": offsets, "has_offset": (sem[vox.index] != IGNORE_LABEL) & (kept_slot > 0)}


def collate_voxels(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items: ``coords (N, 4)`` with the scene index first; other tensors concatenated."""
    coords = torch.cat([torch.cat([torch.full((len(it["coords"]), 1), b, dtype=torch.int32), it["coords"]], 1)
                        for b, it in enumerate(items)])
    out: dict[str, Any] = {"coords": coords, "names": [it["name"] for it in items]}
    for key in items[0]:
        if key not in ("coords", "name"):
            out[key] = torch.cat([it[key] for it in items])
    return out


class SegmentationMethod(TrainableMethod):
    """Res16UNet with a fresh ``num_classes`` head (+ an offset head when ``offset_head``), trained with
    cross-entropy (``ignore_index=IGNORE_LABEL``) and, for instances, the L1 offset loss of PointGroup.

    ``init``: ``None``/``"scratch"`` or a backbone file (the kit's ``backbone.pth``, PointContrast/CSC checkpoints),
    loaded with :func:`mm3dkit.backbone_io.load_backbone` (head skipped). :attr:`load_report` says what was loaded.
    """

    supports_amp = False  # MinkowskiEngine kernels are fp32

    def __init__(self, model: str, num_classes: int, in_channels: int = 3, offset_head: bool = False,
                 init: str | Path | None = None, backend: str | None = None, offset_weight: float = 1.0):
        super().__init__()
        self.net = build_res16unet(model, in_channels=in_channels, out_channels=num_classes, backend=backend)
        self.num_classes = num_classes
        self.load_report: LoadReport | None = None
        if init is not None and str(init) != "scratch":
            self.load_report = load_backbone(init, self.net)
        dim = self.net.feature_dim
        self.offset = (nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(), nn.Linear(dim, 3))
                       if offset_head else None)
        self.offset_weight = offset_weight
        self.criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_LABEL)

    def outputs(self, coords: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-voxel logits ``(M, C)`` (and offsets ``(M, 3)``) in the row order of ``coords``."""
        x = sparse_tensor(feats, coords, self.net.backend_name)
        f = self.net.forward_features(x)
        rows = match_rows(f.C, coords.to(f.F.device))
        logits = self.net.final(f).F[rows]
        offsets = self.offset(f.F)[rows] if self.offset is not None else None
        return logits, offsets

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits, offsets = self.outputs(batch["coords"], batch["feats"])
        labels = batch["labels"]
        labelled = labels != IGNORE_LABEL
        if not labelled.any():  # a batch without labelled voxels (tiny budgets): a zero loss keeping the graph
            ce = logits.sum() * 0.0
        else:
            ce = self.criterion(logits, labels)
        acc = (logits.argmax(1)[labelled] == labels[labelled]).float().mean() if labelled.any() else ce.detach()
        out = {"loss": ce, "ce": ce.detach(), "acc": acc.detach()}
        if offsets is not None:
            m = batch["has_offset"]
            l1 = (offsets[m] - batch["offsets"][m]).abs().sum(1).mean() if m.any() else offsets.sum() * 0.0
            out["loss"] = ce + self.offset_weight * l1
            out["offset_l1"] = l1.detach()
        return out


@dataclass
class ScenePrediction:
    """Per-point outputs for a whole scene: class ``probs (N, C)``, ``labels (N,)``, ``offsets (N, 3)`` or None."""

    probs: torch.Tensor
    labels: torch.Tensor
    offsets: torch.Tensor | None


@torch.no_grad()
def predict_scene(method: SegmentationMethod, scene: Scene, voxel_size: float) -> ScenePrediction:
    """Run the network on the un-augmented voxelised scene and give every point its voxel's prediction."""
    was_training = method.training
    method.eval()
    device = next(method.parameters()).device
    pts = torch.from_numpy(np.asarray(scene.points, np.float32))
    vox = voxelize(pts, voxel_size)
    coords = torch.cat([torch.zeros(len(vox.coords), 1, dtype=torch.int32),
                        (vox.coords - vox.coords.min(0).values).int()], 1).to(device)
    feats = (torch.from_numpy(np.asarray(scene.colors)).float()[vox.index] / 255.0 - 0.5).to(device)
    logits, offsets = method.outputs(coords, feats)
    method.train(was_training)
    inv = vox.inverse.to(device)
    probs = logits.softmax(1)[inv].cpu()
    return ScenePrediction(probs=probs, labels=probs.argmax(1),
                           offsets=offsets[inv].cpu() if offsets is not None else None)
