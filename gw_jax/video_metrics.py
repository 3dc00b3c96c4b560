"""Video metrics, numpy: PSNR and SSIM per frame (videos in [0, 1]) and the Frechet distance behind FVD."""

from __future__ import annotations

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over frames of 10 log10(1 / MSE); a, b (T, H, W, C) in [0, 1]."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def _gaussian_blur(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable Gaussian blur over H and W of (T, H, W, C), 'valid' region only."""
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    windows_h = np.lib.stride_tricks.sliding_window_view(x, len(kernel), axis=1)
    x = np.tensordot(windows_h, kernel, axes=([-1], [0]))
    windows_w = np.lib.stride_tricks.sliding_window_view(x, len(kernel), axis=2)
    return np.tensordot(windows_w, kernel, axes=([-1], [0]))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004; Gaussian window 11, sigma 1.5, K1 .01, K2 .03) over frames and
    channels; a, b (T, H, W, C) in [0, 1], H and W at least 11."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_a, mu_b = _gaussian_blur(a), _gaussian_blur(b)
    var_a = _gaussian_blur(a * a) - mu_a ** 2
    var_b = _gaussian_blur(b * b) - mu_b ** 2
    cov = _gaussian_blur(a * b) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(score.mean())


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) of features (N, D), the unbiased (N - 1) estimate as FID/FVD use."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be (N >= 2, D), got {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Squared 2-Wasserstein (Frechet) distance between N(mean_a, cov_a) and N(mean_b, cov_b):
    |mean_a - mean_b|^2 + tr(cov_a + cov_b - 2 (cov_a^1/2 cov_b cov_a^1/2)^1/2).

    The trace of the matrix square root is taken through the symmetric form (eigenvalues of a PSD
    matrix), which equals tr((cov_a cov_b)^1/2) and stays real for singular (rank < D) estimates.
    """
    root_a = _psd_sqrt(np.asarray(cov_a, np.float64))
    middle = root_a @ np.asarray(cov_b, np.float64) @ root_a
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
    diff = np.asarray(mean_a, np.float64) - np.asarray(mean_b, np.float64)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)


def frechet_feature_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D): FID / FVD given features."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))
