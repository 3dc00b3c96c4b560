"""The reference training objective: EDMLoss(sigma_method=3, p_mean=0, p_std=1, use_flow=True, sigma_data=1).

sigma = exp(N(p_mean, p_std)); flow time t = sigma / (1 + sigma); the network sees (1 - t)(x0 + sigma eps)
= (1 - t) x0 + t eps and predicts v = eps - x0; denoised = (1 - t) x_noisy - t v; loss per sample
(sigma^2 + 1) / sigma^2 * mean((denoised - x0)^2). Reference latents replace the noisy input unchanged,
a mask channel marks them, their flow time comes from a tiny augment sigma, and their denoised output is
overwritten by the reference latents (zero error, but by default they still count in the mean).

Diffusion forcing (a gw_jax option, ``loss.frame_sigmas="independent"``; Vid2World, Chen et al. 2024): sigma
(B, T) gives every latent frame its own noise level, drawn independently from the same log-normal; the weight
(sigma^2 + 1) / sigma^2 then applies per frame. With a temporal-causal DiT any mix of clean history and noisy
future is in distribution, which autoregressive rollouts (``gw_jax.diffusion.autoregressive``) rely on.

``detail_weight`` a > 0 (a gw_jax option, off by default: the reference objective is unchanged) weights each
latent cell's squared error by 1 + a * d / mean(d), renormalised to mean 1 per clip, where d is the cell's
distance (over channels) from the reference frame plus its distance from its frame's spatial median (the
background): small moving or foreground objects (the arm's hand, a cube) count more than flat background.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Denoiser = Callable  # model(x (B,C+1,T,H,W), timesteps (B,1,T,1,1), context, fps, padding_mask) -> (B,C,T,H,W)

TRAIN_AUGMENT_SIGMA = 1e-4  # the reference trainer's augment sigma for reference latents


def flow_time(sigma):
    return sigma / (1.0 + sigma)


FRAME_SIGMAS = ("shared", "independent")


def sample_training_inputs(key: jax.Array, latents_shape, *, p_mean: float = 0.0, p_std: float = 1.0,
                           frame_sigmas: str = "shared"):
    """(noise like latents, sigma) with log sigma ~ N(p_mean, p_std): sigma (B, 1), one per clip (the
    reference), or (B, T) with ``frame_sigmas="independent"``, one per latent frame (diffusion forcing)."""
    if frame_sigmas not in FRAME_SIGMAS:
        raise ValueError(f"frame_sigmas {frame_sigmas!r}: choose from {FRAME_SIGMAS}")
    key_noise, key_sigma = jax.random.split(key)
    noise = jax.random.normal(key_noise, latents_shape, jnp.float32)
    per_clip = latents_shape[2] if frame_sigmas == "independent" else 1
    sigma = jnp.exp(p_mean + p_std * jax.random.normal(key_sigma, (latents_shape[0], per_clip), jnp.float32))
    return noise, sigma


def conditioned_model_inputs(noisy_input, cond_latents, cond_mask, t_frames, augment_sigma):
    """Replaces reference latents, appends the mask channel, gives them the augment flow time.

    noisy_input (B,C,T,H,W) already scaled by c_in; cond_mask (B or 1, 1, T, 1, 1); t_frames
    broadcastable to (B, 1, T, 1, 1). Returns (x (B, C+1, T, H, W), timesteps (B, 1, T, 1, 1)).
    """
    b, _, t, h, w = noisy_input.shape
    x = cond_mask * cond_latents + (1.0 - cond_mask) * noisy_input
    mask_channel = jnp.broadcast_to(cond_mask, (b, 1, t, h, w)).astype(x.dtype)
    timesteps = cond_mask * flow_time(augment_sigma) + (1.0 - cond_mask) * t_frames
    return jnp.concatenate([x, mask_channel], axis=1), jnp.broadcast_to(timesteps, (b, 1, t, 1, 1))


def zero_padding_mask(latents_shape, dtype=jnp.float32):
    b, _, _, h, w = latents_shape
    return jnp.zeros((b, 1, 8 * h, 8 * w), dtype)


def detail_weights(latents_bcthw: jax.Array, strength: float) -> jax.Array:
    """(B, 1, T, H, W) per-cell loss weights, mean 1 per clip: 1 + strength * d / mean(d), renormalised.

    d = |z_t - z_0| + |z_t - spatial median of z_t| (L2 over channels): change since the first latent frame
    plus difference from the frame's background."""
    change = jnp.linalg.norm(latents_bcthw - latents_bcthw[:, :, :1], axis=1, keepdims=True)
    background = jnp.median(latents_bcthw, axis=(3, 4), keepdims=True)
    foreground = jnp.linalg.norm(latents_bcthw - background, axis=1, keepdims=True)
    d = change + foreground
    weight = 1.0 + strength * d / jnp.maximum(jnp.mean(d, axis=(2, 3, 4), keepdims=True), 1e-6)
    return jax.lax.stop_gradient(weight / jnp.mean(weight, axis=(2, 3, 4), keepdims=True))


