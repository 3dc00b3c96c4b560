"""Action conditioning for the DiT, the way Cosmos-Predict2's action-conditioned Video2World DiT does it.

    model = GigaWorld0DiT(..., action_dim=7, action_frames=4, rngs=rngs)    # 7 values per video frame
    out = model(x, timesteps, context, fps, padding, actions=a_btka)          # a_btka (B, T_latent, 4, 7)

Each latent frame gets a *chunk*: the actions of the ``action_frames`` video frames it covers (a Wan latent
covers 4 frames, the demo codec's one), flattened, plus a *present* flag (1 = these are real actions, 0 = no
actions: dropped in training for classifier-free guidance, or not given at sampling, where the chunk is zeros).
Two MLPs (Linear -> GELU (tanh) -> Linear, hidden 4D, with biases, as Cosmos') map the chunk to D values added
to the timestep embedding before its RMSNorm and to 3D values added to the adaLN-LoRA vector, so every
modulation of that latent frame sees its actions. Their last layers start at zero: a model without trained
action weights (a released checkpoint) gives exactly its old outputs, whatever the actions.

Weights under reference-style names (``action_embedder_B_D.fc1.weight`` ..., Cosmos-Predict2's): the release's
GigaWorld-0 class has no such module, so a checkpoint exported with actions loads in gw_jax only; loading a
checkpoint without them (a release) gives the action MLPs their initial values (``initial_value``).
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange
from flax import nnx

from gw_jax.models.layers import linear

# gw_jax path suffix -> reference key (Cosmos-Predict2's Mlp: fc1, fc2), both with biases
REFERENCE_NAMES = {
    (f"to_{out}", layer, kind): f"action_embedder_B_{ref}.{layer}.{'weight' if kind == 'kernel' else 'bias'}"
    for out, ref in (("emb", "D"), ("lora", "3D")) for layer in ("fc1", "fc2") for kind in ("kernel", "bias")
}


class _Mlp(nnx.Module):
    def __init__(self, in_features: int, hidden: int, out_features: int, out_names, *, rngs, dtype, param_dtype):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype, use_bias=True)
        self.fc1 = linear(in_features, hidden, ("patch", "mlp"), **kw)
        self.fc2 = linear(hidden, out_features, ("mlp", out_names), kernel_init=nnx.initializers.zeros_init(), **kw)

    def __call__(self, x):
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=True))


class ActionEmbedder(nnx.Module):
    """(B, T, action_frames, action_dim) actions + (B, T) present flags -> (emb (B, T, D), lora (B, T, 3D))."""

    def __init__(self, action_dim: int, action_frames: int, dim: int, *, rngs, dtype, param_dtype):
        self.action_dim, self.action_frames = action_dim, action_frames
        in_features = action_dim * action_frames + 1  # + the present flag
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.to_emb = _Mlp(in_features, 4 * dim, dim, "embed", **kw)
        self.to_lora = _Mlp(in_features, 4 * dim, 3 * dim, "modulation", **kw)

    def __call__(self, actions_btka, present_bt):
        b, t = present_bt.shape
        expected = (b, t, self.action_frames, self.action_dim)
        if tuple(actions_btka.shape) != expected:
            raise ValueError(f"actions have shape {tuple(actions_btka.shape)}, the DiT expects {expected} "
                             "(batch, latent frames, action_frames, action_dim)")
        present = present_bt.astype(jnp.float32)[..., None]
        chunk = rearrange(actions_btka.astype(jnp.float32), "b t k a -> b t (k a)") * present  # dropped: zeros
        features = jnp.concatenate([chunk, present], axis=-1)
        return self.to_emb(features), self.to_lora(features)


def initial_value(path: tuple, shape: tuple, dtype) -> np.ndarray:
    """The value an action parameter starts from when a checkpoint lacks it: zeros for the last layers and
    the biases, a seeded LeCun normal for the first layers' kernels (the same for every load)."""
    layer, kind = str(path[-2]), str(path[-1])
    if layer == "fc2" or kind == "bias":
        return np.zeros(shape, dtype)
    rng = np.random.default_rng(zlib.crc32(".".join(map(str, path)).encode()))
    return (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(dtype)


def chunk_actions(actions_bfa, num_latent_frames: int, action_frames: int):
    """Per-frame actions (B, F, A) of a clip -> latent-frame chunks (B, T, action_frames, A).

    Latent frame 0 covers frame 0 alone, latent j >= 1 the ``action_frames`` frames after the previous one (the
    causal video VAEs' layout: F = 1 + action_frames (T - 1)); latent 0's chunk repeats frame 0's action."""
    b, f, a = actions_bfa.shape
    if f != 1 + action_frames * (num_latent_frames - 1):
        raise ValueError(f"{f} frames of actions do not cover {num_latent_frames} latent frames of "
                         f"{action_frames} frame(s) each (need 1 + {action_frames} x (T - 1))")
    first = jnp.repeat(actions_bfa[:, :1], action_frames, axis=1)
    return jnp.concatenate([first, actions_bfa[:, 1:]], axis=1).reshape(b, num_latent_frames, action_frames, a)
