"""Overlapping frame pairs of RGB-D sequences and their point correspondences (PointContrast / CSC input).

PointContrast and CSC train on two *partial scans* of one scene: frames of one RGB-D sequence (every 25th ScanNet
frame) whose back-projected point clouds overlap by at least 30 %, with corresponding points found after registering
both scans with the known camera poses. Their preprocessing compares every pair of frames with a KD-tree, one point
at a time (hours per scene). Here the overlap is computed for all pairs of a sequence at once:

1. back-project each frame's depth (every ``pixel_stride``-th pixel) to world coordinates with its pose and hash the
   points into ``voxel_size`` voxels (one int64 key per occupied voxel, ``torch.unique``);
2. a sparse frame x voxel incidence matrix ``A``; ``A @ A.T`` holds the shared-voxel count of every pair;
3. overlap ratio of ``(i, j)`` = the larger of the two directed ratios, as PointContrast's
   ``max(overlap0, overlap1)``; a directed ratio is the fraction of one frame's voxels with an occupied voxel of the
   other frame within one voxel (a second incidence matrix of the 26-neighbour-dilated voxel sets), which is
   PointContrast's "neighbour within 1.5 voxels after 5 cm downsampling" up to voxel-boundary effects
   (``dilate=False``: identical voxels only).

The selected pairs of a scene are cached in ``<scene>/mm3dkit_overlap.json`` (or under ``cache_dir`` when the data
folder is read-only), keyed by every parameter that changes the result, so later runs skip the computation.

Correspondences (:func:`correspondences`): for each point of scan 0 its nearest point of scan 1 within ``radius``
(world coordinates, i.e. registered with the known poses), found with SciPy's KD-tree. PointContrast's radius is
1.5 x the 2.5 cm training voxel size.

Example:
    >>> keys = [torch.tensor([1, 2, 3, 4]), torch.tensor([3, 4, 5, 6]), torch.tensor([9])]
    >>> overlap_matrix(keys).tolist()
    [[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> select_pairs(overlap_matrix(keys), min_overlap=0.3)
    [(0, 1, 0.5)]
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy.spatial import cKDTree
from torch.utils.data import Dataset

from mm3dkit.augment3d import Augment3D
from mm3dkit.data.scannet import read_depth_png, read_frame, read_matrix, scene_dirs
from mm3dkit.errors import DataError
from mm3dkit.geometry import back_project, resize_intrinsics, voxelize
from mm3dkit.point_pixel import frame_points

CACHE_NAME = "mm3dkit_overlap.json"
CACHE_VERSION = 1
_BITS = 21  # per axis in a packed voxel key: +-2^20 voxels (+-52 km at 5 cm)


@dataclass(frozen=True)
class FramePair:
    """Two frames ``frame0 < frame1`` (file indices) of the scene folder ``scene`` and their overlap ratio."""

    scene: str
    frame0: int
    frame1: int
    overlap: float


# ----------------------------------------------------------------------------------------------------------------
# overlap of all frame pairs


def voxel_keys(points: torch.Tensor, voxel_size: float) -> torch.Tensor:
    """Sorted unique int64 keys of the voxels occupied by ``points (N, 3)`` (one key per voxel).

    Example:
        >>> voxel_keys(torch.tensor([[0.01, 0, 0], [0.02, 0, 0], [0.3, 0, 0]]), 0.1).numel()
        2
    """
    g = torch.floor(points / voxel_size).long() + (1 << (_BITS - 1))
    if len(g) and (g.min() < 0 or g.max() >= (1 << _BITS)):
        raise ValueError(f"points lie too far from the origin for voxel keys at voxel_size={voxel_size}")
    return torch.unique((g[:, 0] << (2 * _BITS)) | (g[:, 1] << _BITS) | g[:, 2])


def dilate_keys(keys: torch.Tensor) -> torch.Tensor:
    """Keys of the voxels within one voxel (26-neighbourhood and itself) of the given ones.

    Example:
        >>> dilate_keys(voxel_keys(torch.zeros(1, 3), 0.1)).numel()
        27
    """
    r = torch.tensor([-1, 0, 1], device=keys.device)
    d = torch.cartesian_prod(r, r, r)
    offs = (d[:, 0] << (2 * _BITS)) + (d[:, 1] << _BITS) + d[:, 2]  # packed fields never borrow: coords are offset
    return torch.unique((keys[:, None] + offs[None, :]).reshape(-1))


def _incidence(keys: Sequence[torch.Tensor], col: torch.Tensor, n_cols: int) -> torch.Tensor:
    sizes = torch.tensor([len(k) for k in keys], device=col.device)
    row = torch.repeat_interleave(torch.arange(len(keys), device=col.device), sizes)
    return torch.sparse_coo_tensor(torch.stack([row, col]), torch.ones(len(col), device=col.device),
                                   (len(keys), n_cols), check_invariants=False).coalesce()


def overlap_matrix(keys: Sequence[torch.Tensor], dilated: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """``(F, F)`` overlap ratios of frames given their unique voxel keys (0 where a frame is empty).

    Without ``dilated``: shared voxels / occupied voxels of the smaller frame. With ``dilated`` (each frame's
    :func:`dilate_keys`): ``max(|V_i in D_j| / |V_i|, |V_j in D_i| / |V_j|)``, i.e. the fraction of voxels with an
    occupied voxel of the other frame within one voxel - PointContrast's "neighbour within 1.5 voxels" after
    downsampling. One sparse matrix product for all pairs (no Python loop over pairs or points).
    """
    n = len(keys)
    if n == 0:
        return torch.zeros(0, 0)
    device = keys[0].device
    sizes = torch.tensor([len(k) for k in keys], device=device, dtype=torch.float32)
    other = list(dilated) if dilated is not None else list(keys)
    allk = torch.cat([k.long() for k in keys] + [k.long() for k in other])
    if allk.numel() == 0:
        return torch.zeros(n, n, device=device)
    _, col = torch.unique(allk, return_inverse=True)
    n_cols = int(col.max()) + 1
    m = sum(len(k) for k in keys)
    A = _incidence(keys, col[:m], n_cols)
    B = _incidence(other, col[m:], n_cols)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        shared = torch.sparse.mm(A, B.t()).to_dense()  # shared[i, j] = |V_i in D_j|
    if dilated is None:
        ratio = shared / torch.minimum(sizes[:, None], sizes[None, :]).clamp(min=1)
    else:
        directed = shared / sizes[:, None].clamp(min=1)
        ratio = torch.maximum(directed, directed.T)
        ratio.fill_diagonal_(1.0)
    empty = (sizes == 0)
    return ratio.masked_fill(empty[:, None] | empty[None, :], 0.0)


def select_pairs(ratios: torch.Tensor, min_overlap: float = 0.3, max_overlap: float = 1.0) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, ratio)`` with ``i < j`` and ``min_overlap <= ratio <= max_overlap``, ordered by ``(i, j)``."""
    upper = torch.triu(torch.ones_like(ratios, dtype=torch.bool), diagonal=1)
    ok = upper & (ratios >= min_overlap) & (ratios <= max_overlap)
    ij = torch.nonzero(ok)
    return [(int(i), int(j), round(float(ratios[i, j]), 6)) for i, j in ij.tolist()]


