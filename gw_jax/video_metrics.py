"""PSNR and SSIM for videos in [0, 1] (per frame, averaged), computed in JAX with dm_pix, and the
Frechet distance behind FVD (numpy, float64).

    psnr(truth_thwc, generated_thwc)   # float, dB; numpy or jax arrays (T, H, W, C) in [0, 1]
    ssim(truth_thwc, generated_thwc)   # float; Gaussian window 11, sigma 1.5, K1 .01, K2 .03 (Wang et al. 2004)
    frechet_feature_distance(features_a, features_b)   # FVD given (N, D) clip features

PSNR and SSIM are jitted, float32, on the default device: next to the model on GPU/TPU, no host round
trip for device arrays.
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

MAX_PSNR_DB = 100.0  # identical frames (MSE 0) score this rather than infinity


@jax.jit
def _psnr(a, b):
    return jnp.mean(jnp.minimum(dm_pix.psnr(a, b), MAX_PSNR_DB))


@jax.jit
def _ssim(a, b):
    return jnp.mean(dm_pix.ssim(a, b))


def psnr(a, b) -> float:
    """Mean over frames of 10 log10(1 / MSE); a, b (T, H, W, C) in [0, 1]."""
    return float(_psnr(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))


def ssim(a, b) -> float:
    """Mean SSIM over frames (each frame's mean over its valid window positions and channels); a, b
    (T, H, W, C) in [0, 1], H and W at least 11."""
    return float(_ssim(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))


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
