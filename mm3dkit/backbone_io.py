"""Save and load the pre-trained 3D backbone (Res16UNet) in a file both the kit and PointContrast / CSC read.

File layout (``backbone.pth``)::

    {"state_dict": {...Res16UNet keys: conv0p1s1.kernel, bn0.bn.weight, ..., final.kernel, final.bias},
     "arch": "Res16UNet34C", "in_channels": 3, "out_channels": 16, "format": "mm3dkit-backbone/1", "meta": {...}}

PointContrast's and CSC's fine-tuning scripts read ``torch.load(weights)["state_dict"]`` (or ``"model_state"``)
and copy the entries whose name and shape match their Res16UNet, after removing a DDP ``module.`` prefix, so this
file drops into their pipelines; :func:`load_backbone` accepts their checkpoints (and the kit's own training
checkpoints, whose method wraps the network in e.g. ``backbone.``) the same way.

The ``final`` 1x1 convolution is the head: the paper re-initialises it downstream, so by default a head of another
shape (another number of classes) is skipped and keeps the model's fresh initialisation.

Example:
    >>> import tempfile, pathlib
    >>> from mm3dkit.models.res16unet import Res16UNet14A
    >>> net = Res16UNet14A(3, 16, backend="torch")
    >>> path = save_backbone(net, pathlib.Path(tempfile.mkdtemp()) / "backbone.pth")
    >>> report = load_backbone(path, Res16UNet14A(3, 20, backend="torch"))  # new head: 20 classes
    >>> report.skipped_head, report.missing
    (['final.bias', 'final.kernel'], [])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mm3dkit.errors import CheckpointError
from mm3dkit.training.checkpoint import load_checkpoint, save_atomic

FORMAT = "mm3dkit-backbone/1"
HEAD_PREFIX = "final."


@dataclass
class LoadReport:
    """What :func:`load_backbone` did: keys ``loaded``, head keys skipped (kept fresh), unexpected keys ignored,
    and model keys ``missing`` from the file (empty unless only the head was missing), plus the stripped prefix."""

    loaded: list[str] = field(default_factory=list)
    skipped_head: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    prefix: str = ""


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def save_backbone(model: nn.Module, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s state_dict (CPU tensors) in the layout above, atomically; returns ``path``."""
    model = _unwrap(model)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"state_dict": state, "arch": type(model).__name__, "format": FORMAT, "meta": dict(meta or {}),
           "in_channels": getattr(model, "in_channels", None), "out_channels": getattr(model, "out_channels", None)}
    save_atomic(obj, path)
    return Path(path)


def extract_state_dict(obj: dict[str, Any], source: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: its ``state_dict``, ``model_state`` or ``model`` entry, or itself."""
    for key in ("state_dict", "model_state", "model"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(source, f"holds no tensors (top-level keys: {sorted(obj)[:10]}); expected a "
                              "'state_dict' of a Res16UNet")
    return state


def _best_prefix(keys: list[str], model_keys: set[str]) -> str:
    """The key prefix (e.g. ``module.``, ``backbone.``, ``module.model.``) whose removal matches most model keys."""
    counts: Counter[str] = Counter()
    for k in keys:
        for mk in model_keys:
            if k == mk or k.endswith("." + mk):
                counts[k[: len(k) - len(mk)]] += 1
    if not counts:
        return ""
    return max(counts.items(), key=lambda kv: (kv[1], kv[0] == ""))[0]


def load_backbone(path: str | Path, model: nn.Module, strict_head: bool = False,
                  map_location: str | torch.device = "cpu") -> LoadReport:
    """Load a backbone file (the kit's, PointContrast's or CSC's layout) into ``model`` (a Res16UNet).

    Every non-head parameter/buffer of ``model`` must be in the file with the same shape, else
    :class:`CheckpointError` names the file and the first offending keys. The head (``final.*``) is loaded when
    its shape matches; otherwise (or when absent) it is skipped, unless ``strict_head`` makes that an error.
    """
    model = _unwrap(model)
    state = extract_state_dict(load_checkpoint(path, map_location), path)
    own = model.state_dict()
    prefix = _best_prefix(list(state), set(own))
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    report = LoadReport(prefix=prefix, unexpected=sorted(set(state) - set(own)))
    to_load: dict[str, torch.Tensor] = {}
    bad: list[str] = []
    for key, ref in own.items():
        head = key.startswith(HEAD_PREFIX)
        if key not in state:
            (report.skipped_head if head and not strict_head else report.missing).append(key)
        elif tuple(state[key].shape) != tuple(ref.shape):
            if head and not strict_head:
                report.skipped_head.append(key)
            else:
                bad.append(f"{key}: file {tuple(state[key].shape)} vs model {tuple(ref.shape)}")
        else:
            to_load[key] = state[key]
    name = type(model).__name__
    if bad:
        raise CheckpointError(path, f"shape mismatch for {name} ({len(bad)} keys), e.g. {bad[:3]}; is it another "
                              "architecture or channel count?")
    if report.missing:
        raise CheckpointError(path, f"{len(report.missing)} of {len(own)} {name} keys are missing, e.g. "
                              f"{report.missing[:3]} (file keys look like {list(state)[:3]})")
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    report.skipped_head.sort()
    return report
