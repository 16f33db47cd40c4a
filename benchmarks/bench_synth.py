"""Synthetic generator speed: where the time of one scene goes, and frames/s for a whole set on disk.

Table 1 (one scene, one process) splits the work into its stages:

* ``layout``  - procedural room + furniture placement (``make_room``);
* ``bvh``     - building Open3D's ``RaycastingScene`` from the box meshes (``RoomRenderer``);
* ``render``  - per frame: ray casting + pattern colours + shading + depth noise/dropouts (``RoomRenderer.render``),
  of which ``cast_rays`` is Open3D's ray casting alone;
* ``surface`` - the labelled scene point cloud (``sample_surface``);
* ``write``   - JPEG/PNG/PLY/JSON files in ScanNet's layout (``write_scene``).

Table 2 times ``generate_dataset`` end to end (fresh folder each time) for each worker count: the quick-demo set
(default 4 scenes x 20 frames at 320x240) and the notebooks' ``QUICK`` preset.

    python benchmarks/bench_synth.py                                  # quick-demo set, workers 1 and 2
    python benchmarks/bench_synth.py --scenes 20 --frames 30 --width 640 --height 480 --workers 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import open3d as o3d

from mm3dkit.synth import QUICK, generate_dataset, write_scene
from mm3dkit.synth.generate import generate_scene
from mm3dkit.synth.layout import make_room
from mm3dkit.synth.render import RoomRenderer, camera_path, intrinsics_for


def stage_times(width: int, height: int, n_frames: int, seed: int = 0) -> dict[str, float]:
    """Seconds spent in each stage of one scene (render/cast_rays are per frame)."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    room = make_room(rng)
    t1 = time.perf_counter()
    renderer = RoomRenderer(room)
    t2 = time.perf_counter()
    K = intrinsics_for(width, height)
    poses = camera_path(room, n_frames, rng)
    render = cast = 0.0
    for pose in poses:
        a = time.perf_counter()
        renderer.render(pose, K, width, height, rng)
        b = time.perf_counter()
        # the same rays again, ray casting only (as render() builds them)
        rows, cols = np.mgrid[0:height, 0:width]
        pix = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)], axis=1)
        dirs = pix @ np.linalg.inv(K).T @ pose[:3, :3].T
        rays = o3d.core.Tensor(np.concatenate([np.broadcast_to(pose[:3, 3], dirs.shape), dirs], 1).astype(np.float32))
        c = time.perf_counter()
        renderer.scene.cast_rays(rays)
        render += b - a
        cast += time.perf_counter() - c
    t3 = time.perf_counter()
    renderer.sample_surface(400.0, rng)
    t4 = time.perf_counter()
    scene = generate_scene(seed, n_frames, width, height)
    with tempfile.TemporaryDirectory() as tmp:
        t5 = time.perf_counter()
        write_scene(scene, Path(tmp) / scene.name)
        t6 = time.perf_counter()
    return {"layout": t1 - t0, "bvh": t2 - t1, "render": render / n_frames, "cast_rays": cast / n_frames,
            "surface": t4 - t3, "write": t6 - t5, "points": float(len(scene.scene))}


def dataset_time(n_scenes: int, n_frames: int, width: int, height: int, workers: int, seed: int = 0) -> float:
    """Seconds for ``generate_dataset`` into a fresh temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate_dataset(Path(tmp) / "synth", n_scenes, n_frames, seed, width, height, workers=workers, progress=False)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=4)
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts for table 2")
    p.add_argument("--no-preset", action="store_true", help="skip the QUICK preset rows of table 2")
    a = p.parse_args(argv)
    print(f"# {a.width}x{a.height}, {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f} at start), "
          f"open3d {o3d.__version__}")
    s = stage_times(a.width, a.height, min(a.frames, 10))
    print("\n## one scene, one process (render and cast_rays per frame)\n")
    print("| layout ms | bvh ms | render ms/frame | cast_rays ms/frame | surface ms | points | write ms (scene) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {1000 * s['layout']:.1f} | {1000 * s['bvh']:.1f} | {1000 * s['render']:.1f} | "
          f"{1000 * s['cast_rays']:.1f} | {1000 * s['surface']:.1f} | {s['points']:.0f} | {1000 * s['write']:.0f} |")
    sets = [("quick-demo", a.scenes, a.frames, a.width, a.height)]
    if not a.no_preset:
        sets.append(("QUICK preset", QUICK["n_scenes"], QUICK["n_frames"], QUICK["width"], QUICK["height"]))
    print("\n## generate_dataset end to end (files on disk)\n")
    print("| set | scenes x frames | size | workers | seconds | frames/s |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name, n_scenes, n_frames, w, h in sets:
        for workers in (int(x) for x in a.workers.split(",")):
            sec = dataset_time(n_scenes, n_frames, w, h, workers)
            rows.append({"set": name, "scenes": n_scenes, "frames": n_frames, "workers": workers, "seconds": sec,
                         "frames_per_s": n_scenes * n_frames / sec})
            print(f"| {name} | {n_scenes} x {n_frames} | {w}x{h} | {workers} | {sec:.1f} | "
                  f"{n_scenes * n_frames / sec:.1f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
