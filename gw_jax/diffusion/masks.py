"""Reference-frame masks (the seed's ``MaskGenerator``) as pure functions of a key.

``MaskGenerator(max_ref_frames, factor=4, start)``: draw n ~ U{start, ..., max_ref_latents} reference
latents per clip, max_ref_latents = 1 + (max_ref_frames - 1) // factor; in frame space that is the first
1 + (n - 1) * factor frames (none when n = 0). The released config uses max_ref_frames=1, start=1: always
exactly the first latent (the first frame).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gw_jax.errors import UserInputError


def max_ref_latents_of(max_ref_frames: int, factor: int, start: int) -> int:
    """How many latents can be references; checks the MaskGenerator settings (a UserInputError if bad)."""
    if max_ref_frames <= 0 or (max_ref_frames - 1) % factor:
        raise UserInputError(f"max_ref_frames={max_ref_frames} must be 1 + k*factor (factor {factor})")
    max_ref_latents = 1 + (max_ref_frames - 1) // factor
    if not 0 <= start <= max_ref_latents:
        raise UserInputError(f"ref start={start} must be in [0, {max_ref_latents}]")
    return max_ref_latents


def sample_num_ref_latents(key, batch_size: int, *, max_ref_frames: int = 1, factor: int = 4, start: int = 1):
    max_ref_latents = max_ref_latents_of(max_ref_frames, factor, start)
    return jax.random.randint(key, (batch_size,), start, max_ref_latents + 1)


def sample_latent_ref_masks(key, *, batch_size: int, num_latent_frames: int, max_ref_frames: int = 1,
                            factor: int = 4, start: int = 1) -> jax.Array:
    """(B, 1, T_latent, 1, 1) float32: 1 on each clip's reference latents."""
    n = sample_num_ref_latents(key, batch_size, max_ref_frames=max_ref_frames, factor=factor, start=start)
    mask = jnp.arange(num_latent_frames)[None, :] < n[:, None]
    return mask.astype(jnp.float32)[:, None, :, None, None]


def sample_ref_masks(key, *, batch_size: int, num_frames: int, max_ref_frames: int = 1, factor: int = 4,
                     start: int = 1) -> tuple[jax.Array, jax.Array]:
    """(frame masks (B, T_frames), latent masks (B, 1, T_latent, 1, 1)) drawn with the same n."""
    if (num_frames - 1) % factor or num_frames < max_ref_frames:
        raise UserInputError(f"num_frames={num_frames} must be 1 + k*{factor} and >= max_ref_frames")
    n = sample_num_ref_latents(key, batch_size, max_ref_frames=max_ref_frames, factor=factor, start=start)
    num_latents = 1 + (num_frames - 1) // factor
    n_frames = jnp.where(n > 0, 1 + (n - 1) * factor, 0)
    frame_masks = (jnp.arange(num_frames)[None, :] < n_frames[:, None]).astype(jnp.float32)
    latent_masks = (jnp.arange(num_latents)[None, :] < n[:, None]).astype(jnp.float32)[:, None, :, None, None]
    return frame_masks, latent_masks


def latent_ref_masks_from_frames(frame_masks, num_latent_frames: int) -> jax.Array:
    """Frame masks (B, T_frames), 1 on a prefix of frames -> latent masks (B, 1, T_latent, 1, 1). With the
    codec's time factor f = (T_frames - 1) / (T_latent - 1), latent k covers frames f(k-1)+1..fk, so it is a
    reference exactly when frame k*f is."""
    num_frames = frame_masks.shape[1]
    factor = (num_frames - 1) // max(num_latent_frames - 1, 1) if num_latent_frames > 1 else 1
    if 1 + factor * (num_latent_frames - 1) != num_frames:
        raise ValueError(f"{num_frames} frames do not map onto {num_latent_frames} latent frames")
    return jnp.asarray(frame_masks, jnp.float32)[:, ::factor][:, None, :, None, None]


def keep_flags(key: jax.Array, batch_size: int, rate: float) -> jax.Array:
    """(B,) float flags, each clip's conditioning dropped (0) with probability ``rate``: the null mode that
    classifier-free guidance steers away from (actions, reference frames)."""
    return (jax.random.uniform(key, (batch_size,)) >= rate).astype(jnp.float32)


def drop_reference_frames(key, latent_masks, rate: float) -> jax.Array:
    """``latent_masks`` (B, 1, T, 1, 1) with each clip's reference frames all dropped (every frame noised) with
    probability ``rate``: the unconditioned mode that guidance on the reference frame (``make_x0_fn``'s
    ``reference_guidance``) steers away from."""
    if not rate:
        return latent_masks
    keep_b = keep_flags(key, latent_masks.shape[0], rate).astype(latent_masks.dtype)
    return latent_masks * keep_b[:, None, None, None, None]
