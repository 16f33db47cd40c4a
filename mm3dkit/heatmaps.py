"""Feature heatmaps (paper Figure 2): the first three principal components of N x D features shown as RGB.

A :class:`FeaturePCA` is fitted once (:func:`fit_pca`) and then colours any features of the same space, so features
fitted *together* (2D pixel features and 3D point features of one frame, :func:`fit_joint_pca`) get one colour
mapping: the same colour means the same feature in the image and in the point cloud. Each component is scaled to
[0, 1] robustly, between its 1st and 99th percentile over the fitted data (outliers are clipped instead of
squeezing the colours of everything else).

The fit uses scikit-learn's exact PCA on the CPU, or torch's randomised low-rank PCA (:func:`torch.pca_lowrank`) on
the features' device for large inputs; either way at most ``max_samples`` rows (random, seeded) are used for the fit,
and projection/colouring runs on the features' device. Component signs are fixed (largest loading positive) so the
colours do not flip between fits.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> feats = torch.randn(500, 3, generator=g) @ torch.randn(3, 16, generator=g)  # rank-3 data
    >>> pca = fit_pca(feats)
    >>> rgb = pca.colors(feats)
    >>> tuple(rgb.shape), bool(rgb.min() >= 0 and rgb.max() <= 1), round(float(pca.explained_variance_ratio.sum()), 3)
    ((500, 3), True, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray

DEFAULT_PERCENTILES: tuple[float, float] = (1.0, 99.0)


def _as_tensor(x: ArrayLike, name: str = "features") -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.float()
    return t


@dataclass
class FeaturePCA:
    """A fitted 3-component PCA plus the per-component colour range.

    ``mean (D,)``, ``components (k, D)`` (rows = principal axes, by decreasing variance), ``lo``/``hi (k,)`` the
    projected values mapped to 0 and 1, ``explained_variance_ratio (k,)``. All tensors live on the CPU in float32 and
    are moved to the features' device when used.
    """

    mean: torch.Tensor
    components: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    explained_variance_ratio: torch.Tensor

    @property
    def dim(self) -> int:
        return int(self.components.shape[1])

    def project(self, features: ArrayLike) -> torch.Tensor:
        """``(N, D)`` features -> ``(N, k)`` principal-component scores (float32, on the features' device)."""
        f = _as_tensor(features)
        if f.shape[1] != self.dim:
            raise ValueError(f"features have {f.shape[1]} channels but the PCA was fitted on {self.dim}")
        f = f.float()
        return (f - self.mean.to(f.device)) @ self.components.to(f.device).T

    def colors(self, features: ArrayLike) -> torch.Tensor:
        """``(N, D)`` features -> ``(N, 3)`` RGB in [0, 1] (components 1, 2, 3 -> red, green, blue)."""
        p = self.project(features)
        lo, hi = self.lo.to(p.device), self.hi.to(p.device)
        rgb = ((p - lo) / (hi - lo).clamp_min(1e-12)).clamp(0.0, 1.0)
        if rgb.shape[1] < 3:  # fewer than 3 components (D < 3): pad with mid-grey
            rgb = torch.cat([rgb, rgb.new_full((len(rgb), 3 - rgb.shape[1]), 0.5)], 1)
        return rgb

    def image_colors(self, feature_image: ArrayLike, channels_first: bool = False) -> torch.Tensor:
        """``(H, W, D)`` (or ``(D, H, W)`` with ``channels_first``) feature map -> ``(H, W, 3)`` RGB in [0, 1]."""
        f = torch.as_tensor(feature_image)
        if f.ndim != 3:
            raise ValueError(f"feature image must be 3-d (H, W, D) or (D, H, W), got shape {tuple(f.shape)}")
        if channels_first:
            f = f.permute(1, 2, 0)
        h, w, d = f.shape
        return self.colors(f.reshape(h * w, d)).reshape(h, w, 3)


def _subsample(x: torch.Tensor, max_rows: int | None, generator: torch.Generator) -> torch.Tensor:
    if max_rows is None or len(x) <= max_rows:
        return x
    idx = torch.randperm(len(x), generator=generator)[:max_rows].to(x.device)
    return x[idx]


def fit_pca(*features: ArrayLike, n_components: int = 3, method: str = "auto", max_samples: int | None = 200_000,
            percentiles: tuple[float, float] = DEFAULT_PERCENTILES, seed: int = 0) -> FeaturePCA:
    """Fit a PCA on the rows of one or more ``(N_i, D)`` feature arrays (numpy or torch, any device).

    Several inputs are fitted jointly (rows concatenated), e.g. ``fit_pca(pixel_feats, point_feats)``; see
    :func:`fit_joint_pca` to give each input the same weight. ``method``: ``"sklearn"`` (exact, CPU),
    ``"lowrank"`` (:func:`torch.pca_lowrank`, on the features' device, for large inputs on a GPU) or ``"auto"``
    (``lowrank`` for CUDA tensors, else ``sklearn``). ``percentiles``: the colour range of each component.

    Example:
        >>> pca = fit_pca(np.random.default_rng(0).normal(size=(100, 8)))
        >>> tuple(pca.components.shape)
        (3, 8)
    """
    if not features:
        raise ValueError("fit_pca needs at least one feature array")
    tensors = [_as_tensor(f, f"features[{i}]") for i, f in enumerate(features)]
    dims = {t.shape[1] for t in tensors}
    if len(dims) != 1:
        raise ValueError(f"all feature arrays must have the same number of channels, got {sorted(dims)}")
    device = tensors[0].device
    x = torch.cat([t.to(device).float() for t in tensors])
    if not torch.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    k = min(n_components, x.shape[1], len(x))
    if len(x) < 2 or k < 1:
        raise ValueError(f"need at least 2 rows and 1 channel to fit a PCA, got {tuple(x.shape)}")
    gen = torch.Generator().manual_seed(seed)
    sample = _subsample(x, max_samples, gen)
    if method == "auto":
        method = "lowrank" if sample.is_cuda else "sklearn"
    if method == "sklearn":
        from sklearn.decomposition import PCA

        skl = PCA(n_components=k, svd_solver="full").fit(sample.cpu().double().numpy())
        mean = torch.from_numpy(skl.mean_).float()
        comps = torch.from_numpy(skl.components_).float()
        ratio = torch.from_numpy(skl.explained_variance_ratio_).float()
    elif method == "lowrank":
        mean_d = sample.mean(0)
        devices = [sample.device] if sample.is_cuda else []
        with torch.random.fork_rng(devices=devices):  # pca_lowrank draws from the global RNG: seed it, restore it
            torch.manual_seed(seed)
            # q a little above k improves the randomised estimate of the leading components
            _, s, v = torch.pca_lowrank(sample - mean_d, q=min(k + 6, *sample.shape), center=False, niter=4)
        total = (sample - mean_d).pow(2).sum()
        mean, comps = mean_d.cpu(), v[:, :k].T.cpu().float()
        ratio = (s[:k].pow(2) / total.clamp_min(1e-30)).cpu().float()
    else:
        raise ValueError(f"method must be 'auto', 'sklearn' or 'lowrank', got {method!r}")
    # deterministic signs: the largest-magnitude loading of each component is positive
    sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True))).squeeze(1)
    comps = comps * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]
    scores = (sample - mean.to(device)) @ comps.to(device).T
    q = torch.tensor([percentiles[0] / 100.0, percentiles[1] / 100.0], device=device)
    bounds = torch.quantile(_subsample(scores, 1_000_000, gen).float(), q, dim=0).cpu()  # quantile has a size cap
    return FeaturePCA(mean=mean, components=comps, lo=bounds[0], hi=bounds[1], explained_variance_ratio=ratio)