def _depth_intrinsics(scene_dir: Path, depth_shape: tuple[int, int]) -> np.ndarray:
    """The depth camera's 3x3 intrinsics (``intrinsic_depth.txt``, else the colour ones rescaled)."""
    if (scene_dir / "intrinsic" / "intrinsic_depth.txt").is_file():
        return read_matrix(scene_dir / "intrinsic" / "intrinsic_depth.txt")[:3, :3]
    colour_files = sorted((scene_dir / "color").glob("*.jpg"))
    if not colour_files:
        raise DataError(scene_dir / "intrinsic", "no intrinsic_depth.txt and no colour image to rescale "
                        "intrinsic_color.txt from")
    with Image.open(colour_files[0]) as im:  # header only
        size = (im.height, im.width)
    K = read_matrix(scene_dir / "intrinsic" / "intrinsic_color.txt")[:3, :3]
    return resize_intrinsics(K, size, depth_shape).numpy()


def sequence_frames(scene_dir: str | Path, frame_stride: int = 25) -> list[int]:
    """File indices of every ``frame_stride``-th frame of a SensReader export that has a finite pose."""
    d = Path(scene_dir)
    ids = sorted(int(p.stem) for p in (d / "depth").glob("*.png"))
    if not ids:
        raise DataError(d / "depth", "no depth frames (expected depth/N.png)")
    keep = []
    for i in ids[::frame_stride]:
        pose_file = d / "pose" / f"{i}.txt"
        if pose_file.is_file() and np.isfinite(read_matrix(pose_file)).all():
            keep.append(i)
    return keep


