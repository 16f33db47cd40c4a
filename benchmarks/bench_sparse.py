"""Sparse backends head to head: forward + backward time and peak memory of a Res16UNet per backend.

The input is an indoor-like sparse tensor: the surface point cloud of a procedural room from :mod:`mm3dkit.synth`
(floor, walls, furniture), voxelised with the voxel size that gives about ``--voxels`` voxels (bisection), features =
colours - 0.5 as in PointContrast. Every backend gets the same input and the same weights (one ``state_dict``, which
also checks that checkpoints move between backends), and runs in its own subprocess so that memory is measured
cleanly. Each step rebuilds the sparse tensor (coordinate map and kernel maps included, as in training), runs the
forward, a weighted-sum loss and the backward.

Columns: ``fwd`` / ``bwd`` / ``fwd+bwd`` median milliseconds over the timed steps; ``first step`` the first (cold)
step; ``peak MiB`` extra memory at the peak of a step over the memory before it - on CUDA
``torch.cuda.max_memory_allocated`` (MinkowskiEngine allocates through PyTorch's allocator), on CPU the process's
peak resident set (``VmHWM``, reset per step through ``/proc/self/clear_refs``; glibc is told to return big blocks to
the system so freed tensors do not hide later peaks); ``max|diff|`` largest output difference to the first backend,
relative to the largest output.

    python benchmarks/bench_sparse.py --threads 1                       # ~20k voxels, CPU/CUDA, available backends
    python benchmarks/bench_sparse.py --device cuda --steps 20          # on a GPU
    python benchmarks/bench_sparse.py --model Res16UNet14A --voxels 5000 --steps 2   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mm3dkit.models.res16unet import MODELS, build_res16unet
from mm3dkit.sparse import minkowski_available, sparse_tensor
from mm3dkit.sparse.torch_backend import batched_coordinates, sparse_quantize


def indoor_input(voxels: int, batch_size: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Coordinates ``(N, 4)`` and features ``(N, 3)`` of ``batch_size`` synthetic rooms, ~``voxels`` voxels per room.

    Returns ``coords, feats, voxel_size`` (the voxel size, in metres, found for the first room).
    """
    from mm3dkit.synth import generate_scene

    coords, feats, voxel_size = [], [], None
    for b in range(batch_size):
        scene = generate_scene(seed=seed + b, n_frames=1, width=32, height=24, surface_density=2500.0).scene
        pts = torch.from_numpy(scene.points).double()
        if voxel_size is None:  # voxel count falls monotonically with the voxel size: bisect on a log scale
            lo, hi = 0.005, 1.0
            for _ in range(30):
                mid = (lo * hi) ** 0.5
                lo, hi = (mid, hi) if len(sparse_quantize(pts, quantization_size=mid)) > voxels else (lo, mid)
            voxel_size = hi
        c, index = sparse_quantize(pts, quantization_size=voxel_size, return_index=True)
        coords.append(c)
        feats.append(torch.from_numpy(scene.colors[index.numpy()]).float() / 255.0 - 0.5)
    return batched_coordinates(coords), torch.cat(feats), float(voxel_size)


def _rss_kib() -> tuple[int, int]:
    """(current, peak) resident set of this process in KiB, from /proc/self/status."""
    vals = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            vals[line.split(":")[0]] = int(line.split()[1])
    return vals["VmRSS"], vals["VmHWM"]


def _reset_peak(device: torch.device) -> int:
    """Reset the peak-memory counter; returns the memory in use now (bytes)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
        return _rss_kib()[0] * 1024
    except OSError:  # not Linux, or /proc not writable: no per-step peak on CPU
        return -1


def _peak(device: torch.device, before: int) -> float:
    """Extra bytes at the peak since :func:`_reset_peak` (NaN when it cannot be measured)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    return _rss_kib()[1] * 1024 - before if before >= 0 else float("nan")


def _sorted_rows(coords: torch.Tensor) -> torch.Tensor:
    c = coords.long().cpu() + torch.tensor([0, 1 << 15, 1 << 15, 1 << 15])
    return torch.argsort((c[:, 0] << 48) | (c[:, 1] << 32) | (c[:, 2] << 16) | c[:, 3])


