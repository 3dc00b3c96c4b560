"""Actions for an action-conditioned DiT (``action_dim`` set): a denoiser with the DiT's call signature.

    denoiser = with_actions(model, actions_bfa)                   # per-frame actions (B, F, A), normalised
    loss = reference_loss(with_actions(model, a, present=keep), ...)   # training, ``keep`` from ``drop_actions``
    out, _ = sample_reference(with_actions(model, a, guidance=2.0), noise, ...)   # action guidance at sampling

The per-frame actions are grouped into one chunk per latent frame (``models.action_embed.chunk_actions``:
``action_frames`` frames each, F = 1 + action_frames (T - 1)); 4-d actions (B, T, action_frames, A) are such
chunks already (a window of a longer rollout: ``gw_jax.diffusion.autoregressive``). ``present`` (B,) marks clips
whose actions count (0: dropped, the model's null-action mode). ``guidance`` g > 0 runs the model a second time
without actions and returns ``out + g (out - out_null)``: classifier-free guidance on the actions alone (v is affine
in the x0 the samplers use, so guiding the output guides x0 alike). Under prompt guidance the batch is doubled, and
so are the actions. The wrapper is an nnx module (the actions ride as Variables) so samplers split and merge it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gw_jax.diffusion.masks import keep_flags
from gw_jax.models.action_embed import chunk_actions


def drop_actions(key: jax.Array, batch_size: int, rate: float) -> jax.Array:
    """(B,) present flags: each clip's actions dropped (0) with probability ``rate``, for guidance on actions."""
    return keep_flags(key, batch_size, rate)


def _tile(value, batch_size: int):
    return value if value.shape[0] == batch_size else jnp.concatenate([value] * (batch_size // value.shape[0]))


class WithActions(nnx.Module):
    def __init__(self, model, actions_bfa, present=None, guidance: float = 0.0):
        embedder = getattr(model, "action_embedder", None)
        if embedder is None:
            raise ValueError("actions given to a DiT built without action_dim")
        self.model, self.action_frames, self.guidance = model, embedder.action_frames, float(guidance)
        actions = jnp.asarray(actions_bfa, jnp.float32)
        self.actions = nnx.Variable(actions)
        self.present = nnx.Variable(jnp.ones(actions.shape[:1]) if present is None else jnp.asarray(present))

    def __call__(self, x, timesteps, crossattn_emb, fps, padding_mask=None):
        b = x.shape[0]
        actions = self.actions[...]
        chunks = _tile(actions if actions.ndim == 4 else chunk_actions(actions, x.shape[2], self.action_frames), b)
        out = self.model(x, timesteps, crossattn_emb, fps, padding_mask, actions=chunks,
                         action_present=_tile(self.present[...], b))
        if self.guidance:
            null = self.model(x, timesteps, crossattn_emb, fps, padding_mask)
            out = out + self.guidance * (out - null)
        return out


def with_actions(model, actions_bfa, *, present=None, guidance: float = 0.0) -> WithActions:
    return WithActions(model, actions_bfa, present, guidance)
