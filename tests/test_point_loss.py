"""Point-pixel InfoNCE (Equation (1)) against a hand-written reference, and the retrieval metrics."""

from __future__ import annotations

import math

import pytest
import torch

from mm3dkit.losses.point_infonce import pair_logits, point_infonce, retrieval_metrics


def _reference(z: torch.Tensor, zp: torch.Tensor, tau: float) -> float:
    """Equation (1) literally: for each i, positive z_i.z_i+ against negatives z_i.z_j+ (j != i); mean over i."""
    z = [v / v.norm() for v in z.double()]
    zp = [v / v.norm() for v in zp.double()]
    total = 0.0
    for i in range(len(z)):
        pos = math.exp(float(z[i] @ zp[i]) / tau)
        neg = sum(math.exp(float(z[i] @ zp[j]) / tau) for j in range(len(z)) if j != i)
        total += -math.log(pos / (pos + neg))
    return total / len(z)


@pytest.mark.parametrize("tau", [0.07, 0.4, 1.0])
def test_loss_matches_hand_written_reference(tau):
    g = torch.Generator().manual_seed(1)
    z, zp = torch.randn(9, 16, generator=g), torch.randn(9, 16, generator=g)
    got = point_infonce(z, zp, temperature=tau)
    assert float(got) == pytest.approx(_reference(z, zp, tau), rel=1e-5)
    assert float(point_infonce(z, zp, temperature=tau, reduction="sum")) == pytest.approx(9 * _reference(z, zp, tau),
                                                                                          rel=1e-5)


def test_loss_is_lower_for_matching_pairs_and_has_gradients():
    z = torch.randn(32, 16, requires_grad=True)
    target = torch.nn.functional.normalize(torch.randn(32, 16), dim=1)
    loss_random = point_infonce(z, target, 0.1)
    loss_random.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert point_infonce(target, target, 0.1) < loss_random


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        point_infonce(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="must both be"):
        point_infonce(torch.randn(4, 4), torch.randn(4, 8))
    with pytest.raises(ValueError, match="temperature"):
        pair_logits(torch.randn(4, 4), torch.randn(4, 4), temperature=0.0)


def test_retrieval_metrics():
    z = torch.eye(5)
    assert retrieval_metrics(z, z) == {"top1": 1.0, "mean_cosine": 1.0, "chance": 0.2}
    shifted = retrieval_metrics(z, z.roll(1, 0))
    assert shifted["top1"] == 0.0 and shifted["mean_cosine"] == pytest.approx(0.0)
