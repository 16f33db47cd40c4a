"""Where things live: paths in notebooks and configs are relative to the project root, whatever the working directory.

Jupyter, nbval and papermill start kernels in different folders (nbval: the notebook's folder). Notebooks call
:func:`project_path` on their ``data_dir``/``run_dir``/``figures_dir`` parameters so a relative path means the same
place in every case. Outside a checkout (an installed kit) the current directory is the root.

Example:
    >>> project_path("/tmp/abs").as_posix()
    '/tmp/abs'
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding this kit's ``pyproject.toml``; else cwd.

    ``MM3DKIT_ROOT`` overrides the search.
    """
    if os.environ.get("MM3DKIT_ROOT"):
        return Path(os.environ["MM3DKIT_ROOT"]).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "mm3dkit"' in pyproject.read_text(errors="ignore"):
            return folder
    return Path.cwd().resolve()


def project_path(path: str | Path) -> Path:
    """``path`` if absolute, else ``project_root() / path``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p
