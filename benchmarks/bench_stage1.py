"""Stage-1 step time, images/s and the share of the step spent outside the network (correspondences + loss).

    python benchmarks/bench_stage1.py                       # CPU, quick and paper-like sizes
    python benchmarks/bench_stage1.py --device cuda --amp   # on a GPU

Each row times ``--steps`` optimiser steps after ``--warmup`` steps on random images with real augmentation
parameters; "outside net" is the wall time of sampling correspondences, gathering/bilinear-sampling features and the
InfoNCE loss (forward and backward), measured separately from the ResUNet forward/backward of the same step.
"""

from __future__ import annotations

import argparse
import time

import torch

from mm3dkit.augment2d import PairAugment
from mm3dkit.losses.pixel_infonce import pixel_infonce
from mm3dkit.methods.stage1 import matched_features, sample_correspondences
from mm3dkit.models.resunet import ResUNet


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(encoder: str, size: tuple[int, int], batch: int, pairs: int, device: torch.device, steps: int, warmup: int,
          amp: bool) -> dict[str, float]:
    torch.manual_seed(0)
    net = ResUNet(encoder, 16, pretrained="none").to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    aug = PairAugment(out_size=size)
    src = torch.randint(0, 255, (3, 240, 320), dtype=torch.uint8)
    views = [aug(src) for _ in range(batch)]
    v1 = torch.stack([a.image for a, _ in views]).to(device)
    v2 = torch.stack([b.image for _, b in views]).to(device)
    a1 = torch.stack([a.affine for a, _ in views]).to(device)
    a2 = torch.stack([b.affine for _, b in views]).to(device)
    t_net = t_out = 0.0
    for i in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            f = net(torch.cat([v1, v2]))
        f1, f2 = f.float().chunk(2)
        _sync(device)
        t1 = time.perf_counter()
        # the part outside the network: correspondences, feature sampling, loss (forward + its backward)
        f1d, f2d = f1.detach().requires_grad_(), f2.detach().requires_grad_()
        corr = sample_correspondences(a1, a2, size, pairs)
        z1, z2, img = matched_features(f1d, f2d, corr)
        loss = pixel_infonce(z1, z2, img)
        loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        torch.autograd.backward([f1, f2], [f1d.grad, f2d.grad])
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        t3 = time.perf_counter()
        if i >= warmup:
            t_net += (t1 - t0) + (t3 - t2)
            t_out += t2 - t1
    step = (t_net + t_out) / steps
    return {"step_ms": 1000 * step, "images_per_s": batch / step, "outside_net_pct": 100 * t_out / (t_net + t_out)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast for the network (CUDA)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--settings", nargs="+", default=None, help="rows to run (default: all)")
    a = p.parse_args()
    device = torch.device(a.device)
    # the loss is O(N^2) in N = batch x matched pairs: the 256-pair row shows what fewer sampled pairs buy on a CPU
    rows = [("quick", "resnet18", (96, 128), 8, 1024), ("quick-256", "resnet18", (96, 128), 8, 256),
            ("paper-like", "resnet34", (240, 320), 8, 4096)]
    rows = [r for r in rows if a.settings is None or r[0] in a.settings]
    print(f"device: {device}, threads: {torch.get_num_threads()}, amp: {a.amp}")
    print("| setting | encoder | image | batch | pairs/img | step ms | images/s | outside net |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name, enc, size, batch, pairs in rows:
        r = bench(enc, size, batch, pairs, device, a.steps, a.warmup, a.amp)
        print(f"| {name} | {enc} | {size[1]}x{size[0]} | {batch} | {pairs} | {r['step_ms']:.0f} | "
              f"{r['images_per_s']:.1f} | {r['outside_net_pct']:.1f} % |")


if __name__ == "__main__":
    main()
