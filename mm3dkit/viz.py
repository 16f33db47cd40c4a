"""Figures of images and coloured point clouds: interactive (plotly), static (matplotlib PNG) and PLY files (Open3D).

A figure is a row of :class:`Panel` s, each an RGB image or a coloured point cloud. The same panels give

* :func:`plotly_panels` - an interactive plotly figure (``go.Image`` for images, ``Scatter3d`` for points,
  downsampled to ``max_points`` so a browser stays smooth), saved by :func:`write_html` as one standalone file with
  plotly.js embedded (opens offline, no CDN);
* :func:`save_static_panels` - a PNG drawn with matplotlib (works on any machine; kaleido's plotly export needs a
  Chrome, so it is only an option: :func:`try_write_image`);
* :func:`write_ply` - a coloured PLY any point-cloud viewer opens (MeshLab, CloudCompare, Open3D).

Example:
    >>> import tempfile, pathlib
    >>> rng = np.random.default_rng(0)
    >>> panels = [Panel("image", image=rng.random((8, 10, 3))),
    ...           Panel("points", points=rng.random((100, 3)), colors=rng.random((100, 3)))]
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> save_static_panels(panels, out / "fig.png").is_file(), write_html(plotly_panels(panels), out / "f.html").is_file()
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

DEFAULT_MAX_POINTS = 50_000
"""Points drawn per interactive cloud: WebGL scatter stays fluid in a browser up to roughly this size."""


def _np(x: ArrayLike | None) -> np.ndarray | None:
    if x is None:
        return None
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def to_uint8(rgb: ArrayLike) -> np.ndarray:
    """Float RGB in [0, 1] (clipped) or uint8 -> uint8 RGB of the same shape."""
    a = _np(rgb)
    if a.dtype == np.uint8:
        return a
    return (np.clip(a.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def subsample_indices(n: int, max_points: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` rows (all when ``n <= max_points``), seeded.

    Example:
        >>> subsample_indices(10, 3).shape, subsample_indices(2, 3).tolist()
        ((3,), [0, 1])
    """
    if max_points is None or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


@dataclass
class Panel:
    """One picture of a figure: an ``image (H, W, 3)`` or ``points (N, 3)`` with ``colors (N, 3)``.

    Colours are float in [0, 1] or uint8. ``view`` = ``(elev, azim)`` in degrees for point clouds (see
    :func:`view_from_pose`); ``None`` picks a default oblique view.
    """

    title: str
    image: ArrayLike | None = None
    points: ArrayLike | None = None
    colors: ArrayLike | None = None
    view: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if (self.image is None) == (self.points is None):
            raise ValueError(f"panel {self.title!r}: give either an image or points (with colors)")
        if self.image is not None:
            img = _np(self.image)
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"panel {self.title!r}: image must be (H, W, 3), got {img.shape}")
        else:
            pts, col = _np(self.points), _np(self.colors)
            if pts.ndim != 2 or pts.shape[1] != 3:
                raise ValueError(f"panel {self.title!r}: points must be (N, 3), got {pts.shape}")
            if col is None or col.shape != pts.shape:
                raise ValueError(f"panel {self.title!r}: colors must be (N, 3) like points {pts.shape}, "
                                 f"got {None if col is None else col.shape}")

    @property
    def is_image(self) -> bool:
        return self.image is not None


def view_from_pose(pose: ArrayLike | None, lift_deg: float = 20.0) -> tuple[float, float]:
    """``(elev, azim)`` in degrees looking the way a camera (4x4 camera-to-world, OpenCV axes) looks, from a little
    higher (``lift_deg``), so a single scan is seen from where it was captured. Default view when ``pose`` is None.

    Example:
        >>> pose = np.eye(4); pose[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # looks along +x, z up
        >>> view_from_pose(pose)  # seen from -x, 20 degrees above the camera's line of sight
        (20.0, 180.0)
    """
    if pose is None:
        return 30.0, -60.0
    forward = _np(pose)[:3, 2].astype(np.float64)  # camera +z axis in the world
    eye = -forward / max(np.linalg.norm(forward), 1e-12) + 0.0  # viewer direction (matplotlib); + 0.0: no -0.0
    elev = math.degrees(math.asin(float(np.clip(eye[2], -1.0, 1.0)))) + lift_deg
    azim = math.degrees(math.atan2(eye[1], eye[0]))
    return round(float(np.clip(elev, -89.0, 89.0)), 6), round(azim, 6)


