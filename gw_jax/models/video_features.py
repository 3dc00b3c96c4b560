"""A small video network whose features drive the demo's Fréchet video distance (FVD).

    net = StateNet(frame_size=32, state_dim=13, rngs=nnx.Rngs(0))
    states = net(video_bcthw)               # (B, T, state_dim): the regression head (training target)
    features = net.features(video_bcthw)    # (B, T * feature_dim): what FVD compares

FVD proper uses I3D, an action classifier trained on Kinetics; robot-arm clips at 32x32 are far from its
data, so here the feature network is trained on the simulated episodes themselves, supervised by the
simulator's ground truth (arm joints, gripper and cube positions per frame). Its features are the
per-frame embeddings after a temporal convolution (pose *and* motion), concatenated over time, so the
distance sees where the arm and cube are in each frame of a clip and how they move.

Per frame: (y, x) coordinate channels, three stride-2 3x3 convolutions with GroupNorm + SiLU, flatten
(keeps position) and a dense layer; then a temporal 3-tap convolution down to ``feature_dim``; a linear
head predicts the state from the features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx


def _coord_channels(x_nhwc: jax.Array) -> jax.Array:
    n, h, w, _ = x_nhwc.shape
    ys, xs = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing="ij")
    coords = jnp.broadcast_to(jnp.stack([ys, xs], -1), (n, h, w, 2)).astype(x_nhwc.dtype)
    return jnp.concatenate([x_nhwc, coords], axis=-1)


class StateNet(nnx.Module):
    def __init__(self, frame_size: int, state_dim: int, *, width: int = 16, hidden: int = 64, feature_dim: int = 16,
                 rngs: nnx.Rngs):
        if frame_size % 8:
            raise ValueError(f"frame_size {frame_size} must divide by 8")
        channels = [5, width, 2 * width, 4 * width]  # rgb + (y, x) in
        self.convs = nnx.List([nnx.Conv(c_in, c_out, (3, 3), strides=2, rngs=rngs)
                               for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)])
        self.norms = nnx.List([nnx.GroupNorm(c, num_groups=min(8, c), rngs=rngs) for c in channels[1:]])
        self.frame_dense = nnx.Linear(4 * width * (frame_size // 8) ** 2, hidden, rngs=rngs)
        self.temporal = nnx.Conv(hidden, feature_dim, (3,), padding="SAME", rngs=rngs)
        self.head = nnx.Linear(feature_dim, state_dim, rngs=rngs)

    def embed(self, video_bcthw: jax.Array) -> jax.Array:
        """(B, 3, T, H, W) in [-1, 1] -> per-frame features (B, T, feature_dim)."""
        b = video_bcthw.shape[0]
        x = _coord_channels(rearrange(video_bcthw, "b c t h w -> (b t) h w c"))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = nnx.silu(norm(conv(x)))
        x = nnx.silu(self.frame_dense(rearrange(x, "n h w c -> n (h w c)")))
        return nnx.silu(self.temporal(rearrange(x, "(b t) d -> b t d", b=b)))

    def __call__(self, video_bcthw: jax.Array) -> jax.Array:
        return self.head(self.embed(video_bcthw))

    def features(self, video_bcthw: jax.Array) -> jax.Array:
        """(B, T * feature_dim): per-frame features concatenated over time."""
        return rearrange(self.embed(video_bcthw), "b t d -> b (t d)")