def reference_loss_terms(model: Denoiser, latents, noise, sigma, ref_masks, context, fps, *,
                         augment_sigma: float = TRAIN_AUGMENT_SIGMA, exclude_reference_from_mean: bool = False,
                         detail_weight: float = 0.0, cell_weights=None):
    """Everything the reference computes in one training forward (for tests and diagnostics). ``sigma`` (B, 1),
    or (B, T) for a noise level per latent frame (diffusion forcing). ``cell_weights`` (B, 1, T, H, W): given
    per-cell weights of the squared error (a gw_jax option: e.g. from the simulator's object positions)."""
    b = latents.shape[0]
    s = jnp.reshape(sigma, (b, 1, -1, 1, 1)).astype(jnp.float32)  # (B, 1, 1 or T, 1, 1)
    t = flow_time(s)
    noisy = latents + noise * s
    ref_latents = latents * ref_masks
    model_input, timesteps = conditioned_model_inputs(noisy * (1.0 - t), ref_latents, ref_masks, t, augment_sigma)
    pred = model(model_input, timesteps, context, fps, zero_padding_mask(latents.shape, latents.dtype))
    denoised = (1.0 - t) * noisy - t * pred.astype(jnp.float32)
    denoised = ref_masks * ref_latents + (1.0 - ref_masks) * denoised
    squared = jnp.square(denoised - latents)
    if detail_weight:  # opt-in (gw_jax): emphasise foreground / moving cells; 0 keeps the reference's loss
        squared = squared * detail_weights(latents, detail_weight)
    if cell_weights is not None:
        squared = squared * jax.lax.stop_gradient(cell_weights.astype(jnp.float32))
    loss_weight = (jnp.square(s) + 1.0) / jnp.square(s)
    per_frame = s.shape[2] > 1
    if per_frame:  # each frame's error weighted by its own sigma (one sigma: the reference's order of operations)
        squared = squared * loss_weight
    if exclude_reference_from_mean:
        weight = jnp.broadcast_to(1.0 - ref_masks, squared.shape)
        per_sample = jnp.sum(squared * weight, axis=(1, 2, 3, 4)) / jnp.maximum(jnp.sum(weight, axis=(1, 2, 3, 4)), 1.0)
    else:
        per_sample = jnp.mean(squared, axis=(1, 2, 3, 4))
    if not per_frame:
        per_sample = loss_weight.reshape(b) * per_sample
    return dict(model_input=model_input, timesteps=timesteps, pred=pred, denoised=denoised,
                per_sample_loss=per_sample)


def reference_loss(model: Denoiser, latents, noise, sigma, ref_masks, context, fps, **kwargs) -> jax.Array:
    """Per-sample reference loss (B,) for latents (B,16,T,H,W), sigma (B,1) or (B,T), ref_masks (B,1,T,1,1)."""
    return reference_loss_terms(model, latents, noise, sigma, ref_masks, context, fps, **kwargs)["per_sample_loss"]
