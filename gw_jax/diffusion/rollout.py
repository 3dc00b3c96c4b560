"""Long autoregressive rollouts: clip after clip, each conditioned on the end of the one before.

Clip 0 starts from the reference latents (e.g. the encoded first frame: ``num_ref`` latent frames);
every next clip takes the last ``overlap`` latent frames of the previous clip as its reference latents
and generates the rest. Overlapping frames are kept once, so the stitched video has no seam and no
repeated frames: T + (n - 1) * (T - overlap) latent frames. A pure function: jit it, vmap it over keys.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gw_jax.diffusion.samplers import sample_reference


def rollout(model, reference_latents, key, *, num_clips: int, clip_frames: int, overlap: int, context,
            negative_context=None, fps=16.0, steps: int = 30, guidance: float = 7.0, sigma_max: float = 80.0,
            augment_sigma: float = 0.001):
    """reference_latents (B, C, R, H, W) with R <= clip_frames reference latent frames for clip 0.

    Returns latents (B, C, clip_frames + (num_clips - 1) * (clip_frames - overlap), H, W).
    """
    b, c, num_ref, h, w = reference_latents.shape
    if not 0 < overlap < clip_frames or num_ref > clip_frames:
        raise ValueError(f"need 0 < overlap ({overlap}) < clip_frames ({clip_frames}) and "
                         f"reference frames ({num_ref}) <= clip_frames")
    frames = jnp.arange(clip_frames)

    def clip(cond_latents, n_cond, clip_key):
        mask = (frames < n_cond).astype(jnp.float32)[None, None, :, None, None]
        noise = jax.random.normal(clip_key, (b, c, clip_frames, h, w), jnp.float32) * sigma_max
        final, _ = sample_reference(model, noise, context=context, negative_context=negative_context,
                                    cond_latents=cond_latents, cond_mask=mask, fps=fps, steps=steps,
                                    guidance=guidance, sigma_max=sigma_max, augment_sigma=augment_sigma)
        return final

    keys = jax.random.split(key, num_clips)
    first_cond = jnp.zeros((b, c, clip_frames, h, w), jnp.float32).at[:, :, :num_ref].set(reference_latents)
    first = clip(first_cond, num_ref, keys[0])

    def next_clip(previous, clip_key):
        cond = jnp.zeros_like(previous).at[:, :, :overlap].set(previous[:, :, clip_frames - overlap:])
        current = clip(cond, overlap, clip_key)
        return current, current[:, :, overlap:]

    _, new_parts = jax.lax.scan(next_clip, first, keys[1:])  # (n-1, B, C, T - overlap, H, W)
    new_parts = jnp.moveaxis(new_parts, 0, 2).reshape(b, c, -1, h, w)
    return jnp.concatenate([first, new_parts], axis=2)
