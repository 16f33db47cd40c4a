"""Exceptions raised by mm3dkit for bad input: each names the file (or object) and what is wrong."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad or missing input data.

    Example:
        >>> raise DataError("scene0000_00/depth/0.png", "depth must be uint16 millimetres, got uint8")
        Traceback (most recent call last):
        ...
        mm3dkit.errors.DataError: scene0000_00/depth/0.png: depth must be uint16 millimetres, got uint8
    """

    def __init__(self, source: str | Path, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for the requested model (missing, corrupt, wrong shape)."""

    def __init__(self, source: str | Path, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
