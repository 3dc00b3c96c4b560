"""Autoregressive rollouts, one latent frame at a time, over a sliding window (Vid2World / diffusion forcing).

    latents = sample_autoregressive(model, reference_latents, key, num_frames=32, window=8, context=text_emb,
                                    actions=actions_bfa, fps=fps, steps=20, guidance=1.0)   # (B, C, R + 32, H, W)
    new = next_latent(model, window_latents, position, key, context=text_emb, actions=chunks_btka)  # one frame

Frame j is generated from the ``window`` frames before it (given or generated, all clean): they are reference
latents (mask channel 1, the augment flow time), frame j starts from noise and is denoised with the reference
sampler (:func:`gw_jax.diffusion.samplers.sample_reference`, its Karras steps), then appended, and the window
slides. Each frame's noise comes from ``fold_in(key, j)``, so a longer rollout begins with the shorter one's frames.

Shapes are static (one compile for the whole rollout): the model always sees ``window + 1`` latent frames. While
fewer than ``window`` frames exist, frame j sits at window position j and the positions after it are placeholders
(zeros, denoised along and dropped). A temporal-causal DiT (``temporal_causal=True``) never looks at them, so every
frame is exactly what a window of just its history would give; a bidirectional DiT does look (use
:func:`gw_jax.diffusion.rollout` for clip-by-clip rollouts with those). Trained with diffusion forcing
(``loss.frame_sigmas="independent"``) and a random number of reference frames (``loss.max_ref_frames`` up to the
window), every step is in the training distribution.

Actions (a DiT with ``action_dim``): per-frame actions (B, F, A) for the whole rollout, F = 1 + action_frames
(R + N - 1), or their latent-frame chunks (B, R + N, action_frames, A); each step gives the model its window's
chunks (``with_actions``, with ``action_guidance``).

Keys/values are not reused: every denoising step runs the whole window (W + 1 frames) through the DiT. With a
causal DiT the history's keys/values do not change while frame j is denoised, so caching them would run W + steps
frame-passes per new frame instead of steps x (W + 1) (W 8, 20 steps: 28 vs 180, about 6x fewer FLOPs in the
blocks). It is not done here: it needs a per-block K/V cache through the scanned blocks; across frames the cache
would not be exact anyway once the window slides (a history frame's keys depend on the frames before it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gw_jax.diffusion.actions import with_actions
from gw_jax.diffusion.samplers import sample_reference
from gw_jax.models.action_embed import chunk_actions


def next_latent(model, window_latents, position, key, *, context, actions=None, action_guidance: float = 0.0,
                **sampler):
    """The latent frame at ``position`` of ``window_latents`` (B, C, S, H, W), whose frames before ``position``
    (an int, traced or not) are the clean history; frames after ``position`` are placeholders (a temporal-causal
    DiT does not see them).
    ``actions``: the window's chunks (B, S, action_frames, A). ``sampler``: keyword arguments of
    ``sample_reference`` (negative_context, fps, steps, guidance, sigma_max, augment_sigma, ...). Returns
    (B, C, 1, H, W)."""
    b, c, span, h, w = window_latents.shape
    index = jnp.arange(span)
    cond_mask = (index < position).astype(jnp.float32)[None, None, :, None, None]
    history = window_latents.astype(jnp.float32) * cond_mask
    noise = jax.random.normal(key, (b, c, span, h, w), jnp.float32) * sampler.get("sigma_max", 80.0)
    if actions is not None:
        model = with_actions(model, actions, guidance=action_guidance)
    final, _ = sample_reference(model, noise, context=context, cond_latents=history, cond_mask=cond_mask, **sampler)
    return jax.lax.dynamic_slice_in_dim(final, position, 1, axis=2)


def action_chunks(model, actions, num_latent_frames: int):
    """Per-frame actions (B, F, A) or chunks (B, T, k, A) -> chunks (B, T, k, A) for ``model``'s action_frames."""
    embedder = getattr(model, "action_embedder", None)
    if embedder is None:
        raise ValueError("actions given to a DiT built without action_dim")
    actions = jnp.asarray(actions, jnp.float32)
    if actions.ndim == 4:
        if actions.shape[1] != num_latent_frames:
            raise ValueError(f"{actions.shape[1]} latent frames of action chunks for a {num_latent_frames}-frame "
                             "rollout")
        return actions
    return chunk_actions(actions, num_latent_frames, embedder.action_frames)


def sample_autoregressive(model, reference_latents, key, *, num_frames: int, window: int, context, actions=None,
                          action_guidance: float = 0.0, **sampler):
    """``reference_latents`` (B, C, R, H, W), R >= 1 given frames; generates ``num_frames`` more one at a time,
    each from the last ``window`` frames. Returns (B, C, R + num_frames, H, W), the references unchanged.
    ``sampler``: keyword arguments of ``sample_reference`` (fps, steps, guidance, sigma_max, augment_sigma, ...)."""
    b, c, r, h, w = reference_latents.shape
    if r < 1 or window < 1 or num_frames < 0:
        raise ValueError(f"need at least one reference frame ({r}), window >= 1 ({window}), num_frames >= 0 "
                         f"({num_frames})")
    total = r + num_frames
    span = min(window + 1, total)
    chunks = None if actions is None else action_chunks(model, actions, total)
    buffer = jnp.zeros((b, c, total, h, w), jnp.float32).at[:, :, :r].set(reference_latents.astype(jnp.float32))
    if num_frames == 0:
        return buffer
    graphdef, params = nnx.split(model) if isinstance(model, nnx.Module) else (None, None)

    def generate(carry, j):
        buffer, params = carry  # params ride in the carry: the model is rebuilt from scan-level values
        step_model = model if graphdef is None else nnx.merge(graphdef, params)
        start = jnp.clip(j - (span - 1), 0, total - span)
        window_latents = jax.lax.dynamic_slice_in_dim(buffer, start, span, axis=2)
        window_actions = None if chunks is None else jax.lax.dynamic_slice_in_dim(chunks, start, span, axis=1)
        new = next_latent(step_model, window_latents, j - start, jax.random.fold_in(key, j), context=context,
                          actions=window_actions, action_guidance=action_guidance, **sampler)
        return (jax.lax.dynamic_update_slice_in_dim(buffer, new, j, axis=2), params), None

    (buffer, _), _ = jax.lax.scan(generate, (buffer, params), jnp.arange(r, total))
    return buffer
