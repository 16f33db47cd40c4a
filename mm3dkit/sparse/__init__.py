"""One sparse-tensor API (MinkowskiEngine's names) with two backends: ``minkowski`` and pure-PyTorch ``torch``.

Choose with the environment variable ``MM3DKIT_SPARSE_BACKEND`` (``torch``, ``minkowski`` or ``auto``: MinkowskiEngine
when it imports, else torch) or in code with :func:`set_backend`; models call :func:`backend` when they are built, so
a model's layers come from one backend. Both backends use the same kernel-offset order and weight layout, so a
``state_dict`` moves between them unchanged (``tests/test_sparse_parity.py``).

Example:
    >>> ME = backend("torch")
    >>> x = ME.SparseTensor(torch.ones(2, 3), ME.batched_coordinates([torch.tensor([[0, 0, 0], [0, 0, 1]])]))
    >>> ME.MinkowskiConvolution(3, 5, kernel_size=3, dimension=3)(x).F.shape
    torch.Size([2, 5])
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import torch

from mm3dkit.sparse import torch_backend

_NAMES = ("SparseTensor", "MinkowskiConvolution", "MinkowskiConvolutionTranspose", "MinkowskiBatchNorm",
          "MinkowskiReLU", "MinkowskiLeakyReLU", "MinkowskiDropout", "MinkowskiLinear", "MinkowskiGlobalAvgPooling",
          "MinkowskiGlobalMaxPooling", "cat")
_current: str | None = None


def minkowski_available() -> bool:
    try:
        import MinkowskiEngine  # noqa: F401
    except Exception:  # ImportError, or a broken build raising OSError/AttributeError at import
        return False
    return True


def _resolve(name: str | None) -> str:
    name = (name or _current or os.environ.get("MM3DKIT_SPARSE_BACKEND", "auto")).lower()
    if name == "auto":
        return "minkowski" if minkowski_available() else "torch"
    if name not in ("torch", "minkowski"):
        raise ValueError(f"unknown sparse backend {name!r}; use 'torch', 'minkowski' or 'auto'")
    if name == "minkowski" and not minkowski_available():
        raise ImportError("sparse backend 'minkowski' was requested but MinkowskiEngine does not import here; "
                          "build it with `make minkowski` (scripts/build_minkowski.sh) or use "
                          "MM3DKIT_SPARSE_BACKEND=torch")
    return name


def set_backend(name: str) -> str:
    """Set the default backend for models built from now on; returns the resolved name."""
    global _current
    _current = _resolve(name)
    return _current


def backend_name(name: str | None = None) -> str:
    return _resolve(name)


def backend(name: str | None = None) -> SimpleNamespace:
    """The backend's namespace: ``SparseTensor``, ``MinkowskiConvolution``, ..., ``cat``, ``batched_coordinates``,
    ``sparse_quantize`` and ``name``."""
    resolved = _resolve(name)
    if resolved == "torch":
        ns = {n: getattr(torch_backend, n) for n in _NAMES}
        ns.update(batched_coordinates=torch_backend.batched_coordinates, sparse_quantize=torch_backend.sparse_quantize)
    else:
        import MinkowskiEngine as ME

        ns = {n: getattr(ME, n) for n in _NAMES}
        ns.update(batched_coordinates=ME.utils.batched_coordinates, sparse_quantize=torch_backend.sparse_quantize)
    return SimpleNamespace(name=resolved, **ns)


def sparse_tensor(features: torch.Tensor, coordinates: torch.Tensor, name: str | None = None):
    """Build a sparse tensor of the given (or default) backend; coordinates (N, 4) int with the batch index first."""
    ME = backend(name)
    if ME.name == "minkowski":
        return ME.SparseTensor(features, coordinates.int().to(features.device))
    return ME.SparseTensor(features, coordinates.to(features.device))


__all__ = ["backend", "backend_name", "minkowski_available", "set_backend", "sparse_tensor"]


def replace_features(x, features: torch.Tensor):
    """A sparse tensor on ``x``'s coordinates with new features (works for both backends)."""
    if hasattr(x, "replace_feature"):
        return x.replace_feature(features)
    import MinkowskiEngine as ME

    return ME.SparseTensor(features, coordinate_map_key=x.coordinate_map_key, coordinate_manager=x.coordinate_manager)


__all__ += ["replace_features"]
