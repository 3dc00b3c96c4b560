"""Networks for inverse dynamics (Flax NNX): an arm segmenter (small U-Net) and the IDM itself.

  seg = UNet(rngs=nnx.Rngs(0));  logits_nthw = seg(frames_nthwc)                 # arm logits
  idm = IDM(frame_hw=(64, 64), rngs=nnx.Rngs(0));  joints_btd = idm(frames_bthwc)  # normalised angles

IDM architecture — a per-frame CNN encoder followed by residual temporal 1D convolutions over T:

* Joint angles are a *pose* quantity: each frame alone determines them up to occlusion and blur, so
  most of the work is spatial and is done per frame by a CNN that keeps *where* things are (coordinate
  channels in, a flattened 4x4 feature map out instead of global pooling, which would throw position away).
* Trajectories are smooth, and a frame where the arm is blurred or self-occluded is disambiguated by its
  neighbours, so a few temporal convolutions (receptive field of ~9 frames) refine the per-frame
  estimates. Convolutions rather than attention: they are translation-invariant in time, cheap, and work
  for any clip length, so labelling a 200-frame video needs no windowing.

Layers, widths and initialisers are those of the earlier Flax Linen version (29,929 segmenter and, for
64x64 frames, 1,875,582 IDM parameters), so docs/idm.md's results carry over.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

COORDS = 2  # (y, x) channels appended by ``coord_channels``


def coord_channels(x: jax.Array) -> jax.Array:
    """Appends normalised (y, x) pixel coordinates so convolutions can tell where the arm is."""
    *lead, h, w, _ = x.shape
    ys, xs = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing="ij")
    coords = jnp.broadcast_to(jnp.stack([ys, xs], -1), (*lead, h, w, 2)).astype(x.dtype)
    return jnp.concatenate([x, coords], axis=-1)


class ConvNorm(nnx.Module):
    """Convolution -> GroupNorm (at most 8 groups) -> SiLU."""

    def __init__(self, in_features: int, features: int, strides: int = 1, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_features, features, (3, 3), strides=strides, rngs=rngs)
        self.norm = nnx.GroupNorm(features, num_groups=min(8, features), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.silu(self.norm(self.conv(x)))


class ConvBlock(nnx.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU."""

    def __init__(self, in_features: int, features: int, *, rngs: nnx.Rngs):
        self.layers = nnx.List([ConvNorm(in_features, features, rngs=rngs), ConvNorm(features, features, rngs=rngs)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        return x


class UNet(nnx.Module):
    """Arm segmenter: (..., H, W, 3) images in [0, 1] -> (..., H, W) arm logits. H, W divisible by 4."""

    def __init__(self, features: tuple[int, ...] = (8, 16, 32), *, rngs: nnx.Rngs):
        ins = (3 + COORDS, *features[:-2])
        self.down = nnx.List([ConvBlock(i, f, rngs=rngs) for i, f in zip(ins, features[:-1], strict=True)])
        self.middle = ConvBlock(features[-2], features[-1], rngs=rngs)
        ups = list(zip(features[:0:-1], features[-2::-1], strict=True))  # (in, out) per level, coarse to fine
        self.up = nnx.List([nnx.ConvTranspose(i, f, (2, 2), (2, 2), rngs=rngs) for i, f in ups])
        self.up_blocks = nnx.List([ConvBlock(2 * f, f, rngs=rngs) for _, f in ups])  # upsampled ++ skip
        self.head = nnx.Conv(features[0], 1, (1, 1), rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        lead = images.shape[:-3]
        x = coord_channels(images.reshape(-1, *images.shape[-3:]))
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nnx.max_pool(x, (2, 2), (2, 2))
        x = self.middle(x)
        for up, block, skip in zip(self.up, self.up_blocks, reversed(skips), strict=True):
            x = block(jnp.concatenate([up(x), skip], axis=-1))
        logits = self.head(x)[..., 0]
        return logits.reshape(*lead, *logits.shape[-2:])


class FrameEncoder(nnx.Module):
    """One frame (H, W, C) -> a feature vector: strided convolutions to an (H/16, W/16) map, flattened."""

    def __init__(self, frame_hw: tuple[int, int], features: tuple[int, ...] = (16, 32, 64, 128),
                 embed: int = 256, *, rngs: nnx.Rngs):
        # downsample first: 5x cheaper than full-resolution convs, same accuracy here
        ins = (3 + COORDS, *features[:-1])
        self.layers = nnx.List([m for i, f in zip(ins, features, strict=True)
                                for m in (ConvNorm(i, f, strides=2, rngs=rngs), ConvNorm(f, f, rngs=rngs))])
        h, w = frame_hw
        for _ in features:  # 'SAME' stride-2 convolutions: ceil(size / 2)
            h, w = -(-h // 2), -(-w // 2)
        self.out = nnx.Linear(h * w * features[-1], embed, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = coord_channels(x)
        for layer in self.layers:
            x = layer(x)
        return nnx.silu(self.out(x.reshape(*x.shape[:-3], -1)))


class TemporalBlock(nnx.Module):
    """Residual temporal convolution: h + Linear(SiLU(Conv1d_T(LayerNorm(h))))."""

    def __init__(self, embed: int, kernel: int, *, rngs: nnx.Rngs):
        self.norm = nnx.LayerNorm(embed, rngs=rngs)
        self.conv = nnx.Conv(embed, embed, (kernel,), padding="SAME", rngs=rngs)
        self.out = nnx.Linear(embed, embed, rngs=rngs)

    def __call__(self, h_btd: jax.Array) -> jax.Array:
        return h_btd + self.out(nnx.silu(self.conv(self.norm(h_btd))))


class IDM(nnx.Module):
    """Inverse dynamics: masked frames (B, T, H, W, 3) in [0, 1] -> normalised joint angles (B, T, D).

    ``frame_hw`` fixes the encoder's flattened feature size; clips may have any length T."""

    def __init__(self, frame_hw: tuple[int, int], joints: int = 7, embed: int = 256, temporal_layers: int = 4,
                 kernel: int = 3, *, rngs: nnx.Rngs):
        self.encoder = FrameEncoder(frame_hw, embed=embed, rngs=rngs)
        self.per_frame_head = nnx.Linear(embed, joints, rngs=rngs)
        self.temporal = nnx.List([TemporalBlock(embed, kernel, rngs=rngs) for _ in range(temporal_layers)])
        # the temporal branch predicts a correction to the per-frame estimate: zero at init
        self.temporal_head = nnx.Linear(embed, joints, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, frames_bthwc: jax.Array) -> jax.Array:
        b, t = frames_bthwc.shape[:2]
        h_btd = self.encoder(frames_bthwc.reshape(b * t, *frames_bthwc.shape[2:])).reshape(b, t, -1)
        per_frame = self.per_frame_head(h_btd)
        for block in self.temporal:
            h_btd = block(h_btd)
        return per_frame + self.temporal_head(h_btd)
