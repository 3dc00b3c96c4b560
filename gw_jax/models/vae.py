"""Wan2.1 causal video VAE (diffusers ``AutoencoderKLWan``) in Flax NNX, streaming with ``lax.scan``.

    vae = WanVAE.from_pretrained("Wan2.1-T2V-1.3B-Diffusers/vae")
    posterior = vae.encode(video)             # video (B, 3, 1 + 4k, H, W) in [-1, 1]
    z = vae.normalize_latents(posterior.mode())            # (B, 16, 1 + k, H/8, W/8), what the DiT sees
    video = vae.decode(vae.denormalize_latents(z))          # (B, 3, 1 + 4k, H, W) in [-1, 1]

Like diffusers, ``encode`` runs frame 0 alone and then 4-frame chunks, and ``decode`` one latent frame
at a time; here the chunks are a ``jax.lax.scan`` whose carry is every causal convolution's frame cache,
so compiled memory does not grow with clip length. ``encode(..., streaming=False)`` runs the whole clip
at once (same numbers; a test checks it). Unlike diffusers, frame counts that are not 1 + 4k and sizes
that do not divide by the spatial factor are errors rather than silently dropped frames.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from gw_jax.convert.vae_weights import load_diffusers_weights, save_diffusers_weights
from gw_jax.errors import UserInputError, load_json
from gw_jax.models.layers import matmul_precision
from gw_jax.models.vae_blocks import (AttentionBlock, CausalConv3d, ChannelRMSNorm, MidBlock, ResidualBlock,
                                      Resample, run_sequence)

CHUNK_FRAMES = 4  # diffusers encodes frame 0, then 4 frames at a time
WAN21_LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                      0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                     3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
DEFAULT_CONFIG: dict[str, Any] = dict(
    base_dim=96, decoder_base_dim=None, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
    temperal_downsample=[False, True, True], dropout=0.0, latents_mean=list(WAN21_LATENTS_MEAN),
    latents_std=list(WAN21_LATENTS_STD), is_residual=False, in_channels=3, out_channels=3, patch_size=None,
    scale_factor_temporal=4, scale_factor_spatial=8)


class Posterior(NamedTuple):
    """Diagonal Gaussian over latents (B, z, T, h, w); logvar clamped to [-30, 20] as in diffusers."""

    mean: jax.Array
    logvar: jax.Array

    def mode(self) -> jax.Array:
        return self.mean

    def sample(self, key: jax.Array) -> jax.Array:
        return self.mean + jnp.exp(0.5 * self.logvar) * jax.random.normal(key, self.mean.shape, self.mean.dtype)


class Encoder(nnx.Module):
    def __init__(self, *, in_channels: int, dim: int, z_channels: int, dim_mult, num_res_blocks: int,
                 attn_scales, temperal_downsample, rngs: nnx.Rngs, **kw):
        dims = [dim * m for m in [1, *dim_mult]]
        self.conv_in = CausalConv3d(in_channels, dims[0], (3, 3, 3), padding=(1, 1, 1), rngs=rngs, **kw)
        blocks, scale = [], 1.0
        for level, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
            for _ in range(num_res_blocks):
                blocks.append(ResidualBlock(in_dim, out_dim, rngs=rngs, **kw))
                if scale in attn_scales:
                    blocks.append(AttentionBlock(out_dim, rngs=rngs, **kw))
                in_dim = out_dim
            if level != len(dim_mult) - 1:
                mode = "downsample3d" if temperal_downsample[level] else "downsample2d"
                blocks.append(Resample(out_dim, mode, rngs=rngs, **kw))
                scale /= 2.0
        self.down_blocks = nnx.List(blocks)
        self.mid_block = MidBlock(dims[-1], rngs=rngs, **kw)
        self.norm_out = ChannelRMSNorm(dims[-1], param_dtype=kw.get("param_dtype", jnp.float32))
        self.conv_out = CausalConv3d(dims[-1], z_channels, (3, 3, 3), padding=(1, 1, 1), rngs=rngs, **kw)

    def __call__(self, x, cache=None, first: bool = True):
        cache = cache if cache is not None else (None, None, None, None)
        x, cache_in = self.conv_in(x, cache[0])
        x, cache_down = run_sequence(self.down_blocks, x, cache[1], first)
        x, cache_mid = self.mid_block(x, cache[2], first)
        x, cache_out = self.conv_out(jax.nn.silu(self.norm_out(x)), cache[3])
        return x, (cache_in, cache_down, cache_mid, cache_out)


class Decoder(nnx.Module):
    def __init__(self, *, z_channels: int, dim: int, out_channels: int, dim_mult, num_res_blocks: int,
                 temperal_upsample, rngs: nnx.Rngs, **kw):
        dims = [dim * m for m in [dim_mult[-1], *dim_mult[::-1]]]
        self.conv_in = CausalConv3d(z_channels, dims[0], (3, 3, 3), padding=(1, 1, 1), rngs=rngs, **kw)
        self.mid_block = MidBlock(dims[0], rngs=rngs, **kw)
        up_blocks = []
        for level, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
            if level > 0:
                in_dim //= 2  # the previous level's upsampler halved the width
            resnets = []
            for _ in range(num_res_blocks + 1):
                resnets.append(ResidualBlock(in_dim, out_dim, rngs=rngs, **kw))
                in_dim = out_dim
            mode = None
            if level != len(dim_mult) - 1:
                mode = "upsample3d" if temperal_upsample[level] else "upsample2d"
            up_blocks.append(UpBlock(resnets, Resample(out_dim, mode, rngs=rngs, **kw) if mode else None))
        self.up_blocks = nnx.List(up_blocks)
        self.norm_out = ChannelRMSNorm(dims[-1], param_dtype=kw.get("param_dtype", jnp.float32))
        self.conv_out = CausalConv3d(dims[-1], out_channels, (3, 3, 3), padding=(1, 1, 1), rngs=rngs, **kw)

    def __call__(self, x, cache=None, first: bool = True):
        cache = cache if cache is not None else (None, None, None, None)
        x, cache_in = self.conv_in(x, cache[0])
        x, cache_mid = self.mid_block(x, cache[1], first)
        x, cache_up = run_sequence(self.up_blocks, x, cache[2], first)
        x, cache_out = self.conv_out(jax.nn.silu(self.norm_out(x)), cache[3])
        return x, (cache_in, cache_mid, cache_up, cache_out)


class UpBlock(nnx.Module):
    def __init__(self, resnets: list, upsampler: Resample | None):
        self.resnets = nnx.List(resnets)
        self.upsamplers = nnx.List([upsampler] if upsampler is not None else [])

    def __call__(self, x, cache=None, first: bool = True):
        return run_sequence([*self.resnets, *self.upsamplers], x, cache, first)


def _stream(module: nnx.Module, first_chunk: jax.Array, later_chunks: jax.Array) -> jax.Array:
    """Runs ``module`` on the first chunk, then scans the later chunks (N, B, t, H, W, C) carrying caches."""
    out, cache = module(first_chunk, None, True)
    if later_chunks.shape[0] == 0:
        return out
    graphdef, state = nnx.split(module)

    def step(cache, chunk):
        chunk_out, cache = nnx.merge(graphdef, state)(chunk, cache, False)
        return cache, chunk_out

    _, later = jax.lax.scan(step, cache, later_chunks)
    later = rearrange(later, "n b t h w c -> b (n t) h w c")
    return jnp.concatenate([out, later], axis=1)


class WanVAE(nnx.Module):
    """The Wan2.1 VAE. Constructor kwargs are diffusers' ``AutoencoderKLWan`` config keys."""

    def __init__(self, *, rngs: nnx.Rngs | None = None, dtype=None, param_dtype=jnp.float32, **config):
        unknown = set(config) - set(DEFAULT_CONFIG) - {"_class_name", "_diffusers_version", "_name_or_path"}
        if unknown:
            raise UserInputError(f"unknown AutoencoderKLWan config keys: {sorted(unknown)}")
        cfg = {**DEFAULT_CONFIG, **{k: v for k, v in config.items() if k in DEFAULT_CONFIG}}
        if cfg["is_residual"] or cfg["patch_size"] not in (None, 1):
            raise UserInputError("only the Wan2.1 VAE is supported (is_residual=false, patch_size=null); "
                                 "this config is a Wan2.2-style VAE")
        self.config = cfg
        self.compute_dtype = jnp.dtype(dtype or param_dtype)
        rngs = rngs if rngs is not None else nnx.Rngs(0)
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        levels = len(cfg["dim_mult"]) - 1
        self.spatial_factor = 2 ** levels
        self.temporal_factor = 2 ** sum(bool(t) for t in cfg["temperal_downsample"][:levels])
        if CHUNK_FRAMES % self.temporal_factor:
            raise UserInputError(f"temperal_downsample {cfg['temperal_downsample']}: a temporal factor of "
                                 f"{self.temporal_factor} does not divide the {CHUNK_FRAMES}-frame chunks")
        z = cfg["z_dim"]
        self.encoder = Encoder(in_channels=cfg["in_channels"], dim=cfg["base_dim"], z_channels=2 * z,
                               dim_mult=cfg["dim_mult"], num_res_blocks=cfg["num_res_blocks"],
                               attn_scales=cfg["attn_scales"], temperal_downsample=cfg["temperal_downsample"],
                               rngs=rngs, **kw)
        self.quant_conv = CausalConv3d(2 * z, 2 * z, (1, 1, 1), rngs=rngs, **kw)
        self.post_quant_conv = CausalConv3d(z, z, (1, 1, 1), rngs=rngs, **kw)
        self.decoder = Decoder(z_channels=z, dim=cfg["decoder_base_dim"] or cfg["base_dim"],
                               out_channels=cfg["out_channels"], dim_mult=cfg["dim_mult"],
                               num_res_blocks=cfg["num_res_blocks"],
                               temperal_upsample=list(cfg["temperal_downsample"])[::-1], rngs=rngs, **kw)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype=None, param_dtype=jnp.float32) -> "WanVAE":
        """Loads a diffusers ``AutoencoderKLWan`` folder (``config.json`` + (sharded) safetensors)."""
        path = Path(path)
        config = load_json(path / "config.json", what="a diffusers AutoencoderKLWan config")
        model = nnx.eval_shape(lambda: cls(rngs=nnx.Rngs(0), dtype=dtype, param_dtype=param_dtype, **config))
        load_diffusers_weights(model, path)
        return model

    def save_pretrained(self, path: str | Path) -> None:
        """Writes a diffusers ``AutoencoderKLWan`` folder (config.json + diffusion_pytorch_model.safetensors)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_diffusers_weights(self, path)
        (path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan", **self.config}, indent=1))

    # ---------------------------------------------------------------- checks
    def check_video(self, video: jax.Array) -> None:
        if video.ndim != 5 or video.shape[1] != self.config["in_channels"]:
            raise UserInputError(f"video must be (B, {self.config['in_channels']}, T, H, W); got {video.shape}")
        frames, height, width = video.shape[2:]
        if (frames - 1) % CHUNK_FRAMES:
            raise UserInputError(f"video has {frames} frames; the VAE needs 1 + {CHUNK_FRAMES}k "
                                 f"(e.g. {1 + CHUNK_FRAMES * max(1, (frames - 1) // CHUNK_FRAMES)})")
        if height % self.spatial_factor or width % self.spatial_factor:
            raise UserInputError(f"video is {height}x{width}; height and width must be multiples of "
                                 f"{self.spatial_factor}")

    def check_latents(self, z: jax.Array) -> None:
        if z.ndim != 5 or z.shape[1] != self.config["z_dim"]:
            raise UserInputError(f"latents must be (B, {self.config['z_dim']}, T, h, w); got {z.shape}")

    # ---------------------------------------------------------------- encode / decode
    def encode(self, video: jax.Array, *, streaming: bool = True) -> Posterior:
        """video (B, C, 1 + 4k, H, W) in [-1, 1] -> posterior over (B, z, 1 + 4k/temporal, H/s, W/s)."""
        self.check_video(video)
        return _encode_jit(self, video, streaming)

    def _encode(self, video: jax.Array, streaming: bool) -> Posterior:
        with matmul_precision(self.compute_dtype):
            return self._encode_in_precision(video, streaming)

    def _encode_in_precision(self, video: jax.Array, streaming: bool) -> Posterior:
        x = rearrange(video, "b c t h w -> b t h w c")
        if streaming:
            later = rearrange(x[:, 1:], "b (n t) h w c -> n b t h w c", t=CHUNK_FRAMES)
            h = _stream(self.encoder, x[:, :1], later)
        else:
            h, _ = self.encoder(x, None, True)
        mean, logvar = jnp.split(self.quant_conv.apply(h).astype(jnp.float32), 2, axis=-1)
        to_ncthw = lambda a: rearrange(a, "b t h w c -> b c t h w")  # noqa: E731
        return Posterior(to_ncthw(mean), to_ncthw(jnp.clip(logvar, -30.0, 20.0)))

    def decode(self, z: jax.Array, *, streaming: bool = True) -> jax.Array:
        """latents (B, z, T, h, w) (not normalised) -> video (B, C, 1 + temporal (T - 1), H, W) in [-1, 1]."""
        self.check_latents(z)
        return _decode_jit(self, z, streaming)

    def _decode(self, z: jax.Array, streaming: bool) -> jax.Array:
        with matmul_precision(self.compute_dtype):
            return self._decode_in_precision(z, streaming)

    def _decode_in_precision(self, z: jax.Array, streaming: bool) -> jax.Array:
        x = self.post_quant_conv.apply(rearrange(z, "b c t h w -> b t h w c"))
        if streaming:
            out = _stream(self.decoder, x[:, :1], rearrange(x[:, 1:], "b n h w c -> n b 1 h w c"))
        else:
            out, _ = self.decoder(x, None, True)
        return jnp.clip(rearrange(out.astype(jnp.float32), "b t h w c -> b c t h w"), -1.0, 1.0)

    # ---------------------------------------------------------------- latent normalisation
    def _stats(self) -> tuple[jax.Array, jax.Array]:
        shape = (1, -1, 1, 1, 1)
        return (jnp.asarray(self.config["latents_mean"], jnp.float32).reshape(shape),
                jnp.asarray(self.config["latents_std"], jnp.float32).reshape(shape))

    def normalize_latents(self, z: jax.Array) -> jax.Array:
        """(z - latents_mean) / latents_std per channel: the scale GigaWorld-0's DiT works in."""
        mean, std = self._stats()
        return (z - mean) / std

    def denormalize_latents(self, z: jax.Array) -> jax.Array:
        mean, std = self._stats()
        return z * std + mean


