"""Extra control channels for the DiT: a denoiser that sees ``concat([x, control])`` along channels.

    denoiser = with_control(model, control_bcthw)       # same call signature as the DiT
    loss = reference_loss(denoiser, latents, ...)        # training (``batch["control"]`` in the train step)
    out, _ = sample_reference(denoiser, noise, ...)      # sampling

The DiT is built with ``in_channels = latent channels + 1 (reference mask) + control channels``; the control
(B, C_ctrl, T, H, W) sits after the mask channel, at the latents' resolution. Under classifier-free guidance
the batch is doubled (negative and positive prompt), and so is the control. The wrapper is an nnx module
(the control rides as a Variable) so samplers split and merge it like the DiT itself.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx


class WithControl(nnx.Module):
    def __init__(self, model, control):
        self.model = model
        self.control = nnx.Variable(jnp.asarray(control))

    def __call__(self, x, timesteps, crossattn_emb, fps, padding_mask=None):
        c = self.control[...].astype(x.dtype)
        if x.shape[0] != c.shape[0]:
            c = jnp.concatenate([c] * (x.shape[0] // c.shape[0]), axis=0)
        return self.model(jnp.concatenate([x, c], axis=1), timesteps, crossattn_emb, fps, padding_mask)


def with_control(model, control) -> WithControl:
    return WithControl(model, control)
