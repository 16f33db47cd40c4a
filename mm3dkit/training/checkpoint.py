"""Atomic checkpoint files: a checkpoint on disk is either the old one or the new one, never half of each.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "last.pt"
    >>> save_atomic({"step": 3}, p)
    >>> load_checkpoint(p)["step"]
    3
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from mm3dkit.errors import CheckpointError


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync it, then ``os.replace`` onto ``path``.

    ``os.replace`` is atomic on POSIX and Windows when source and target are on one file system, so a crash
    (or a killed job) leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (or any ``torch.save`` dict), with a clear error if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupt / truncated / not a torch file
        raise CheckpointError(path, f"cannot be read as a torch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"expected a dict checkpoint, got {type(obj).__name__}")
    return obj
