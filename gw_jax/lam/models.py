"""The latent action model (Flax NNX): an encoder that reads an action off two frames, a decoder that redoes it.

  lam = LatentActionModel(latent_dim=7, rngs=nnx.Rngs(0))
  z_nd = lam.encode(x_nhwc, x_next_nhwc)                 # latent actions in [-1, 1]
  pred_nhwc = lam.decode(x_nhwc, z_nd)                   # the next frame from this one and the latent action
  pred_nhwc, z_nd = lam(x_nhwc, x_next_nhwc, noise_key)  # training: Gaussian noise on z first

Frames are float in [0, 1], (N, H, W, 3) with H, W divisible by 8 (the demo's rollout size 32x32 by default).

In the spirit of Genie's LAM (Bruce et al. 2024): the encoder sees x_t and x_{t+1}, the decoder sees x_t and
only the low-dimensional z_t, and reconstruction of x_{t+1} is the only loss, so z_t has to carry what x_t
cannot tell the decoder: how the scene moves next, which is what the action controls. Genie sees a
history window and quantises z with a codebook of 8; here the encoder sees one pair and z stays continuous
(tanh, plus fixed Gaussian noise in training) because the simulator's commands are continuous and a linear
probe on 8 codes could take at most 8 values; the noise caps what each dimension can carry (no KL weight to
tune), so the small code cannot smuggle the next frame's pixels through.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from gw_jax.idm.models import COORDS, ConvNorm, coord_channels
from gw_jax.models.compiled_init import compiled_init


def pool_frames(frames_nthwc, size: int):
    """uint8 or [0, 1] frames (..., H, W, 3) -> float32 (..., size, size, 3) in [0, 1] by average pooling
    (H and W must be multiples of ``size``)."""
    x = jnp.asarray(frames_nthwc, jnp.float32)
    if jnp.issubdtype(jnp.asarray(frames_nthwc).dtype, jnp.integer):
        x = x / 255.0
    *lead, h, w, c = x.shape
    fh, fw = h // size, w // size
    return x.reshape(*lead, size, fh, size, fw, c).mean(axis=(-4, -2))


class ActionEncoder(nnx.Module):
    """(x_t, x_{t+1}) -> z_t in [-1, 1]^latent_dim: strided convolutions over both frames and their difference."""

    def __init__(self, size: int, latent_dim: int, features: tuple[int, ...] = (32, 64, 64), hidden: int = 128,
                 *, rngs: nnx.Rngs):
        ins = (16, *features[:-1])
        self.stem = ConvNorm(9 + COORDS, 16, rngs=rngs)
        self.down = nnx.List([ConvNorm(i, f, strides=2, rngs=rngs) for i, f in zip(ins, features, strict=True)])
        cells = (size // 2 ** len(features)) ** 2
        self.hidden = nnx.Linear(cells * features[-1], hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, latent_dim, rngs=rngs)

    def __call__(self, x_nhwc: jax.Array, x_next_nhwc: jax.Array) -> jax.Array:
        h = self.stem(coord_channels(jnp.concatenate([x_nhwc, x_next_nhwc, x_next_nhwc - x_nhwc], axis=-1)))
        for layer in self.down:
            h = layer(h)
        return jnp.tanh(self.out(nnx.silu(self.hidden(h.reshape(h.shape[0], -1)))))


def _tile(z_nd: jax.Array, h_nhwc: jax.Array) -> jax.Array:
    """Appends z as constant channels to a feature map."""
    n, hh, ww, _ = h_nhwc.shape
    return jnp.concatenate([h_nhwc, jnp.broadcast_to(z_nd[:, None, None, :], (n, hh, ww, z_nd.shape[-1]))], -1)


class NextFrameDecoder(nnx.Module):
    """(x_t, z_t) -> x_{t+1}: a small U-Net on x_t with z appended to every coarse feature map; it predicts
    the change x_{t+1} - x_t (zero at initialisation: an untrained decoder copies the frame)."""

    def __init__(self, latent_dim: int, features: tuple[int, int, int] = (16, 32, 64), *, rngs: nnx.Rngs):
        f1, f2, f3 = features
        self.enc1 = ConvNorm(3 + COORDS, f1, rngs=rngs)                         # H
        self.enc2 = ConvNorm(f1, f2, strides=2, rngs=rngs)                      # H/2
        self.enc3 = ConvNorm(f2, f3, strides=2, rngs=rngs)                      # H/4
        self.mid = nnx.List([ConvNorm(f3 + latent_dim, f3, rngs=rngs), ConvNorm(f3 + latent_dim, f3, rngs=rngs)])
        self.up2 = nnx.ConvTranspose(f3, f2, (2, 2), (2, 2), rngs=rngs)
        self.dec2 = ConvNorm(2 * f2 + latent_dim, f2, rngs=rngs)                 # upsampled ++ skip ++ z
        self.up1 = nnx.ConvTranspose(f2, f1, (2, 2), (2, 2), rngs=rngs)
        self.dec1 = ConvNorm(2 * f1, f1, rngs=rngs)
        self.head = nnx.Conv(f1, 3, (1, 1), kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, x_nhwc: jax.Array, z_nd: jax.Array) -> jax.Array:
        e1 = self.enc1(coord_channels(x_nhwc))
        e2 = self.enc2(e1)
        h = self.enc3(e2)
        for layer in self.mid:
            h = h + layer(_tile(z_nd, h))
        h = self.dec2(_tile(z_nd, jnp.concatenate([self.up2(h), e2], -1)))
        h = self.dec1(jnp.concatenate([self.up1(h), e1], -1))
        return x_nhwc + self.head(h)


class LatentActionModel(nnx.Module):
    """Encoder + decoder; ``noise`` is the std of the Gaussian noise added to z in training."""

    def __init__(self, size: int = 32, latent_dim: int = 7, noise: float = 0.1, *, rngs: nnx.Rngs):
        if size % 8:
            raise ValueError(f"frame size {size} must be a multiple of 8")
        self.noise = noise
        self.encoder = ActionEncoder(size, latent_dim, rngs=rngs)
        self.decoder = NextFrameDecoder(latent_dim, rngs=rngs)

    def encode(self, x_nhwc: jax.Array, x_next_nhwc: jax.Array) -> jax.Array:
        return self.encoder(x_nhwc, x_next_nhwc)

    def decode(self, x_nhwc: jax.Array, z_nd: jax.Array) -> jax.Array:
        return self.decoder(x_nhwc, z_nd)

    def __call__(self, x_nhwc: jax.Array, x_next_nhwc: jax.Array, key: jax.Array | None = None):
        z = self.encode(x_nhwc, x_next_nhwc)
        noisy = z if key is None else z + self.noise * jax.random.normal(key, z.shape, z.dtype)
        return self.decode(x_nhwc, noisy), z


def create(size: int = 32, latent_dim: int = 7, noise: float = 0.1, seed: int = 0) -> LatentActionModel:
    """A freshly initialised model, its initialisers run as one compiled function (``models.compiled_init``)."""
    return compiled_init(lambda: LatentActionModel(size, latent_dim, noise, rngs=nnx.Rngs(seed)))
