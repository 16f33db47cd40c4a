"""PCA feature heatmaps (mm3dkit.heatmaps): components recovered, colour range, joint colouring, shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mm3dkit.heatmaps import FeaturePCA, feature_image_to_rgb, fit_joint_pca, fit_pca, point_features_to_rgb


def low_rank(n: int = 2000, d: int = 16, stds=(5.0, 3.0, 1.5), noise: float = 0.01, seed: int = 0):
    """Rank-3 data with known principal axes ``w (3, d)`` (orthonormal rows, by decreasing variance)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.linalg.qr(torch.randn(d, 3, generator=g, dtype=torch.float64))[0].T
    # latent scores with exactly zero mean and diagonal sample covariance, so the sample PCs are the true axes
    z = torch.randn(n, 3, generator=g, dtype=torch.float64)
    z = torch.linalg.qr(z - z.mean(0))[0] * n**0.5 * torch.tensor(stds, dtype=torch.float64)
    offset = torch.randn(d, generator=g, dtype=torch.float64) * 3
    x = z @ w + offset + noise * torch.randn(n, d, generator=g, dtype=torch.float64)
    return x.float(), w.float(), offset.float()


@pytest.mark.parametrize("method", ["sklearn", "lowrank"])
def test_recovers_known_components(method):
    x, w, offset = low_rank()
    pca = fit_pca(x, method=method)
    overlap = (pca.components @ w.T).abs()  # (3, 3): ~identity if axes and their order are recovered
    assert torch.allclose(overlap, torch.eye(3), atol=2e-3), overlap
    assert torch.allclose(pca.mean, offset, atol=2e-3)
    assert float(pca.explained_variance_ratio.sum()) > 0.999
    assert pca.explained_variance_ratio[0] > pca.explained_variance_ratio[1] > pca.explained_variance_ratio[2]


def test_sklearn_and_lowrank_give_the_same_colours():
    x, _, _ = low_rank(noise=0.05)
    a = fit_pca(x, method="sklearn").colors(x)
    b = fit_pca(x, method="lowrank").colors(x)
    assert (a - b).abs().max() < 1e-3


def test_colour_range_and_robust_percentile_scaling():
    x, _, _ = low_rank()
    x[:5] *= 100.0  # a few huge outliers must not squeeze every other colour
    pca = fit_pca(x)
    rgb = pca.colors(x)
    assert rgb.shape == (len(x), 3) and rgb.dtype == torch.float32
    assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    scores = pca.project(x).numpy()
    assert np.allclose(pca.lo.numpy(), np.percentile(scores, 1, axis=0), rtol=1e-4, atol=1e-4)
    assert np.allclose(pca.hi.numpy(), np.percentile(scores, 99, axis=0), rtol=1e-4, atol=1e-4)
    # the bulk keeps its spread: per channel ~1% clipped at each end and a wide spread in between
    frac_low = (rgb == 0).float().mean(0)
    assert torch.all((frac_low > 0.005) & (frac_low < 0.02)), frac_low
    assert torch.all(rgb[5:].std(0) > 0.15)


def test_colours_do_not_depend_on_row_order_or_component_sign():
    x, _, _ = low_rank(n=500)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    a = fit_pca(x).colors(x)
    b = fit_pca(x[perm]).colors(x)
    assert torch.allclose(a, b, atol=1e-5)


def test_joint_pca_identical_features_identical_colours():
    g = torch.Generator().manual_seed(0)
    pixel_map = torch.randn(12, 16, 8, generator=g)  # (H, W, C) image features
    rows = torch.randint(0, 12, (40,), generator=g)
    cols = torch.randint(0, 16, (40,), generator=g)
    point_feats = pixel_map[rows, cols]  # points that carry exactly their pixel's feature
    pca = fit_joint_pca(pixel_map.reshape(-1, 8), point_feats)
    img_rgb = pca.image_colors(pixel_map)
    pts_rgb = pca.colors(point_feats)
    assert torch.equal(pts_rgb, img_rgb[rows, cols])
    # and the same through the numpy-returning helpers
    assert np.array_equal(point_features_to_rgb(point_feats, pca), feature_image_to_rgb(pixel_map, pca)[rows, cols])


def test_joint_balance_gives_each_input_equal_weight():
    g = torch.Generator().manual_seed(0)
    big = torch.zeros(5000, 4)
    big[:, 0] = torch.randn(5000, generator=g)  # the big set varies along axis 0
    small = torch.zeros(50, 4)
    small[:, 1] = 3 * torch.randn(50, generator=g)  # the small set along axis 1, with more variance
    unbalanced = fit_joint_pca(big, small, balance=False)
    balanced = fit_joint_pca(big, small, balance=True)
    assert unbalanced.components[0].abs().argmax() == 0  # 5000 rows dominate
    assert balanced.components[0].abs().argmax() == 1  # equal weights: the larger variance wins


def test_image_and_point_shapes():
    fmap = torch.randn(6, 9, 16)
    assert feature_image_to_rgb(fmap).shape == (6, 9, 3)
    chw = feature_image_to_rgb(fmap.permute(2, 0, 1), channels_first=True)
    assert np.allclose(chw, feature_image_to_rgb(fmap), atol=1e-6)
    pts = point_features_to_rgb(np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32))
    assert pts.shape == (30, 3) and pts.min() >= 0 and pts.max() <= 1
    two = fit_pca(torch.randn(20, 2))  # fewer channels than colours: grey-padded
    assert two.colors(torch.randn(4, 2)).shape == (4, 3)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="same number of channels"):
        fit_pca(torch.randn(10, 8), torch.randn(10, 4))
    with pytest.raises(ValueError, match="NaN"):
        fit_pca(torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        fit_pca(torch.randn(10))
    with pytest.raises(ValueError, match="method"):
        fit_pca(torch.randn(10, 4), method="magic")
    pca = fit_pca(torch.randn(30, 8))
    assert isinstance(pca, FeaturePCA)
    with pytest.raises(ValueError, match="fitted on 8"):
        pca.colors(torch.randn(5, 16))
    with pytest.raises(ValueError, match="3-d"):
        feature_image_to_rgb(torch.randn(4, 16))