# Compiled once per (model structure, shapes, streaming); the model's arrays are arguments, not constants.
_encode_jit = nnx.jit(WanVAE._encode, static_argnames="streaming")
_decode_jit = nnx.jit(WanVAE._decode, static_argnames="streaming")


def vae_from_config(vae_config) -> WanVAE:
    """``config.vae`` -> WanVAE: the diffusers folder in ``pretrained``, else random init from its fields."""
    if vae_config.get("pretrained"):
        return WanVAE.from_pretrained(vae_config.pretrained)
    fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(vae_config).items()
              if k in DEFAULT_CONFIG}
    print("note: config.vae.pretrained is empty; using a randomly initialised Wan2.1 VAE", flush=True)
    return WanVAE(rngs=nnx.Rngs(0), **fields)


class WanLatentCodec:
    """The codec interface the trainer and samplers use: video <-> normalised latents (posterior mode)."""

    def __init__(self, vae: WanVAE):
        self.vae = vae
        self.channels = vae.config["z_dim"]
        self.spatial_factor, self.temporal_factor = vae.spatial_factor, vae.temporal_factor

    def encode(self, video: jax.Array) -> jax.Array:
        return self.vae.normalize_latents(self.vae.encode(video).mode())

    def decode(self, latents: jax.Array) -> jax.Array:
        return self.vae.decode(self.vae.denormalize_latents(latents))

    def latent_fn(self):
        """(pure function (vae_state, video) -> normalised latents, vae_state) for use inside a train step."""
        graphdef, state = nnx.split(self.vae)

        def encode(vae_state, video):
            vae = nnx.merge(graphdef, vae_state)
            return vae.normalize_latents(vae._encode(video, True).mode())

        return encode, state