def fit_joint_pca(*features: ArrayLike, balance: bool = True, n_components: int = 3, method: str = "auto",
                  max_samples: int | None = 200_000, percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
                  seed: int = 0) -> FeaturePCA:
    """One PCA over several feature sets (e.g. pixel and point features of a frame) so colours are comparable.

    ``balance`` subsamples every input to the size of the smallest one, so e.g. 19,200 pixels do not outweigh
    2,000 points in the fit (every input still gets coloured in full afterwards).

    Example:
        >>> pix, pts = torch.randn(300, 16), torch.randn(40, 16)
        >>> pca = fit_joint_pca(pix, pts)
        >>> bool(torch.equal(pca.colors(pts[:5]), pca.colors(pts)[:5]))
        True
    """
    tensors = [_as_tensor(f, f"features[{i}]") for i, f in enumerate(features)]
    if balance and tensors:
        n = min(len(t) for t in tensors)
        gen = torch.Generator().manual_seed(seed + 1)
        tensors = [_subsample(t, n, gen) for t in tensors]
    return fit_pca(*tensors, n_components=n_components, method=method, max_samples=max_samples,
                   percentiles=percentiles, seed=seed)


def feature_image_to_rgb(feature_image: ArrayLike, pca: FeaturePCA | None = None, channels_first: bool = False,
                         **fit_kwargs) -> np.ndarray:
    """``(H, W, D)`` feature map (``(D, H, W)`` with ``channels_first``) -> ``(H, W, 3)`` float RGB in [0, 1].

    Fits a PCA on the image's own pixels unless a fitted ``pca`` (e.g. a joint one) is given.

    Example:
        >>> feature_image_to_rgb(torch.randn(6, 8, 16)).shape
        (6, 8, 3)
    """
    f = torch.as_tensor(feature_image)
    if f.ndim != 3:
        raise ValueError(f"feature image must be 3-d, got shape {tuple(f.shape)}")
    if channels_first:
        f = f.permute(1, 2, 0)
    if pca is None:
        pca = fit_pca(f.reshape(-1, f.shape[-1]), **fit_kwargs)
    return pca.image_colors(f).cpu().numpy()


def point_features_to_rgb(point_features: ArrayLike, pca: FeaturePCA | None = None, **fit_kwargs) -> np.ndarray:
    """``(N, D)`` point features -> ``(N, 3)`` float RGB in [0, 1] (own PCA unless ``pca`` is given).

    Example:
        >>> point_features_to_rgb(np.random.default_rng(0).normal(size=(50, 16))).shape
        (50, 3)
    """
    if pca is None:
        pca = fit_pca(point_features, **fit_kwargs)
    return pca.colors(point_features).cpu().numpy()
