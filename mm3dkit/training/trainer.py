"""One training loop for every method of the kit (Stage 1, Stage 2, baselines, fine-tuning).

A method is an ``nn.Module`` whose ``forward(batch)`` returns a dict of scalar tensors with a ``"loss"`` key
(:class:`TrainableMethod`); :func:`fit` does the rest:

* reproducible batches (:mod:`mm3dkit.training.sampling`), seeds, ``torchrun`` DDP (NCCL on GPU, gloo on CPU);
* mixed precision on CUDA (bf16 autocast where the method allows it);
* a tqdm progress bar and a CSV metrics log (``metrics.csv``);
* atomic checkpoints (``checkpoints/last.pt`` every ``ckpt_every`` steps) and automatic resume from them: an
  interrupted run restarted with the same arguments continues from the last checkpoint and reproduces the
  uninterrupted run's weights (tested in ``tests/test_training.py``);
* results only when complete: ``checkpoints/final.pt`` and ``done.json`` are written after the last step, so a
  half-finished run is never mistaken for a result.

Example:
    >>> import tempfile, torch
    >>> class Toy(TrainableMethod):
    ...     def __init__(self):
    ...         super().__init__(); self.w = torch.nn.Parameter(torch.zeros(2))
    ...     def forward(self, batch):
    ...         return {"loss": ((self.w - batch) ** 2).mean()}
    >>> data = [torch.ones(2) for _ in range(8)]
    >>> cfg = TrainConfig(out_dir=tempfile.mkdtemp(), max_steps=5, batch_size=4, lr=0.1, progress=False)
    >>> result = fit(Toy(), data, cfg)
    >>> result.step, result.final_checkpoint.name
    (5, 'final.pt')
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mm3dkit.training.checkpoint import load_checkpoint, save_atomic
from mm3dkit.training.distributed import DistInfo, all_reduce_mean, init_distributed
from mm3dkit.training.sampling import SeededItems, StepBatchSampler


class TrainableMethod(nn.Module):
    """Base of every trainable method: ``forward(batch) -> {"loss": tensor, other scalars...}``.

    Override :meth:`on_step_end` for per-step updates outside autograd (momentum encoders, queues),
    :meth:`export` to write method-specific artefacts (e.g. a backbone in PointContrast format) when training ends,
    and set ``supports_amp = False`` when the model cannot run under autocast (MinkowskiEngine kernels are fp32).
    """

    supports_amp: bool = True

    def on_step_end(self, step: int) -> None:  # noqa: B027 - optional hook
        """Called after each optimiser step with the (1-based) global step."""

    def export(self, out_dir: Path) -> dict[str, str]:
        """Write extra artefacts into ``out_dir`` at the end of training; return ``{name: path}``."""
        return {}


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings shared by all methods (profiles fill them in)."""

    out_dir: str
    max_steps: int = 100
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # "adamw" | "sgd"
    momentum: float = 0.9
    scheduler: str = "cosine"  # "cosine" | "poly" | "constant"
    warmup_steps: int = 0
    grad_clip: float | None = None
    num_workers: int = 0
    seed: int = 0
    amp: bool = True  # only used on CUDA and when the method supports it
    device: str = "auto"
    log_every: int = 10
    ckpt_every: int = 50
    resume: bool = True
    progress: bool = True
    find_unused_parameters: bool = False


@dataclass
class TrainResult:
    step: int
    out_dir: Path
    final_checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)
    artefacts: dict[str, str] = field(default_factory=dict)


class Interrupted(RuntimeError):
    """Raised by :func:`fit` when ``stop_at_step`` is reached (used to simulate a killed job in tests)."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Recursively move tensors in dicts/lists/tuples/dataclasses to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(batch, **{f.name: move_to_device(getattr(batch, f.name), device)
                                             for f in dataclasses.fields(batch)})
    return batch


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        if cfg.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if cfg.scheduler == "poly":  # CSC / PointContrast fine-tuning schedule
            return (1.0 - progress) ** 0.9
        if cfg.scheduler == "constant":
            return 1.0
        raise ValueError(f"unknown scheduler {cfg.scheduler!r}; use 'cosine', 'poly' or 'constant'")

    return factor


def _make_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; use 'adamw' or 'sgd'")


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _MetricsLog:
    """Append-only CSV of logged steps; on resume, rows after the resumed step (from a killed run) are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.rows: list[dict[str, float]] = []
        if resume_step > 0 and path.exists():
            with path.open() as fh:
                self.rows = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
            self.rows = [r for r in self.rows if r["step"] <= resume_step]
        self._rewrite()

    def _fields(self) -> list[str]:
        keys: list[str] = ["step"]
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        return keys

    def _rewrite(self) -> None:
        # the file is small (one row per log_every steps); rewriting keeps the header complete when new keys appear
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self._fields())
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.path)

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        self._rewrite()


