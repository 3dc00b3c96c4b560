"""PSNR and SSIM for videos in [0, 1] (per frame, averaged), computed in JAX with dm_pix.

    psnr(truth_thwc, generated_thwc)   # float, dB; numpy or jax arrays (T, H, W, C) in [0, 1]
    ssim(truth_thwc, generated_thwc)   # float; Gaussian window 11, sigma 1.5, K1 .01, K2 .03 (Wang et al. 2004)

Jitted, float32, on the default device: next to the model on GPU/TPU, no host round trip for device arrays.
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp

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
