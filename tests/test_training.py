"""The shared training loop: atomic checkpoints, exact resume, metrics log, DDP with gloo on CPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mm3dkit.errors import CheckpointError
from mm3dkit.training import Interrupted, TrainConfig, fit, load_checkpoint, save_atomic
from mm3dkit.training.sampling import StepBatchSampler

sys.path.insert(0, str(Path(__file__).parent))
from toy_method import ToyData, ToyRegression  # noqa: E402


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), max_steps=8, batch_size=4, lr=0.05, device="cpu", progress=False,
                log_every=1, ckpt_every=2, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _params(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    full = ToyRegression()
    fit(full, ToyData(), _cfg(tmp_path / "full"))

    torch.manual_seed(0)
    first = ToyRegression()
    with pytest.raises(Interrupted):
        fit(first, ToyData(), _cfg(tmp_path / "cut"), stop_at_step=5)  # killed after step 5; last ckpt at 4
    assert not (tmp_path / "cut" / "done.json").exists(), "an interrupted run must not look finished"
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 4

    torch.manual_seed(99)  # a fresh process: different init, resumed state must override it
    resumed = ToyRegression()
    result = fit(resumed, ToyData(), _cfg(tmp_path / "cut"))
    assert result.step == 8
    torch.testing.assert_close(_params(resumed), _params(full), rtol=1e-6, atol=1e-7)
    steps = [int(r["step"]) for r in result.history]
    assert steps == list(range(1, 9)), "metrics log must have each step once (rows of the killed step 5 dropped)"
    assert json.loads((tmp_path / "cut" / "done.json").read_text())["steps"] == 8


def test_training_lowers_loss(tmp_path):
    torch.manual_seed(0)
    result = fit(ToyRegression(), ToyData(), _cfg(tmp_path, max_steps=40, log_every=1))
    losses = [r["loss"] for r in result.history]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_finished_run_is_not_retrained(tmp_path):
    torch.manual_seed(0)
    fit(ToyRegression(), ToyData(), _cfg(tmp_path, max_steps=2))
    mtime = (tmp_path / "checkpoints" / "final.pt").stat().st_mtime_ns
    again = fit(ToyRegression(), ToyData(), _cfg(tmp_path, max_steps=2))
    assert again.step == 2 and (tmp_path / "checkpoints" / "final.pt").stat().st_mtime_ns == mtime


def test_batches_are_a_function_of_seed_and_step():
    a = iter(StepBatchSampler(10, 4, seed=1, start_step=0))
    batches = [next(a) for _ in range(6)]
    b = next(iter(StepBatchSampler(10, 4, seed=1, start_step=4)))
    assert b == batches[4]
    epoch0 = sorted(i for batch in batches[:2] for i, _ in batch) + [batches[2][0][0], batches[2][1][0]]
    assert sorted(epoch0) == list(range(10)), "each epoch visits every item once"
    r0 = next(iter(StepBatchSampler(10, 2, seed=1, rank=0, world_size=2)))
    r1 = next(iter(StepBatchSampler(10, 2, seed=1, rank=1, world_size=2)))
    assert not {i for i, _ in r0} & {i for i, _ in r1}, "ranks get disjoint shards"


def test_atomic_save_keeps_old_checkpoint_on_failure(tmp_path):
    path = tmp_path / "last.pt"
    save_atomic({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_atomic({"step": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "no temporary file left behind"


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_ddp_two_processes_gloo(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                           str(Path(__file__).parent / "toy_method.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(m) for m in re.findall(r"\{[^{}]*\}", proc.stdout)]  # ranks may print on one line
    assert sorted(r["rank"] for r in rows) == [0, 1]
    assert rows[0]["checksum"] == pytest.approx(rows[1]["checksum"], rel=1e-9), "DDP keeps replicas identical"
    assert (tmp_path / "done.json").exists()
