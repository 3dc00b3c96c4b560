"""Networks for inverse dynamics: an arm segmenter (small U-Net) and the IDM itself.

IDM architecture — a per-frame CNN encoder followed by residual temporal 1D convolutions over T:

* Joint angles are a *pose* quantity: each frame alone determines them up to occlusion and blur, so
  most of the work is spatial and is done per frame by a CNN that keeps *where* things are (coordinate
  channels in, a flattened 4x4 feature map out instead of global pooling, which would throw position away).
* Trajectories are smooth, and a frame where the arm is blurred or self-occluded is disambiguated by its
  neighbours, so a few temporal convolutions (receptive field of ~9 frames) refine the per-frame
  estimates. Convolutions rather than attention: they are translation-invariant in time, cheap, and work
  for any clip length, so labelling a 200-frame video needs no windowing.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def coord_channels(x: jnp.ndarray) -> jnp.ndarray:
    """Appends normalised (y, x) pixel coordinates so convolutions can tell where the arm is."""
    *lead, h, w, _ = x.shape
    ys, xs = jnp.meshgrid(jnp.linspace(-1, 1, h), jnp.linspace(-1, 1, w), indexing="ij")
    coords = jnp.broadcast_to(jnp.stack([ys, xs], -1), (*lead, h, w, 2)).astype(x.dtype)
    return jnp.concatenate([x, coords], axis=-1)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU."""

    features: int

    @nn.compact
    def __call__(self, x):
        for _ in range(2):
            x = nn.Conv(self.features, (3, 3))(x)
            x = nn.silu(nn.GroupNorm(num_groups=min(8, self.features))(x))
        return x


class UNet(nn.Module):
    """Arm segmenter: (..., H, W, 3) images in [0, 1] -> (..., H, W) arm logits. H, W divisible by 4."""

    features: tuple[int, ...] = (8, 16, 32)

    @nn.compact
    def __call__(self, images):
        lead = images.shape[:-3]
        x = coord_channels(images.reshape(-1, *images.shape[-3:]))
        skips = []
        for f in self.features[:-1]:
            x = ConvBlock(f)(x)
            skips.append(x)
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = ConvBlock(self.features[-1])(x)
        for f, skip in zip(reversed(self.features[:-1]), reversed(skips)):
            x = nn.ConvTranspose(f, (2, 2), (2, 2))(x)
            x = ConvBlock(f)(jnp.concatenate([x, skip], axis=-1))
        logits = nn.Conv(1, (1, 1))(x)[..., 0]
        return logits.reshape(*lead, *logits.shape[-2:])


class FrameEncoder(nn.Module):
    """One frame (H, W, C) -> a feature vector: strided convolutions to an (H/16, W/16) map, flattened."""

    features: tuple[int, ...] = (16, 32, 64, 128)
    embed: int = 256

    @nn.compact
    def __call__(self, x):
        x = coord_channels(x)
        for f in self.features:  # downsample first: 5x cheaper than full-resolution convs, same accuracy here
            x = nn.Conv(f, (3, 3), strides=(2, 2))(x)
            x = nn.silu(nn.GroupNorm(num_groups=8)(x))
            x = nn.Conv(f, (3, 3))(x)
            x = nn.silu(nn.GroupNorm(num_groups=8)(x))
        x = x.reshape(*x.shape[:-3], -1)
        return nn.silu(nn.Dense(self.embed)(x))


class IDM(nn.Module):
    """Inverse dynamics: masked frames (B, T, H, W, 3) in [0, 1] -> normalised joint angles (B, T, D)."""

    joints: int = 7
    embed: int = 256
    temporal_layers: int = 4
    kernel: int = 3

    @nn.compact
    def __call__(self, frames):
        b, t = frames.shape[:2]
        h = FrameEncoder(embed=self.embed)(frames.reshape(b * t, *frames.shape[2:])).reshape(b, t, -1)
        per_frame = nn.Dense(self.joints, name="per_frame_head")(h)
        for _ in range(self.temporal_layers):  # residual temporal convolutions over T
            y = nn.Conv(self.embed, (self.kernel,), padding="SAME")(nn.LayerNorm()(h))
            h = h + nn.Dense(self.embed)(nn.silu(y))
        # the temporal branch predicts a correction to the per-frame estimate
        return per_frame + nn.Dense(self.joints, kernel_init=nn.initializers.zeros, name="temporal_head")(h)
