"""Overlap computation for PointContrast / CSC pairs: the kit's vectorised voxel-hash overlap vs per-pair KD-trees.

For one synthetic RGB-D sequence of F frames it times

* ``ours``: :func:`mm3dkit.overlap.scene_overlap_pairs` without cache (depth reading + back-projection + voxel keys +
  26-neighbour dilation + one sparse ``A @ B.T`` for all F x F pairs) and ``ours matrix`` (dilation + product);
* ``cached``: the same call once its json cache exists;
* ``kdtree/pair``: PointContrast's definition (5 cm voxel downsampling, fraction of points with a neighbour within
  1.5 voxels, max of both directions) with a SciPy KD-tree query per pair (vectorised within a pair);
* ``o3d loop``: the original preprocessing style, Open3D ``KDTreeFlann.search_radius_vector_3d`` called once per
  point in Python, timed on ``--loop-pairs`` pairs and extrapolated linearly to all pairs (marked ``~``);

and reports how often the >= 30 % selection of ours agrees with the KD-tree definition.

    python benchmarks/bench_overlap.py                    # F = 10, 20, 40 at 320x240
    python benchmarks/bench_overlap.py --frames 20 80 --device cuda
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import open3d as o3d
import torch
from scipy.spatial import cKDTree

from mm3dkit import overlap
from mm3dkit.data.scannet import read_depth_png, read_matrix
from mm3dkit.geometry import back_project
from mm3dkit.synth import generate_dataset


def world_points(scene: Path, index: int, K: np.ndarray, pixel_stride: int) -> np.ndarray:
    depth = read_depth_png(scene / "depth" / f"{index}.png")[::pixel_stride, ::pixel_stride]
    Ks = K.copy()
    Ks[:2] /= pixel_stride
    pts, _ = back_project(torch.from_numpy(np.ascontiguousarray(depth)), Ks, read_matrix(scene / "pose" / f"{index}.txt"))
    return pts.numpy().astype(np.float64)


def downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    return np.asarray(pcd.voxel_down_sample(voxel).points)


def kdtree_matrix(clouds: list[np.ndarray], radius: float) -> np.ndarray:
    """PointContrast's overlap definition, one vectorised SciPy query per ordered pair."""
    n = len(clouds)
    trees = [cKDTree(c) for c in clouds]
    frac = np.eye(n)
    for i in range(n):
        for j in range(n):
            if i != j:
                d, _ = trees[i].query(clouds[j], k=1, distance_upper_bound=radius)
                frac[i, j] = np.isfinite(d).mean()
    return np.maximum(frac, frac.T)


def o3d_loop_pair(c0: np.ndarray, c1: np.ndarray, radius: float) -> float:
    """One pair the original way: a Python loop over points, one Open3D radius search each (both directions)."""
    out = []
    for a, b in ((c0, c1), (c1, c0)):
        tree = o3d.geometry.KDTreeFlann(o3d.geometry.PointCloud(o3d.utility.Vector3dVector(b)))
        hits = 0
        for p in a:
            k, _, _ = tree.search_radius_vector_3d(p, radius)
            hits += k > 0
        out.append(hits / len(a))
    return max(out)


def bench(frames: int, width: int, height: int, voxel: float, pixel_stride: int, loop_pairs: int,
          device: str, root: Path) -> dict[str, str]:
    data = generate_dataset(root / f"f{frames}", n_scenes=1, n_frames=frames, width=width, height=height,
                            progress=False)
    scene = data / "scans" / "scene0000_00"
    kw = dict(frame_stride=1, voxel_size=voxel, min_overlap=0.3, pixel_stride=pixel_stride, device=device)
    t = time.perf_counter()
    pairs = overlap.scene_overlap_pairs(scene, cache=False, **kw)
    t_ours = time.perf_counter() - t
    overlap.scene_overlap_pairs(scene, cache=True, **kw)  # writes the cache
    t = time.perf_counter()
    overlap.scene_overlap_pairs(scene, cache=True, **kw)
    t_cached = time.perf_counter() - t
    ids = overlap.sequence_frames(scene, 1)
    K = read_matrix(scene / "intrinsic" / "intrinsic_depth.txt")[:3, :3]
    keys = [overlap.frame_voxel_keys(scene, i, voxel, pixel_stride, K, device) for i in ids]
    t = time.perf_counter()
    ratios = overlap.overlap_matrix(keys, [overlap.dilate_keys(k) for k in keys])
    if ratios.is_cuda:
        torch.cuda.synchronize()
    t_matrix = time.perf_counter() - t

    clouds = [downsample(world_points(scene, i, K, pixel_stride), voxel) for i in ids]
    t = time.perf_counter()
    ref = kdtree_matrix(clouds, 1.5 * voxel)
    t_kd = time.perf_counter() - t
    n_pairs = frames * (frames - 1) // 2
    t = time.perf_counter()
    done = 0
    for i in range(frames):
        for j in range(i + 1, frames):
            if done < loop_pairs:
                o3d_loop_pair(clouds[i], clouds[j], 1.5 * voxel)
                done += 1
    t_loop = (time.perf_counter() - t) / max(1, done) * n_pairs

    ours_sel = ratios.cpu().numpy() >= 0.3
    ref_sel = ref >= 0.3
    iu = np.triu_indices(frames, 1)
    agree = float((ours_sel[iu] == ref_sel[iu]).mean())
    return {"frames": str(frames), "pairs": str(n_pairs), "selected": str(len(pairs)),
            "ours s": f"{t_ours:.3f}", "ours matrix s": f"{t_matrix:.4f}", "cached s": f"{t_cached:.4f}",
            "kdtree/pair s": f"{t_kd:.2f}", "o3d loop s": f"~{t_loop:.1f}", "agree@0.3": f"{agree:.3f}",
            "mean |diff|": f"{np.abs(ratios.cpu().numpy() - ref)[iu].mean():.3f}"}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[10, 20, 40])
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--voxel-size", type=float, default=0.05)
    p.add_argument("--pixel-stride", type=int, default=2)
    p.add_argument("--loop-pairs", type=int, default=3)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {a.device}, "
          f"{a.width}x{a.height}, voxel {a.voxel_size} m, pixel stride {a.pixel_stride}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(f, a.width, a.height, a.voxel_size, a.pixel_stride, a.loop_pairs, a.device, Path(tmp))
                for f in a.frames]
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(r[c] for c in cols) + " |")


if __name__ == "__main__":
    main()