# ---------------------------------------------------------------------------------------------------------------
# interactive (plotly)


def _rgb_strings(colors: np.ndarray) -> list[str]:
    c = to_uint8(colors)
    return [f"rgb({r},{g},{b})" for r, g, b in c.tolist()]


def point_cloud_trace(points: ArrayLike, colors: ArrayLike, max_points: int | None = DEFAULT_MAX_POINTS,
                      marker_size: float = 1.5, name: str = "points", seed: int = 0):
    """A plotly ``Scatter3d`` of the coloured points, downsampled to ``max_points``."""
    import plotly.graph_objects as go

    pts, col = _np(points), _np(colors)
    idx = subsample_indices(len(pts), max_points, seed)
    p = pts[idx]
    return go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name=name, hoverinfo="skip",
                        marker={"size": marker_size, "color": _rgb_strings(_np(col)[idx]), "line": {"width": 0}})


def _eye(view: tuple[float, float] | None, distance: float = 1.8) -> dict[str, float]:
    elev, azim = view if view is not None else view_from_pose(None)
    e, a = math.radians(elev), math.radians(azim)
    return {"x": distance * math.cos(e) * math.cos(a), "y": distance * math.cos(e) * math.sin(a),
            "z": distance * math.sin(e)}


def plotly_panels(panels: Sequence[Panel], max_points: int | None = DEFAULT_MAX_POINTS, marker_size: float = 1.5,
                  height: int = 480, title: str | None = None):
    """A plotly figure with the panels side by side (images as ``go.Image``, clouds as 3D scatters)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    specs = [[{"type": "xy"} if p.is_image else {"type": "scene"} for p in panels]]
    fig = make_subplots(rows=1, cols=len(panels), specs=specs, subplot_titles=[p.title for p in panels],
                        horizontal_spacing=0.02)
    scene_i = 0
    for col, p in enumerate(panels, start=1):
        if p.is_image:
            fig.add_trace(go.Image(z=to_uint8(p.image), hoverinfo="skip"), row=1, col=col)
            fig.update_xaxes(visible=False, row=1, col=col)
            fig.update_yaxes(visible=False, scaleanchor=f"x{'' if col == 1 else col}", row=1, col=col)
        else:
            fig.add_trace(point_cloud_trace(p.points, p.colors, max_points, marker_size, p.title), row=1, col=col)
            scene_i += 1
            key = "scene" if scene_i == 1 else f"scene{scene_i}"
            fig.update_layout({key: {"aspectmode": "data", "camera": {"eye": _eye(p.view), "up": {"x": 0, "y": 0,
                                                                                                   "z": 1}},
                                     "xaxis": {"visible": False}, "yaxis": {"visible": False},
                                     "zaxis": {"visible": False}}})
    fig.update_layout(height=height, width=max(420, 420 * len(panels)), showlegend=False, title=title,
                      margin={"l": 10, "r": 10, "t": 60 if title else 40, "b": 10})
    return fig


def write_html(fig, path: str | Path, include_plotlyjs: bool | str = True) -> Path:
    """Save a plotly figure as standalone HTML; ``include_plotlyjs=True`` embeds plotly.js (opens offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs=include_plotlyjs, full_html=True)
    return path


