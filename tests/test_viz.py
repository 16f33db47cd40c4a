"""Figures (mm3dkit.viz): static PNGs are not blank, HTML is standalone/offline, PLY round trip, downsampling."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mm3dkit.errors import DataError
from mm3dkit.viz import (Panel, plotly_panels, point_cloud_trace, read_ply, save_static_panels, subsample_indices,
                         to_uint8, view_from_pose, write_html, write_ply)

REPO_FIGURES = Path(__file__).resolve().parents[1] / "figures"
NOTEBOOK_FIGURES = ("heatmap_a_image.png", "heatmap_b_point_vs_pixel.png", "heatmap_c_before_after.png")


def assert_not_blank(path: Path, min_std: float = 10.0, min_colours: int = 50) -> None:
    """A real picture: pixel values spread out and many distinct colours (not one flat colour / all white)."""
    assert path.is_file() and path.stat().st_size > 0, path
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 50 and img.shape[1] > 50, img.shape
    assert img.std() > min_std, f"{path}: pixel std {img.std():.1f}"
    n_colours = len(np.unique(img.reshape(-1, 3), axis=0))
    assert n_colours >= min_colours, f"{path}: only {n_colours} distinct colours"


def gradient_panels(n_points: int = 3000) -> list[Panel]:
    rng = np.random.default_rng(0)
    h, w = 40, 60
    img = np.stack([*np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h)), np.full((h, w), 0.5)], -1)
    pts = rng.random((n_points, 3))
    return [Panel("image", image=img), Panel("points", points=pts, colors=pts, view=(25.0, -50.0))]


def test_static_png_is_not_blank(tmp_path):
    path = save_static_panels(gradient_panels(), tmp_path / "sub" / "fig.png", title="test")
    assert_not_blank(path)


def test_blank_check_rejects_a_flat_picture(tmp_path):
    Image.fromarray(np.full((80, 80, 3), 255, np.uint8)).save(tmp_path / "white.png")
    with pytest.raises(AssertionError, match="pixel std"):
        assert_not_blank(tmp_path / "white.png")


def test_html_is_standalone_with_embedded_plotly(tmp_path):
    fig = plotly_panels(gradient_panels(), max_points=500)
    assert [t.type for t in fig.data] == ["image", "scatter3d"]
    assert len(fig.data[1].x) == 500
    path = write_html(fig, tmp_path / "fig.html")
    text = path.read_text()
    assert path.stat().st_size > 1_000_000  # plotly.js (~3.5 MB) is inside the file
    assert not re.search(r"<script[^>]*\ssrc=", text)  # no external script (CDN): opens offline


def test_point_cloud_trace_downsamples_and_colours():
    pts = np.random.default_rng(0).random((2000, 3))
    tr = point_cloud_trace(pts, np.ones((2000, 3)), max_points=100)
    assert len(tr.x) == 100 and tr.marker.color[0] == "rgb(255,255,255)"
    assert len(point_cloud_trace(pts, pts, max_points=None).x) == 2000
    idx = subsample_indices(2000, 100, seed=3)
    assert len(np.unique(idx)) == 100 and np.all(np.diff(idx) > 0)


def test_ply_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pts, col = rng.random((500, 3)), rng.random((500, 3))
    path = write_ply(tmp_path / "cloud.ply", pts, col)
    p2, c2 = read_ply(path)
    assert np.allclose(p2, pts, atol=1e-6)
    assert np.allclose(c2, to_uint8(col) / 255.0, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        write_ply(tmp_path / "bad.ply", pts, col[:10])
    with pytest.raises(DataError, match="missing.ply"):
        read_ply(tmp_path / "missing.ply")


def test_panel_validation():
    with pytest.raises(ValueError, match="either an image or points"):
        Panel("empty")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        Panel("gray", image=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="colors"):
        Panel("pts", points=np.zeros((4, 3)), colors=np.zeros((3, 3)))


def test_view_from_pose_looks_along_the_camera():
    pose = np.eye(4)
    pose[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]  # camera +z = world +y (horizontal), y down = world -z
    elev, azim = view_from_pose(pose, lift_deg=0.0)
    assert elev == pytest.approx(0.0) and azim == pytest.approx(-90.0)  # viewer on the -y side looking to +y
    assert view_from_pose(None) == (30.0, -60.0)


@pytest.mark.parametrize("name", NOTEBOOK_FIGURES)
def test_notebook_figures_are_not_blank(name):
    """The PNGs notebooks/03_feature_heatmaps.ipynb writes (checked when a run has made them)."""
    path = REPO_FIGURES / name
    if not path.is_file():
        pytest.skip(f"{path} not made yet: run notebooks/03_feature_heatmaps.ipynb (papermill) first")
    assert_not_blank(path)
