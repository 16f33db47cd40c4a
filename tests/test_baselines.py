"""PointContrast / CSC / DepthContrast: losses against loop-based references, the momentum/queue update, short
training runs that lower each loss (tiny Res16UNet14A, tiny synthetic scans), backbone export."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mm3dkit.augment3d import Augment3D
from mm3dkit.backbone_io import load_backbone
from mm3dkit.losses.csc_loss import csc_loss, num_partitions, partitioned_infonce, shape_context_partitions
from mm3dkit.losses.moco_infonce import moco_infonce
from mm3dkit.losses.point_infonce import point_infonce
from mm3dkit.methods.csc import ContrastiveSceneContexts
from mm3dkit.methods.depthcontrast import DepthContrast, TwoViewScans, collate_two_views, global_average
from mm3dkit.methods.pointcontrast import PointContrast
from mm3dkit.models.res16unet import Res16UNet14A
from mm3dkit.overlap import FramePair, PairViewDataset, collate_pair_views
from mm3dkit.training import TrainConfig, fit


def _feats(n: int, c: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, c, generator=torch.Generator().manual_seed(seed)), dim=1)


# ---------------------------------------------------------------------------------------------- losses vs loops


def test_shape_context_partitions_loop_reference() -> None:
    xyz = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    r1, r2, na, npol = 0.3, 1.5, 2, 2
    got = shape_context_partitions(xyz, r1, r2, na, npol)
    for i in range(12):
        for j in range(12):
            dx, dy, dz = (xyz[j] - xyz[i]).tolist()
            d = math.sqrt(dx * dx + dy * dy + dz * dz)
            if d < r1:
                expect = -1
            else:
                az = math.atan2(dy, dx) % (2 * math.pi)
                pol = math.atan2(dy, dz) % math.pi
                a_bin = min(int(az // (2 * math.pi / na)), na - 1)
                p_bin = min(int(pol // (math.pi / npol)), npol - 1)
                expect = ((1 if d >= r2 else 0) * na + a_bin) * npol + p_bin
            assert int(got[i, j]) == expect, (i, j)
    assert int(got.max()) < num_partitions(na, npol)


def test_partitioned_infonce_loop_reference() -> None:
    n, tau, P = 10, 0.4, 8
    q, k = _feats(n, 6, 1), _feats(n, 6, 2)
    parts = torch.randint(-1, P, (n, n), generator=torch.Generator().manual_seed(3))
    got = partitioned_infonce(q, k, parts, P, tau)
    total = 0.0
    for p in range(P):
        for i in range(n):
            pos = math.exp(float(q[i] @ k[i]) / tau)
            neg = sum(math.exp(float(q[i] @ k[j]) / tau) for j in range(n) if j != i and int(parts[i, j]) == p)
            total += -math.log(pos / (pos + neg))
    assert float(got) == pytest.approx(total / (P * n), rel=1e-5)


def test_csc_with_one_partition_is_half_point_infonce() -> None:
    # r1 = 0 and r2 beyond every distance: all negatives share the near bin of (1 azimuth x 1 polar) -> partition 0
    # holds PointInfoNCE, partition 1 is empty (log 1 = 0), and CSC averages the two
    q, k = _feats(16, 8, 4), _feats(16, 8, 5)
    xyz = torch.rand(16, 3)
    got = csc_loss(q, k, xyz, 0.4, r1=0.0, r2=100.0, n_azimuth=1, n_polar=1)
    assert float(got) == pytest.approx(float(point_infonce(q, k, 0.4)) / 2, rel=1e-5)


def test_csc_gradient_flows() -> None:
    q = _feats(20, 8, 6).requires_grad_(True)
    csc_loss(q, _feats(20, 8, 7), torch.rand(20, 3)).backward()
    assert q.grad is not None and torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0


def test_moco_infonce_loop_reference() -> None:
    q, k, queue, tau = _feats(5, 4, 8), _feats(5, 4, 9), _feats(7, 4, 10), 0.1
    got = moco_infonce(q, k, queue, tau)
    ref = 0.0
    for b in range(5):
        pos = math.exp(float(q[b] @ k[b]) / tau)
        neg = sum(math.exp(float(q[b] @ queue[n]) / tau) for n in range(7))
        ref += -math.log(pos / (pos + neg))
    assert float(got) == pytest.approx(ref / 5, rel=1e-5)
    with pytest.raises(ValueError, match="queue"):
        moco_infonce(q, k, torch.zeros(3, 5))


def test_global_average_loop_reference() -> None:
    f, scan = torch.rand(9, 3), torch.tensor([0, 0, 1, 2, 2, 2, 1, 0, 2])
    got = global_average(f, scan, 3)
    for b in range(3):
        assert torch.allclose(got[b], f[scan == b].mean(0))


# ---------------------------------------------------------------------------------------------- short runs

VOXEL = 0.25


@pytest.fixture(scope="module")
def synth_frames():
    from mm3dkit.synth import generate_scene

    s = generate_scene(3, n_frames=3, width=32, height=24)
    return s.frames


def _pair_dataset(frames) -> PairViewDataset:
    lookup = {("mem", i): f for i, f in enumerate(frames)}
    pairs = [FramePair("mem", 0, 1, 1.0), FramePair("mem", 1, 2, 1.0), FramePair("mem", 0, 0, 1.0)]
    return PairViewDataset(pairs, VOXEL, Augment3D(), match_radius=1.5 * VOXEL, frames=lookup)


def _fit(method, dataset, collate, out: Path, steps: int = 8, batch: int = 2, lr: float = 0.01):
    cfg = TrainConfig(out_dir=str(out), max_steps=steps, batch_size=batch, lr=lr, scheduler="constant",
                      log_every=1, ckpt_every=100, progress=False)
    return fit(method, dataset, cfg, collate_fn=collate)


def _fixed_loss(method, batch: dict, seed: int = 7) -> float:
    """The method's loss on one fixed batch with fixed pair sampling (train-mode batch norm, on a copy so the
    running statistics of ``method`` are untouched). Training-loss curves over 1-2 pairs per step are too noisy to
    compare, this is one quantity measured before and after training."""
    probe = copy.deepcopy(method)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        return float(probe(batch)["loss"])


def _fixed_batch(dataset, collate, n: int) -> dict:
    with torch.random.fork_rng():
        torch.manual_seed(123)  # fixed augmentations
        return collate([dataset[i] for i in range(n)])


def _pair_method_short_run(method, frames, out: Path):
    """Train a two-scan method briefly; its loss on a fixed batch must drop. Returns the fit result."""
    ds = _pair_dataset(frames)
    fixed = _fixed_batch(ds, collate_pair_views, len(ds))
    before = _fixed_loss(method, fixed)
    result = _fit(method, ds, collate_pair_views, out)
    after = _fixed_loss(method, fixed)
    assert after < before, (before, after, [r["loss"] for r in result.history])
    return result


def test_pointcontrast_short_run_lowers_loss_and_exports(synth_frames, tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = PointContrast(Res16UNet14A(3, 16, backend="torch"), num_pairs=128)
    result = _pair_method_short_run(method, synth_frames, tmp_path / "pc")
    report = load_backbone(result.artefacts["backbone"], Res16UNet14A(3, 20, backend="torch"))
    assert report.missing == [] and report.skipped_head == ["final.bias", "final.kernel"]


def test_csc_short_run_lowers_loss(synth_frames, tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = ContrastiveSceneContexts(Res16UNet14A(3, 16, backend="torch"), num_pairs=128, r1=0.1, r2=1.0)
    _pair_method_short_run(method, synth_frames, tmp_path / "csc")
    assert Path(tmp_path / "csc" / "backbone.pth").is_file()


def test_depthcontrast_short_run_lowers_loss(synth_frames, tmp_path: Path) -> None:
    # MoCo's training loss is not monotone (the random initial queue is easy; real keys replace it), so the test
    # measures one fixed quantity before and after training: the instance-discrimination InfoNCE of the query
    # encoder's embeddings of two fixed augmented views of each scan, the other scans' views as negatives.
    torch.manual_seed(0)
    method = DepthContrast(Res16UNet14A(3, 16, backend="torch"), hidden_dim=32, embed_dim=16, queue_size=8,
                           momentum=0.9)
    ds = TwoViewScans(list(synth_frames), VOXEL)
    fixed = _fixed_batch(ds, collate_two_views, len(ds))

    def held_out_loss() -> float:
        method.eval()
        with torch.no_grad():
            q1 = method.embed(fixed["coords1"], fixed["feats1"])
            q2 = method.embed(fixed["coords2"], fixed["feats2"])
        method.train()
        return float(point_infonce(q1, q2, temperature=0.1))

    before = held_out_loss()
    result = _fit(method, ds, collate_two_views, tmp_path / "dc", steps=8, batch=3)
    after = held_out_loss()
    assert after < before, (before, after, [r["loss"] for r in result.history])
    assert int(method.queue_ptr) == (8 * 3) % 8


def test_depthcontrast_momentum_and_queue_update() -> None:
    m = DepthContrast(Res16UNet14A(3, 8, backend="torch"), hidden_dim=8, embed_dim=4, queue_size=5, momentum=0.9)
    q0 = [p.detach().clone() for p in m.backbone.parameters()]
    k0 = [p.detach().clone() for p in m.key_backbone.parameters()]
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(1.0)
    keys = F.normalize(torch.randn(3, 4), dim=1)
    m._pending = keys
    m.on_step_end(1)
    for pk, a, b in zip(m.key_backbone.parameters(), k0, q0):
        assert torch.allclose(pk, 0.9 * a + 0.1 * (b + 1.0), atol=1e-6)
    assert torch.allclose(m.queue[:3], keys) and int(m.queue_ptr) == 3
    m._pending = keys
    m.on_step_end(2)  # wraps around: rows 3, 4, 0
    assert torch.allclose(m.queue[[3, 4, 0]], keys) and int(m.queue_ptr) == 1


def test_pointcontrast_without_matches_is_an_error() -> None:
    method = PointContrast(Res16UNet14A(3, 8, backend="torch"))
    grid = torch.randint(0, 40, (120, 3), generator=torch.Generator().manual_seed(0)).unique(dim=0)
    coords = torch.cat([torch.zeros(len(grid), 1, dtype=torch.long), grid], 1).int()
    batch = {"coords0": coords, "feats0": torch.rand(len(grid), 3), "coords1": coords,
             "feats1": torch.rand(len(grid), 3), "matches": torch.zeros(0, 2, dtype=torch.long), "names": ["x"]}
    with pytest.raises(ValueError, match="point matches"):
        method(batch)
