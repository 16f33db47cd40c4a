"""Shared test helpers (pytest fixtures)."""

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest


def _folder_digest(folder: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def folder_digest() -> Callable[[Path], str]:
    """Content digest of a folder tree, to compare generated data sets byte for byte."""
    return _folder_digest
