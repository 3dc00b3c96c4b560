"""Building blocks of the Wan2.1 causal video VAE (diffusers ``AutoencoderKLWan``) in Flax NNX.

Activations are channels-last video ``(B, T, H, W, C)``. Every block is causal in time and streams:
``block(x, cache, first) -> (y, new_cache)`` where ``cache`` holds what the block must remember of the
frames before ``x`` (``None`` = the clip starts here: zeros) and ``first`` says that ``x`` begins the
clip. Calling a block once on a whole clip, or chunk by chunk carrying the cache, gives the same frames.

What a cache holds, per causal convolution, is the last ``2 * padding_t`` frames of its *input* stream
(zeros before the clip) — exactly the causal zero padding of the whole-clip convolution. The temporal
resamplers treat the clip's first frame specially, as diffusers does: it skips the temporal convolution
(downsampling keeps it as latent frame 0; upsampling turns latent frame 0 into one frame, every later
latent frame into two).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Cache = Any  # a pytree of arrays (or None) mirroring the block structure


def _compute(x: jax.Array, dtype) -> jax.Array:
    return x if dtype is None else x.astype(dtype)


class CausalConv3d(nnx.Module):
    """3D convolution, zero-padded ``2 * padding_t`` frames in front (causal) and ``padding_s`` around.

    ``weight`` is (kt, kh, kw, in, out); a diffusers ``Conv2d`` loads as kt = 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int], *,
                 padding: tuple[int, int, int] = (0, 0, 0), stride: tuple[int, int, int] = (1, 1, 1),
                 rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
        self.history = 2 * padding[0]
        self.spatial_padding = padding[1:]
        self.stride = stride
        self.dtype = dtype
        fan_in = in_channels * kernel[0] * kernel[1] * kernel[2]
        init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")  # torch's default scale
        self.weight = nnx.Param(init(rngs.params(), (*kernel, in_channels, out_channels), param_dtype))
        bound = fan_in ** -0.5
        self.bias = nnx.Param(jax.random.uniform(rngs.params(), (out_channels,), param_dtype, -bound, bound))

    def __call__(self, x: jax.Array, cache: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
        """x (B, T, H, W, C) -> (y, last ``history`` input frames); cache None means zeros."""
        new_cache = None
        if self.history:
            if cache is None:
                cache = jnp.zeros((x.shape[0], self.history, *x.shape[2:]), x.dtype)
            x = jnp.concatenate([cache.astype(x.dtype), x], axis=1)
            new_cache = x[:, -self.history:]
        return self.apply(x), new_cache

    def apply(self, x: jax.Array) -> jax.Array:
        """The convolution alone (no causal padding): x (B, T, H, W, C)."""
        dtype = self.dtype or x.dtype
        (ph, pw) = self.spatial_padding
        weight = self.weight[...].astype(dtype)
        if self.stride[0] == 1:
            # As a sum over the kernel's frames of 2D convs on (B*T) images: XLA:CPU runs this ~1.4x
            # faster than its 3D convolution, and accelerators see the same dot products.
            kt, out_frames = weight.shape[0], x.shape[1] - weight.shape[0] + 1
            y = 0.0
            for k in range(kt):
                frames = x[:, k:k + out_frames].reshape(-1, *x.shape[2:]).astype(dtype)
                y = y + jax.lax.conv_general_dilated(frames, weight[k], window_strides=self.stride[1:],
                                                     padding=((ph, ph), (pw, pw)),
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
            y = y.reshape(x.shape[0], out_frames, *y.shape[1:])
        else:
            y = jax.lax.conv_general_dilated(
                x.astype(dtype), weight, window_strides=self.stride, padding=((0, 0), (ph, ph), (pw, pw)),
                dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
        return y + self.bias[...].astype(dtype)


class ChannelRMSNorm(nnx.Module):
    """diffusers ``WanRMS_norm``: x / max(||x||, 1e-12) * sqrt(C) * gamma over channels, in float32."""

    def __init__(self, channels: int, *, param_dtype=jnp.float32):
        self.gamma = nnx.Param(jnp.ones((channels,), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        norm = jnp.sqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True))
        y = x32 / jnp.maximum(norm, 1e-12) * (x.shape[-1] ** 0.5) * self.gamma[...].astype(jnp.float32)
        return y.astype(x.dtype)


class ResidualBlock(nnx.Module):
    """norm -> SiLU -> causal conv 3x3x3, twice, plus a 1x1x1 shortcut when the width changes."""

    def __init__(self, in_dim: int, out_dim: int, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
        conv = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.norm1 = ChannelRMSNorm(in_dim, param_dtype=param_dtype)
        self.conv1 = CausalConv3d(in_dim, out_dim, (3, 3, 3), padding=(1, 1, 1), **conv)
        self.norm2 = ChannelRMSNorm(out_dim, param_dtype=param_dtype)
        self.conv2 = CausalConv3d(out_dim, out_dim, (3, 3, 3), padding=(1, 1, 1), **conv)
        self.conv_shortcut = CausalConv3d(in_dim, out_dim, (1, 1, 1), **conv) if in_dim != out_dim else None

    def __call__(self, x, cache: Cache = None, first: bool = True):
        cache1, cache2 = cache if cache is not None else (None, None)
        shortcut = self.conv_shortcut.apply(x) if self.conv_shortcut is not None else x
        h, cache1 = self.conv1(jax.nn.silu(self.norm1(x)), cache1)
        h, cache2 = self.conv2(jax.nn.silu(self.norm2(h)), cache2)  # dropout 0 at inference
        return h + shortcut, (cache1, cache2)


class AttentionBlock(nnx.Module):
    """Single-head self-attention over the pixels of each frame (no mixing across time)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
        conv = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.norm = ChannelRMSNorm(dim, param_dtype=param_dtype)
        self.to_qkv = CausalConv3d(dim, 3 * dim, (1, 1, 1), **conv)
        self.proj = CausalConv3d(dim, dim, (1, 1, 1), **conv)

    def __call__(self, x, cache: Cache = None, first: bool = True):
        batch, frames, height, width, dim = x.shape
        qkv = self.to_qkv.apply(self.norm(x)).reshape(batch * frames, height * width, 3 * dim)
        q, k, v = jnp.split(qkv[:, :, None], 3, axis=-1)  # one head: (B*T, H*W, 1, C)
        out = jax.nn.dot_product_attention(q, k, v, implementation="xla").reshape(batch, frames, height, width, dim)
        return x + self.proj.apply(out), None


class Resample(nnx.Module):
    """Spatial (x2 / /2) resampling per frame, with a causal temporal (x2 / /2) part in the 3D modes.

    Modes as in diffusers: ``downsample2d``, ``downsample3d``, ``upsample2d``, ``upsample3d``.
    """

    def __init__(self, dim: int, mode: str, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
        conv = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample_conv = CausalConv3d(dim, dim // 2, (1, 3, 3), padding=(0, 1, 1), **conv)
        elif mode.startswith("downsample"):  # zero pad right/bottom by one, then a stride-2 3x3 conv
            self.resample_conv = CausalConv3d(dim, dim, (1, 3, 3), stride=(1, 2, 2), **conv)
        else:
            raise ValueError(f"unknown resample mode {mode!r}")
        if mode == "upsample3d":  # makes two frames' worth of channels per frame: causal, history 2
            self.time_conv = CausalConv3d(dim, 2 * dim, (3, 1, 1), padding=(1, 0, 0), **conv)
        elif mode == "downsample3d":  # stride-2 temporal conv whose history is the previous input frame
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), **conv)
        else:
            self.time_conv = None

    def __call__(self, x, cache: Cache = None, first: bool = True):
        new_cache = None
        if self.mode == "upsample3d":
            x, new_cache = self._upsample_time(x, cache, first)
        if self.mode.startswith("upsample"):
            x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)  # nearest x2 in H and W
            x = self.resample_conv.apply(x)
        else:
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1), (0, 0)))
            x = self.resample_conv.apply(x)
        if self.mode == "downsample3d":
            x, new_cache = self._downsample_time(x, cache, first)
        return x, new_cache

    def _upsample_time(self, x, cache, first):
        """Frame 0 of the clip stays one frame; every later frame becomes two (from a causal conv)."""
        head, x = (x[:, :1], x[:, 1:]) if first else (None, x)
        if x.shape[1]:
            doubled, cache = self.time_conv(x, cache)
            doubled = doubled.reshape(*doubled.shape[:-1], 2, -1)  # channels: (two frames, dim)
            x = jnp.moveaxis(doubled, -2, 2).reshape(x.shape[0], 2 * x.shape[1], *x.shape[2:])
        elif cache is None:  # nothing after frame 0 yet: the conv's history is still all zeros
            cache = jnp.zeros((x.shape[0], self.time_conv.history, *x.shape[2:]), x.dtype)
        return (x if head is None else jnp.concatenate([head, x], axis=1)), cache

    def _downsample_time(self, x, cache, first):
        """Frame 0 of the clip passes as is; then (previous, t, t+1) -> one frame, stride 2."""
        stream = x if first else jnp.concatenate([cache.astype(x.dtype), x], axis=1)
        out = self.time_conv.apply(stream) if stream.shape[1] >= 3 else stream[:, :0]
        if first:
            out = jnp.concatenate([x[:, :1], out], axis=1)
        return out, x[:, -1:]


class MidBlock(nnx.Module):
    """Residual block, attention, residual block."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, dtype=None, param_dtype=jnp.float32):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.resnets = nnx.List([ResidualBlock(dim, dim, **kw), ResidualBlock(dim, dim, **kw)])
        self.attentions = nnx.List([AttentionBlock(dim, **kw)])

    def __call__(self, x, cache: Cache = None, first: bool = True):
        cache = cache if cache is not None else (None, None)
        x, cache0 = self.resnets[0](x, cache[0], first)
        x, _ = self.attentions[0](x)
        x, cache1 = self.resnets[1](x, cache[1], first)
        return x, (cache0, cache1)


def run_sequence(layers, x, cache: Cache, first: bool):
    """Runs blocks in order, each with its own entry of the cache list."""
    caches = cache if cache is not None else [None] * len(layers)
    new_caches = []
    for layer, layer_cache in zip(layers, caches, strict=True):
        x, layer_cache = layer(x, layer_cache, first)
        new_caches.append(layer_cache)
    return x, new_caches
