"""PSNR and SSIM for videos in [0, 1] (per frame, averaged), numpy."""

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