def fit(method: TrainableMethod, dataset: Dataset, cfg: TrainConfig,
        collate_fn: Callable[[list[Any]], Any] | None = None, stop_at_step: int | None = None,
        dist_info: DistInfo | None = None) -> TrainResult:
    """Train ``method`` on ``dataset`` for ``cfg.max_steps`` optimiser steps, resuming from ``out_dir`` if possible.

    ``stop_at_step`` raises :class:`Interrupted` after that step (its checkpoint written only if it falls on
    ``ckpt_every``), to test resumption. Returns a :class:`TrainResult` on completion.
    """
    info = dist_info or init_distributed(cfg.device)
    out = Path(cfg.out_dir)
    ckpt_dir = out / "checkpoints"
    if info.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed + info.rank)
    method.to(info.device)

    params = [p for p in method.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(method).__name__} has no trainable parameters")
    optimizer = _make_optimizer(params, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))

    start_step = 0
    last = ckpt_dir / "last.pt"
    if cfg.resume and last.exists():
        state = load_checkpoint(last, map_location=info.device)
        method.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"][info.rank] if isinstance(state["rng"], list) else state["rng"])
        start_step = int(state["step"])
    if start_step >= cfg.max_steps and (ckpt_dir / "final.pt").exists():
        return TrainResult(step=start_step, out_dir=out, final_checkpoint=ckpt_dir / "final.pt",
                           history=_MetricsLog(out / "metrics.csv", start_step).rows if info.is_main else [])

    if info.is_main:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    model: nn.Module = method
    if info.distributed:
        model = nn.parallel.DistributedDataParallel(
            method, device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=cfg.find_unused_parameters)

    sampler = StepBatchSampler(len(dataset), cfg.batch_size, cfg.seed, start_step, info.rank, info.world_size)  # type: ignore[arg-type]
    loader = DataLoader(SeededItems(dataset), batch_sampler=sampler, num_workers=cfg.num_workers,
                        collate_fn=collate_fn or torch.utils.data.default_collate,
                        pin_memory=info.device.type == "cuda", persistent_workers=cfg.num_workers > 0)
    use_amp = cfg.amp and info.device.type == "cuda" and method.supports_amp
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext())

    log = _MetricsLog(out / "metrics.csv", start_step) if info.is_main else None
    bar = tqdm(total=cfg.max_steps, initial=start_step, disable=not (cfg.progress and info.is_main),
               desc=type(method).__name__, dynamic_ncols=True)
    method.train()
    step, t0, data_time = start_step, time.perf_counter(), 0.0
    batches = iter(loader)
    while step < cfg.max_steps:
        t_fetch = time.perf_counter()
        batch = move_to_device(next(batches), info.device)
        data_time += time.perf_counter() - t_fetch
        with autocast:
            outputs = model(batch)
        loss = outputs["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{type(method).__name__}: loss is {loss.item()} at step {step + 1}; "
                                     f"lower the learning rate or check the input data")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        method.on_step_end(step)
        bar.update(1)

        if step % cfg.log_every == 0 or step == cfg.max_steps:
            row = {"step": float(step), "lr": optimizer.param_groups[0]["lr"]}
            for k, v in outputs.items():
                if isinstance(v, torch.Tensor) and v.numel() == 1:
                    row[k] = float(all_reduce_mean(v.detach().float()))
            elapsed = time.perf_counter() - t0
            row["sec_per_step"] = elapsed / max(1, step - start_step)
            row["data_fraction"] = data_time / max(elapsed, 1e-9)
            if log is not None:
                log.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}")
        if step % cfg.ckpt_every == 0 or step == cfg.max_steps:
            _save(method, optimizer, scheduler, step, cfg, info, last)
        if stop_at_step is not None and step >= stop_at_step and step < cfg.max_steps:
            bar.close()
            raise Interrupted(f"stopped at step {step} on request")
    bar.close()

    final = ckpt_dir / "final.pt"
    artefacts: dict[str, str] = {}
    if info.is_main:
        save_atomic({"step": step, "model": method.state_dict(), "config": asdict(cfg),
                     "method": type(method).__name__}, final)
        artefacts = method.export(out)
        summary = {"steps": step, "final_checkpoint": str(final), "artefacts": artefacts,
                   "last_metrics": log.rows[-1] if log and log.rows else {}}
        tmp = out / "done.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(out / "done.json")
    if info.distributed:
        torch.distributed.barrier()
    return TrainResult(step=step, out_dir=out, final_checkpoint=final,
                       history=log.rows if log else [], artefacts=artefacts)


def _save(method: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, step: int, cfg: TrainConfig,
          info: DistInfo, path: Path) -> None:
    rng: Any = _rng_state()
    if info.distributed:  # keep every rank's RNG so each resumes its own stream
        gathered: list[Any] = [None] * info.world_size
        torch.distributed.all_gather_object(gathered, rng)
        rng = gathered
    if info.is_main:
        save_atomic({"step": step, "model": method.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": rng, "config": asdict(cfg)}, path)
    if info.distributed:
        torch.distributed.barrier()
