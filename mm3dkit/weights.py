"""ImageNet weights for the ResNet encoders, offline: the local torch cache or a file, never a download.

Example:
    >>> try:
    ...     imagenet_state_dict("resnet18", "imagenet", cache_dir="/nonexistent")
    ... except WeightsUnavailable as err:
    ...     print("copy" in str(err))
    True
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision import models

from mm3dkit.errors import CheckpointError

_WEIGHTS = {"resnet18": models.ResNet18_Weights.IMAGENET1K_V1, "resnet34": models.ResNet34_Weights.IMAGENET1K_V1,
            "resnet50": models.ResNet50_Weights.IMAGENET1K_V1}


class WeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but are neither in the local torch cache nor at a given path."""


def cached_weights_path(arch: str, cache_dir: str | Path | None = None) -> Path:
    """Where torchvision would have cached ``arch``'s ImageNet weights (``<torch hub dir>/checkpoints/<file>``)."""
    if arch not in _WEIGHTS:
        raise KeyError(f"no ImageNet weights known for {arch!r}; choose one of {sorted(_WEIGHTS)}")
    folder = Path(cache_dir) if cache_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    return folder / Path(_WEIGHTS[arch].url).name


def imagenet_state_dict(arch: str, source: str | Path = "imagenet", cache_dir: str | Path | None = None
                        ) -> dict[str, torch.Tensor] | None:
    """The ImageNet ``state_dict`` of a torchvision ResNet, or ``None`` for ``source="none"`` (random init).

    ``source``: ``"imagenet"`` reads torchvision's file from the local torch cache; a path reads that file. The kit
    never downloads at run time (training machines are often offline): a missing file raises
    :class:`WeightsUnavailable` with the URL to fetch and the path to copy it to.
    """
    if str(source).lower() == "none":
        return None
    path = cached_weights_path(arch, cache_dir) if str(source).lower() == "imagenet" else Path(source)
    if not path.is_file():
        url = _WEIGHTS[arch].url if arch in _WEIGHTS else "(torchvision's ImageNet weights)"
        raise WeightsUnavailable(
            f"ImageNet weights for {arch} not found at {path}. mm3dkit does not download weights at run time: "
            f"download {url} on a machine with internet access and copy it to {path}, or pass "
            f"pretrained='/path/to/{Path(url).name}', or pretrained='none' to start from random weights.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(path, f"cannot be read as a torch state_dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state