def try_write_image(fig, path: str | Path, scale: float = 2.0) -> bool:
    """Optional static export through kaleido (needs a Chrome/Chromium); ``False`` instead of an error if missing."""
    try:
        fig.write_image(str(path), scale=scale)
    except Exception:  # noqa: BLE001 - kaleido raises assorted errors when no browser is available
        return False
    return Path(path).is_file()


# ---------------------------------------------------------------------------------------------------------------
# static (matplotlib)


def save_static_panels(panels: Sequence[Panel], path: str | Path, max_points: int | None = 40_000,
                       point_size: float | None = None, panel_size: float = 4.0, dpi: int = 120,
                       title: str | None = None) -> Path:
    """Draw the panels side by side with matplotlib (Agg, no display needed) and save a PNG; returns ``path``.

    Point clouds are drawn as 3D scatters (equal axis scale, axes hidden) seen from each panel's ``view``;
    ``point_size`` (matplotlib ``s``) defaults to a size that covers the panel at the drawn number of points.
    """
    import matplotlib.pyplot as plt  # headless machines fall back to the Agg backend by themselves

    fig = plt.figure(figsize=(panel_size * len(panels), panel_size * 0.85))
    for i, p in enumerate(panels, start=1):
        if p.is_image:
            ax = fig.add_subplot(1, len(panels), i)
            ax.imshow(to_uint8(p.image))
            ax.set_axis_off()
        else:
            ax = fig.add_subplot(1, len(panels), i, projection="3d")
            pts, col = _np(p.points), to_uint8(p.colors)
            idx = subsample_indices(len(pts), max_points)
            q = pts[idx]
            size = point_size if point_size is not None else float(np.clip(3.0e4 / max(len(q), 1), 0.3, 30.0))
            ax.scatter(q[:, 0], q[:, 1], q[:, 2], c=col[idx] / 255.0, s=size, marker="o", linewidths=0,
                       depthshade=False)
            span = np.ptp(q, axis=0) if len(q) else np.ones(3)
            ax.set_box_aspect(tuple(np.maximum(span, 1e-6 * max(span.max(), 1e-12))), zoom=1.3)
            elev, azim = p.view if p.view is not None else view_from_pose(None)
            ax.view_init(elev=elev, azim=azim)
            ax.set_axis_off()
        ax.set_title(p.title, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path, dpi=dpi, facecolor="white")


def save_figure(fig, path: str | Path, dpi: int = 120, **savefig_kwargs) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; returns the path.

    Example:
        >>> import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot as plt, tempfile
        >>> save_figure(plt.figure(), Path(tempfile.mkdtemp()) / "a" / "f.png").is_file()
        True
    """
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, **savefig_kwargs)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------
# point-cloud files (Open3D)


def write_ply(path: str | Path, points: ArrayLike, colors: ArrayLike) -> Path:
    """Write a coloured point cloud (colours float [0, 1] or uint8) as a binary PLY with Open3D; returns ``path``.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_ply(pathlib.Path(tempfile.mkdtemp()) / "c.ply", np.zeros((4, 3)), np.ones((4, 3)))
        >>> read_ply(p)[0].shape
        (4, 3)
    """
    import open3d as o3d

    pts, col = _np(points).astype(np.float64), to_uint8(colors).astype(np.float64) / 255.0
    if pts.ndim != 2 or pts.shape[1] != 3 or col.shape != pts.shape:
        raise ValueError(f"points and colors must both be (N, 3), got {pts.shape} and {col.shape}")
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    cloud.colors = o3d.utility.Vector3dVector(col)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not o3d.io.write_point_cloud(str(path), cloud, write_ascii=False):
        raise OSError(f"{path}: Open3D could not write the point cloud")
    return path


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(points (N, 3) float64, colors (N, 3) float64 in [0, 1])`` of a PLY file (Open3D)."""
    import open3d as o3d

    from mm3dkit.errors import DataError

    if not Path(path).is_file():
        raise DataError(path, "no such file")
    cloud = o3d.io.read_point_cloud(str(path))
    return np.asarray(cloud.points), np.asarray(cloud.colors)
