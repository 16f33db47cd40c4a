"""Blockwise InfoNCE == dense cross-entropy InfoNCE (value and gradients), for every block size and mode."""

import pytest
import torch
import torch.nn.functional as F

from mm3dkit.losses.blockwise_infonce import blockwise_infonce


def dense_infonce(z1, z2, temperature, groups=None, symmetric=True):
    logits = z1 @ z2.T / temperature
    if groups is not None:
        logits = logits.masked_fill(groups[:, None] != groups[None, :], float("-inf"))
    target = torch.arange(len(z1))
    loss = F.cross_entropy(logits, target)
    return 0.5 * (loss + F.cross_entropy(logits.T, target)) if symmetric else loss


@pytest.mark.parametrize("block_rows", [1, 3, 7, 64])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("grouped", [False, True])
def test_value_and_gradients_match_dense(block_rows, symmetric, grouped):
    g = torch.Generator().manual_seed(block_rows)
    z1 = F.normalize(torch.randn(13, 5, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    z2 = F.normalize(torch.randn(13, 5, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    groups = torch.tensor([0] * 5 + [1] * 6 + [2] * 2) if grouped else None
    ref = dense_infonce(z1, z2, 0.2, groups, symmetric)
    r1, r2 = torch.autograd.grad(ref, (z1, z2))
    got = blockwise_infonce(z1, z2, 0.2, groups, symmetric, block_rows)
    g1, g2 = torch.autograd.grad(got, (z1, z2))
    assert got.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(g1, r1, atol=1e-12) and torch.allclose(g2, r2, atol=1e-12)


def test_gradcheck_scaled_output():
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: 3.0 * blockwise_infonce(a, b, 0.5, block_rows=4), (z1, z2))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="both be"):
        blockwise_infonce(torch.randn(4, 3), torch.randn(5, 3), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        blockwise_infonce(torch.randn(4, 3), torch.randn(4, 3), 0.0)
    with pytest.raises(ValueError, match="block_rows"):
        blockwise_infonce(torch.randn(4, 3), torch.randn(4, 3), 0.1, block_rows=0)


@pytest.mark.parametrize("temperature", [0.01, 0.05])
def test_small_temperature_matches_dense(temperature):
    """tau = 0.01 on unit vectors takes the dense fallback (fixed shift would underflow); 0.05 the blockwise path."""
    g = torch.Generator().manual_seed(3)
    z1 = F.normalize(torch.randn(20, 4, generator=g), dim=1).requires_grad_()
    z2 = F.normalize(torch.randn(20, 4, generator=g), dim=1).requires_grad_()
    ref = dense_infonce(z1, z2, temperature)
    r1, r2 = torch.autograd.grad(ref, (z1, z2))
    got = blockwise_infonce(z1, z2, temperature, block_rows=6)
    g1, g2 = torch.autograd.grad(got, (z1, z2))
    assert torch.isfinite(got) and got.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(g1, r1, atol=1e-5) and torch.allclose(g2, r2, atol=1e-5)