def frame_voxel_keys(scene_dir: str | Path, index: int, voxel_size: float = 0.05, pixel_stride: int = 2,
                     K: np.ndarray | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
    """Voxel keys of one frame's back-projected depth in world coordinates (depth + pose only; no colour decoding)."""
    d = Path(scene_dir)
    depth = read_depth_png(d / "depth" / f"{index}.png")
    K = _depth_intrinsics(d, depth.shape) if K is None else K
    pose = read_matrix(d / "pose" / f"{index}.txt")
    s = max(1, int(pixel_stride))
    Ks = K.copy()
    Ks[:2] /= s  # pixel (r*s, c*s) of the full image is pixel (r, c) of the strided one (top-left aligned)
    pts, _ = back_project(torch.from_numpy(np.ascontiguousarray(depth[::s, ::s])).to(device), Ks, pose)
    return voxel_keys(pts, voxel_size)


def _cache_key(params: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _cache_file(scene_dir: Path, cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir) / f"{scene_dir.name}_{hashlib.sha1(str(scene_dir.resolve()).encode()).hexdigest()[:8]}_{CACHE_NAME}"
    return scene_dir / CACHE_NAME


def _read_cache(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # a corrupt cache is recomputed and rewritten
    return data if isinstance(data, dict) and data.get("version") == CACHE_VERSION else {}


def _write_cache(path: Path, data: dict[str, Any]) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".overlap", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
        return True
    except OSError:
        return False


def scene_overlap_pairs(scene_dir: str | Path, frame_stride: int = 25, voxel_size: float = 0.05,
                        min_overlap: float = 0.3, max_overlap: float = 1.0, pixel_stride: int = 2,
                        dilate: bool = True, cache: bool = True, cache_dir: str | Path | None = None,
                        device: str | torch.device = "cpu") -> list[FramePair]:
    """Frame pairs of one scene with overlap in ``[min_overlap, max_overlap]`` (PointContrast: >= 0.3, 5 cm voxels,
    every 25th frame), computed for all pairs at once and cached next to the data.

    ``dilate`` counts a voxel as overlapping when the other frame occupies it or one of its 26 neighbours
    (PointContrast's 1.5-voxel neighbour test); ``False`` counts identical voxels only.
    The cache (``<scene>/mm3dkit_overlap.json``) is keyed by all parameters and the list of usable frames; when the
    scene folder is not writable it goes to ``cache_dir`` (default ``~/.cache/mm3dkit/overlap``).
    """
    d = Path(scene_dir)
    frames = sequence_frames(d, frame_stride)
    params = {"frames": frames, "voxel_size": voxel_size, "min_overlap": min_overlap, "max_overlap": max_overlap,
              "pixel_stride": pixel_stride, "dilate": dilate}
    key = _cache_key(params)
    path = _cache_file(d, cache_dir)
    if cache:
        for candidate in (path, _cache_file(d, Path.home() / ".cache" / "mm3dkit" / "overlap")):
            hit = _read_cache(candidate).get("entries", {}).get(key)
            if hit is not None:
                return [FramePair(str(d), *p) for p in hit["pairs"]]
    first = read_depth_png(d / "depth" / f"{frames[0]}.png")
    K = _depth_intrinsics(d, first.shape)
    keys = [frame_voxel_keys(d, i, voxel_size, pixel_stride, K, device) for i in frames]
    ratios = overlap_matrix(keys, [dilate_keys(k) for k in keys] if dilate else None)
    pairs = [(frames[i], frames[j], r) for i, j, r in select_pairs(ratios, min_overlap, max_overlap)]
    if cache:
        entry = {"params": {k: v for k, v in params.items() if k != "frames"}, "n_frames": len(frames),
                 "pairs": pairs}
        data = _read_cache(path) or {"version": CACHE_VERSION, "scene": d.name, "entries": {}}
        data["entries"][key] = entry
        if not _write_cache(path, data):
            fallback = _cache_file(d, Path.home() / ".cache" / "mm3dkit" / "overlap") if cache_dir is None else None
            if fallback is not None:
                data2 = _read_cache(fallback) or {"version": CACHE_VERSION, "scene": d.name, "entries": {}}
                data2["entries"][key] = entry
                _write_cache(fallback, data2)
    return [FramePair(str(d), *p) for p in pairs]


def dataset_overlap_pairs(root: str | Path, split: str | None = "train", max_scenes: int | None = None,
                          **kwargs: Any) -> list[FramePair]:
    """:func:`scene_overlap_pairs` for every scene folder of a ScanNet-layout dataset (``kwargs`` passed on).

    Raises :class:`DataError` naming ``root`` when no scene has an overlapping pair.
    """
    pairs: list[FramePair] = []
    for d in scene_dirs(root, split)[:max_scenes]:
        if (d / "depth").is_dir():
            pairs += scene_overlap_pairs(d, **kwargs)
    if not pairs:
        raise DataError(root, f"no frame pairs with overlap >= {kwargs.get('min_overlap', 0.3)} found; lower "
                        "min_overlap or frame_stride, or check the poses")
    return pairs


# ----------------------------------------------------------------------------------------------------------------
# correspondences and the two-view dataset


def correspondences(points0: torch.Tensor | np.ndarray, points1: torch.Tensor | np.ndarray,
                    radius: float) -> torch.Tensor:
    """``(M, 2)`` int64 rows ``(i, j)``: point ``j`` of scan 1 is the nearest to point ``i`` of scan 0 and closer
    than ``radius`` (both in the same, registered, coordinates).

    Example:
        >>> correspondences(torch.tensor([[0.0, 0, 0], [5, 0, 0]]), torch.tensor([[0.01, 0, 0], [1, 0, 0]]), 0.05)
        tensor([[0, 0]])
    """
    p0 = np.asarray(points0.detach().cpu() if isinstance(points0, torch.Tensor) else points0, dtype=np.float64)
    p1 = np.asarray(points1.detach().cpu() if isinstance(points1, torch.Tensor) else points1, dtype=np.float64)
    if len(p0) == 0 or len(p1) == 0:
        return torch.zeros(0, 2, dtype=torch.long)
    # SciPy's KD-tree: vectorised C search, no reason to hand-write a radius search here
    dist, j = cKDTree(p1).query(p0, k=1, distance_upper_bound=radius)
    i = np.nonzero(np.isfinite(dist))[0]
    return torch.from_numpy(np.stack([i, j[i]], 1).astype(np.int64))


@dataclass
class View:
    """One augmented, voxelised scan: ``coords (M, 3)`` int32, ``feats (M, 3)`` colour - 0.5, ``world (M, 3)`` the
    voxels' points in world coordinates before augmentation."""

    coords: torch.Tensor
    feats: torch.Tensor
    world: torch.Tensor


def make_view(points: torch.Tensor, colors: torch.Tensor, voxel_size: float, augment: Augment3D) -> View:
    """Augment (rotation, scale, dropout, colour...) and voxelise one scan; keeps each voxel's original point."""
    aug = augment(points, colors)
    vox = voxelize(aug.points, voxel_size * aug.voxel_scale)
    return View(coords=(vox.coords - vox.coords.min(0).values).int(), feats=aug.colors[vox.index] - 0.5,
                world=points[aug.keep[vox.index]])


class PairViewDataset(Dataset):
    """PointContrast / CSC items: two overlapping frames, independently augmented and voxelised, with the voxel
    correspondences found in world coordinates (nearest neighbour within ``match_radius``).

    Item: ``coords0/feats0/world0``, ``coords1/feats1``, ``matches (M, 2)`` (voxel of view 0, voxel of view 1).
    ``frames`` optionally maps ``(scene, index)`` to a :class:`Frame` (tests, in-memory data); by default frames are
    read from the ScanNet-layout scene folders.
    """

    def __init__(self, pairs: Sequence[FramePair], voxel_size: float, augment: Augment3D | None = None,
                 match_radius: float | None = None, frames: dict[tuple[str, int], Any] | None = None,
                 min_points: int = 16):
        self.pairs, self.voxel_size = list(pairs), voxel_size
        self.augment = augment or Augment3D.identity()
        self.match_radius = match_radius if match_radius is not None else 1.5 * voxel_size
        self.frames, self.min_points = frames, min_points

    def __len__(self) -> int:
        return len(self.pairs)

    def _frame(self, scene: str, index: int):
        if self.frames is not None:
            return self.frames[(scene, index)]
        return read_frame(scene, index, with_labels=False)

    def __getitem__(self, i: int) -> dict[str, Any]:
        pair = self.pairs[i]
        views = []
        for index in (pair.frame0, pair.frame1):
            fp = frame_points(self._frame(pair.scene, index), world=True, min_points=self.min_points)
            views.append(make_view(fp.points, fp.colors, self.voxel_size, self.augment))
        v0, v1 = views
        return {"coords0": v0.coords, "feats0": v0.feats, "world0": v0.world, "coords1": v1.coords,
                "feats1": v1.feats, "matches": correspondences(v0.world, v1.world, self.match_radius),
                "name": f"{Path(pair.scene).name}/{pair.frame0}-{pair.frame1}"}


def _batched(coords: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([torch.cat([torch.full((len(c), 1), b, dtype=torch.int32), c.int()], 1)
                      for b, c in enumerate(coords)])


def collate_pair_views(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch pair items: ``coords0/coords1 (N, 4)`` with the pair index first, concatenated features and world
    points, ``matches (M, 2)`` shifted to the batch's rows and ``match_scan (M,)`` the pair of each match."""
    off0 = torch.tensor([0] + [len(it["coords0"]) for it in items]).cumsum(0)
    off1 = torch.tensor([0] + [len(it["coords1"]) for it in items]).cumsum(0)
    matches = torch.cat([it["matches"] + torch.stack([off0[b], off1[b]]) for b, it in enumerate(items)])
    scan = torch.cat([torch.full((len(it["matches"]),), b, dtype=torch.long) for b, it in enumerate(items)])
    return {"coords0": _batched([it["coords0"] for it in items]), "feats0": torch.cat([it["feats0"] for it in items]),
            "world0": torch.cat([it["world0"] for it in items]),
            "coords1": _batched([it["coords1"] for it in items]), "feats1": torch.cat([it["feats1"] for it in items]),
            "matches": matches, "match_scan": scan, "names": [it["name"] for it in items]}


__all__ = ["FramePair", "PairViewDataset", "View", "collate_pair_views", "correspondences", "dataset_overlap_pairs",
           "dilate_keys", "frame_voxel_keys", "make_view", "overlap_matrix", "scene_overlap_pairs", "select_pairs",
           "sequence_frames", "voxel_keys"]
