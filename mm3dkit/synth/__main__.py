"""Command line: ``python -m mm3dkit.synth --scenes 20 --frames 30 --out data/synth [--preview figures/x.png]``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mm3dkit.synth.generate import generate_dataset, generate_scene


def save_preview(path: str | Path, seed: int = 0, n: int = 4, width: int = 320, height: int = 240) -> Path:
    """A figure of ``n`` generated frames: colour, depth and semantic labels (one column per frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mm3dkit.viz import save_figure

    s = generate_scene(seed, n_frames=n * 3, width=width, height=height)
    frames = s.frames[::3][:n]
    fig, axes = plt.subplots(3, n, figsize=(3.2 * n, 7.2))
    for j, f in enumerate(frames):
        axes[0, j].imshow(f.color)
        axes[1, j].imshow(np.where(f.depth > 0, f.depth, np.nan), cmap="viridis", vmin=0, vmax=5)
        axes[2, j].imshow(np.where(f.semantic >= 0, f.semantic, np.nan), cmap="tab20", vmin=0, vmax=19,
                          interpolation="nearest")
    for ax, title in zip(axes[:, 0], ("colour", "depth (m, white = missing)", "ScanNet-20 labels")):
        ax.set_ylabel(title)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("mm3dkit synthetic indoor RGB-D frames")
    return save_figure(fig, path, dpi=80)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Generate the synthetic indoor RGB-D set in ScanNet's layout.")
    p.add_argument("--out", default="data/synth")
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--preview", default=None, help="also write a PNG of a few frames here")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    generate_dataset(a.out, a.scenes, a.frames, a.seed, a.width, a.height, workers=a.workers)
    print(f"wrote {a.scenes} scenes x {a.frames} frames to {a.out} in {time.perf_counter() - t0:.1f} s")
    if a.preview:
        print(f"preview: {save_preview(a.preview, a.seed, width=a.width, height=a.height)}")


if __name__ == "__main__":
    main()