def worker(backend: str, args: argparse.Namespace, work: Path) -> dict:
    """Time one backend (runs in its own process); saves its first output for the cross-backend check."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = torch.load(work / "input.pt")
    net = build_res16unet(args.model, 3, args.out_channels, backend=backend)
    net.load_state_dict(torch.load(work / "state.pt"))
    net = net.to(device).train()
    coords, feats = data["coords"], data["feats"].to(device)
    weights = torch.linspace(-1, 1, args.out_channels, device=device)
    fwd, bwd, peaks = [], [], []
    for step in range(args.steps + 1):
        net.zero_grad(set_to_none=True)
        before = _reset_peak(device)
        t0 = time.perf_counter()
        out = net(sparse_tensor(feats, coords, backend))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t1 = time.perf_counter()
        (out.F * weights).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t2 = time.perf_counter()
        peaks.append(_peak(device, before))
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
        if step == 0:
            torch.save(out.F.detach().cpu()[_sorted_rows(out.C)], work / f"out_{backend}.pt")
        del out
    timed = slice(1, None) if args.steps else slice(0, 1)
    return {"backend": backend, "fwd": statistics.median(fwd[timed]), "bwd": statistics.median(bwd[timed]),
            "total": statistics.median([f + b for f, b in zip(fwd[timed], bwd[timed])]), "first": fwd[0] + bwd[0],
            "peak": max(peaks[timed]), "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="Res16UNet34C", choices=sorted(MODELS))
    p.add_argument("--voxels", type=int, default=20000, help="voxels per room (sets the voxel size)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--out-channels", type=int, default=16, help="16 = the paper's feature dimension")
    p.add_argument("--steps", type=int, default=3, help="timed steps after one untimed warm-up step")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (CUDA when available)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads per backend process (OMP_NUM_THREADS and torch); 0 = library default. Use 1 on "
                        "a busy machine: PyTorch's parallel index_add stalls when its threads are descheduled")
    p.add_argument("--backends", default="auto", help="comma list of torch,minkowski; auto = those that import")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.worker:
        print(json.dumps(worker(args.worker, args, Path(args.work))))
        return []

    backends = (["torch", "minkowski"] if minkowski_available() else ["torch"]) if args.backends == "auto" \
        else args.backends.split(",")
    coords, feats, voxel_size = indoor_input(args.voxels, args.batch_size)
    print(f"{args.model}, {len(coords)} voxels in {args.batch_size} synthetic room(s) at {voxel_size * 100:.2f} cm, "
          f"{args.out_channels} outputs, float32, device {args.device}, {args.steps} timed steps (+1 warm-up)")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        torch.save({"coords": coords, "feats": feats}, work / "input.pt")
        torch.manual_seed(0)
        torch.save(build_res16unet(args.model, 3, args.out_channels, backend="torch").state_dict(), work / "state.pt")
        # fixed mmap threshold: glibc then returns every large freed block to the system, so RSS tracks live memory
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        for b in backends:
            cmd = [sys.executable, __file__, "--worker", b, "--work", tmp, "--model", args.model,
                   "--out-channels", str(args.out_channels), "--steps", str(args.steps), "--device", args.device,
                   "--threads", str(args.threads)]
            print(f"running {b} ...", flush=True)
            run = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if run.returncode:
                sys.exit(f"backend {b} failed:\n{run.stderr[-3000:]}")
            results.append(json.loads(run.stdout.strip().splitlines()[-1]))
        ref = torch.load(work / f"out_{backends[0]}.pt")
        for r in results:
            out = torch.load(work / f"out_{r['backend']}.pt")
            r["diff"] = float((out - ref).abs().max() / ref.abs().max()) if out.shape == ref.shape else float("nan")

    head = f"{'backend':<10} {'fwd ms':>9} {'bwd ms':>9} {'fwd+bwd ms':>11} {'first step ms':>14} {'peak MiB':>9} " \
           f"{'max|diff|':>10} {'threads':>7}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['backend']:<10} {r['fwd'] * 1e3:9.0f} {r['bwd'] * 1e3:9.0f} {r['total'] * 1e3:11.0f} "
              f"{r['first'] * 1e3:14.0f} {r['peak'] / 2 ** 20:9.0f} {r['diff']:10.1e} {r['threads']:7d}")
    return results


if __name__ == "__main__":
    main()
