"""Stage-2 speed: step time and scans/s per sparse backend, where the time goes, data loader vs model throughput.

Per training step (batch of scans) it times, on the chosen device:

* ``teacher``  - frozen 2D network on the batch of images;
* ``3d_fwd`` / ``3d_bwd`` - the 3D sparse U-Net forward and the backward pass (the backward is all 3D network: the
  teacher has no gradients and the loss/sampling backward is negligible);
* ``pair+loss`` - bilinear sampling of the pixel features, output row matching, pair sampling, InfoNCE;
* ``loader`` - building the batch on the CPU (back-projection, augmentation, voxelisation, collate), one process.

``outside 3D %`` is (teacher + pair+loss) / step: the spec asks for pairing/sampling/loss to stay under 10 %.
``loader scans/s`` is for ONE loader process; with ``num_workers = k`` it scales roughly by k.

    python benchmarks/bench_stage2.py                       # quick CPU sizes
    python benchmarks/bench_stage2.py --model Res16UNet34C --voxel-size 0.025 --width 320 --height 240 \\
        --batch-size 8 --pairs 4096 --device cuda          # paper-like sizes on a GPU
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from mm3dkit.augment3d import Augment3D
from mm3dkit.losses.point_infonce import point_infonce
from mm3dkit.methods.stage2 import Stage2Dataset, Stage2Distill, collate_stage2, load_stage1_teacher, match_rows
from mm3dkit.models.res16unet import build_res16unet
from mm3dkit.point_pixel import sample_grid_features, sample_pairs
from mm3dkit.sparse import minkowski_available, sparse_tensor
from mm3dkit.synth import generate_scene
from mm3dkit.training.trainer import move_to_device


def stand_in_teacher(dim: int) -> nn.Module:
    """The Stage-1 ResUNet (random weights) when that module exists, else a small conv net of the same output."""
    try:
        from mm3dkit.models.resunet import ResUNet  # type: ignore[attr-defined]

        return ResUNet(encoder="resnet18", out_channels=dim, pretrained=False)
    except Exception:  # Stage-1 model not available / other signature: a cheap stand-in (reported in the table)
        return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, dim, 3, padding=1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_backend(backend: str, args: argparse.Namespace, dataset: Stage2Dataset, teacher: nn.Module,
                  device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    backbone = build_res16unet(args.model, in_channels=3, out_channels=args.dim, backend=backend)
    method = Stage2Distill(teacher, backbone, args.pairs).to(device).train()
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    t = {k: 0.0 for k in ("loader", "teacher", "3d_fwd", "pair+loss", "3d_bwd")}
    voxels = 0
    n = len(dataset)
    for step in range(args.warmup + args.steps):
        record = step >= args.warmup
        t0 = time.perf_counter()
        items = [dataset[(step * args.batch_size + i) % n] for i in range(args.batch_size)]
        batch = move_to_device(collate_stage2(items), device)
        _sync(device)
        t1 = time.perf_counter()
        maps = method.pixel_features(batch["images"])
        _sync(device)
        t2 = time.perf_counter()
        out = method.backbone(sparse_tensor(batch["feats"], batch["coords"], backend))
        _sync(device)
        t3 = time.perf_counter()
        scan = batch["coords"][:, 0].long()
        target = nn.functional.normalize(sample_grid_features(maps, batch["grid"], scan), dim=1)
        z3 = nn.functional.normalize(out.F[match_rows(out.C, batch["coords"])], dim=1)
        sel = sample_pairs(scan, args.pairs)
        loss = point_infonce(z3[sel], target[sel], method.temperature, normalize=False)
        _sync(device)
        t4 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        t5 = time.perf_counter()
        if record:
            voxels += len(batch["coords"])
            for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                t[k] += dt
    s = args.steps
    step_time = (t["teacher"] + t["3d_fwd"] + t["pair+loss"] + t["3d_bwd"]) / s  # model step, data excluded
    return {"step_ms": 1000 * step_time, "scans_s": args.batch_size / step_time,
            "loader_scans_s": args.batch_size * s / t["loader"], "voxels_per_scan": voxels / (s * args.batch_size),
            "outside_pct": 100 * (t["teacher"] + t["pair+loss"]) / s / step_time,
            "pair_loss_pct": 100 * t["pair+loss"] / s / step_time, "teacher_pct": 100 * t["teacher"] / s / step_time,
            "loss": loss.item()}


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="Res16UNet14A")
    p.add_argument("--voxel-size", type=float, default=0.06)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--height", type=int, default=120)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--pairs", type=int, default=512)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--backends", default="torch,minkowski")
    p.add_argument("--stage1", default=None, help="a Stage-1 checkpoint for the teacher (default: random stand-in)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    frames = generate_scene(seed=0, n_frames=args.frames, width=args.width, height=args.height).frames
    dataset = Stage2Dataset(frames, args.voxel_size, Augment3D())
    if args.stage1:
        teacher, teacher_name = load_stage1_teacher(args.stage1, args.dim), Path(args.stage1).name
    else:
        teacher = stand_in_teacher(args.dim)
        teacher_name = type(teacher).__name__ + " (random)"
    print(f"# {args.model}, voxel {args.voxel_size} m, {args.width}x{args.height} frames, batch {args.batch_size}, "
          f"{args.pairs} pairs/scan, teacher {teacher_name}, device {device}, threads {torch.get_num_threads()}")
    rows = []
    header = ("backend", "voxels/scan", "step ms", "scans/s", "outside 3D %", "teacher %", "pair+loss %",
              "loader scans/s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for backend in args.backends.split(","):
        if backend == "minkowski" and not minkowski_available():
            print(f"| minkowski | not importable here | | | | | | |")
            continue
        r = bench_backend(backend, args, dataset, teacher, device)
        rows.append({"backend": backend, **r})
        print(f"| {backend} | {r['voxels_per_scan']:.0f} | {r['step_ms']:.0f} | {r['scans_s']:.2f} | "
              f"{r['outside_pct']:.1f} | {r['teacher_pct']:.1f} | {r['pair_loss_pct']:.1f} | "
              f"{r['loader_scans_s']:.1f} |")
    return rows


if __name__ == "__main__":
    main()
