"""A small learned latent codec for simulated robot video: a patch autoencoder (the demo's "VAE").

    codec = PatchVAE(channels=16, rngs=nnx.Rngs(0))          # train with gw_jax.train.codec.train_codec
    z = codec.encode(video)        # video (B, 3, T, H, W) in [-1, 1] -> (B, 16, T, H/8, W/8), normalised
    video = codec.decode(z)        # -> (B, 3, T, H/2, W/2) in [-1, 1] (the 2x2-pooled video)
    codec.save(path); PatchVAE.load(path)                     # Orbax params + config.json

Frames are average-pooled by ``pool`` and cut into ``fold`` x ``fold`` patches (3 fold^2 values). The
encoder is a linear projection of each patch (initialised to the patches' principal directions) plus a
convolutional residual over the patch grid; the decoder is the matching linear map back plus a
convolutional residual on the latent grid and a 3x3 convolution at pixel resolution that smooths patch
seams. Latents are normalised per channel over the training set (``latents_mean`` / ``latents_std``,
as the Wan VAE's config does for the released model). No temporal compression.

Why not the fixed pixel codec: measured in docs/demo.md. Its 48 channels give a 2x2-patch token of 192
values, more than a tiny DiT's width, and its decoder is the identity, so every bit of noise the tiny
denoiser leaves in its last steps lands in the picture; this codec's decoder is trained on latents with
added noise of the size the denoiser leaves, like a VAE decoder trained on posterior samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange
from flax import nnx

from gw_jax.errors import UserInputError, load_json
from gw_jax.models.pixel_codec import PoolFold


class _Residual(nnx.Module):
    """GroupNorm -> SiLU -> 3x3 conv, twice, plus the input (NHWC)."""

    def __init__(self, width: int, *, rngs: nnx.Rngs):
        groups = min(8, width)
        self.norm1 = nnx.GroupNorm(width, num_groups=groups, rngs=rngs)
        self.conv1 = nnx.Conv(width, width, (3, 3), rngs=rngs)
        self.norm2 = nnx.GroupNorm(width, num_groups=groups, rngs=rngs)
        self.conv2 = nnx.Conv(width, width, (3, 3), rngs=rngs)

    def __call__(self, x):
        return x + self.conv2(nnx.silu(self.norm2(self.conv1(nnx.silu(self.norm1(x))))))


class PatchVAE(nnx.Module, PoolFold):
    def __init__(self, channels: int = 16, *, pool: int = 2, fold: int = 4, width: int = 64, rngs: nnx.Rngs):
        self.config = dict(channels=channels, pool=pool, fold=fold, width=width)
        self.pool, self.fold = pool, fold
        patch = 3 * fold ** 2
        zeros = nnx.initializers.zeros
        # linear paths (set to principal directions before training) and zero-initialised residuals
        self.enc_linear = nnx.Linear(patch, channels, rngs=rngs)
        self.enc_in = nnx.Conv(patch, width, (3, 3), rngs=rngs)
        self.enc_res = _Residual(width, rngs=rngs)
        self.enc_out = nnx.Conv(width, channels, (1, 1), kernel_init=zeros, rngs=rngs)
        self.dec_linear = nnx.Linear(channels, patch, rngs=rngs)
        self.dec_in = nnx.Conv(channels, width, (3, 3), rngs=rngs)
        self.dec_res = nnx.List([_Residual(width, rngs=rngs) for _ in range(2)])
        self.dec_out = nnx.Conv(width, patch, (1, 1), kernel_init=zeros, rngs=rngs)
        self.pix_in = nnx.Conv(3, 16, (3, 3), rngs=rngs)
        self.pix_out = nnx.Conv(16, 3, (3, 3), kernel_init=zeros, rngs=rngs)
        self.latents_mean = nnx.Variable(jnp.zeros((channels,)))
        self.latents_std = nnx.Variable(jnp.ones((channels,)))

    # --- codec interface (what the demo, `gw-jax sample` and the train step call) ------------------
    @property
    def channels(self) -> int:
        return self.config["channels"]

    def encode(self, video):
        """(B, 3, T, H, W) in [-1, 1] -> normalised latents (B, C, T, H / (pool fold), W / (pool fold))."""
        b = video.shape[0]
        z = self.encode_raw(self.patches(video))
        z = (z - self.latents_mean[...]) / self.latents_std[...]
        return rearrange(z, "(b t) h w k -> b k t h w", b=b)

    def decode(self, latents):
        """Normalised latents (B, C, T, h, w) -> pooled video (B, 3, T, h fold, w fold) in [-1, 1]."""
        b = latents.shape[0]
        z = rearrange(latents, "b k t h w -> (b t) h w k") * self.latents_std[...] + self.latents_mean[...]
        return jnp.clip(rearrange(self.decode_raw(z), "(b t) h w c -> b c t h w", b=b), -1.0, 1.0)

    # --- the networks, on frames (N = B * T) -----------------------------------------------------
    def patches(self, video):
        """(B, 3, T, H, W) -> (B * T, h, w, 3 fold^2) patches of the pooled frames."""
        return rearrange(self.pooled(video), "b c t (h m) (w n) -> (b t) h w (c m n)", m=self.fold, n=self.fold)

    def encode_raw(self, patches_nhwp):
        return self.enc_linear(patches_nhwp) + self.enc_out(nnx.silu(self.enc_res(self.enc_in(patches_nhwp))))

    def decode_raw(self, z_nhwk):
        """Un-normalised latents -> frames (N, H, W, 3), unclipped."""
        x = self.dec_in(z_nhwk)
        for block in self.dec_res:
            x = block(x)
        patches = self.dec_linear(z_nhwk) + self.dec_out(nnx.silu(x))
        frames = rearrange(patches, "n h w (c m q) -> n (h m) (w q) c", m=self.fold, q=self.fold)
        return frames + self.pix_out(nnx.silu(self.pix_in(frames)))

    # --- files ------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        import orbax.checkpoint as ocp

        path = Path(path).absolute()
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.config))
        state = jax.device_get(nnx.to_pure_dict(nnx.state(self)))
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(path / "params", state, force=True)

    @classmethod
    def load(cls, path: str | Path) -> "PatchVAE":
        import orbax.checkpoint as ocp

        path = Path(path).absolute()
        if not (path / "config.json").is_file() or not (path / "params").is_dir():
            raise UserInputError(f"{path}: not a PatchVAE folder (config.json + params/; gw-jax demo writes OUT/codec)")
        model = cls(**load_json(path / "config.json", what="a PatchVAE config"), rngs=nnx.Rngs(0))
        state = nnx.state(model)
        target = jax.device_get(nnx.to_pure_dict(state))
        with ocp.StandardCheckpointer() as checkpointer:
            restored = checkpointer.restore(path / "params", target)
        nnx.replace_by_pure_dict(state, restored)
        nnx.update(model, state)
        return model

    def set_principal_directions(self, mean_patch: np.ndarray, components: np.ndarray, scale: float) -> None:
        """Linear paths = PCA: z = (p - mean) V^T / scale and p = z scale V + mean."""
        v = jnp.asarray(components, jnp.float32)
        self.enc_linear.kernel[...] = v.T / scale
        self.enc_linear.bias[...] = -(jnp.asarray(mean_patch, jnp.float32) @ v.T) / scale
        self.dec_linear.kernel[...] = v * scale
        self.dec_linear.bias[...] = jnp.asarray(mean_patch, jnp.float32)
