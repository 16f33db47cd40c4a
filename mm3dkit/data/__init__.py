"""Frames, scenes, dataset readers and the synthetic generator's on-disk layout."""

from mm3dkit.data.types import IGNORE_LABEL, Frame, Scene

__all__ = ["IGNORE_LABEL", "Frame", "Scene"]
