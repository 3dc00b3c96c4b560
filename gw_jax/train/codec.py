"""Trains the demo's latent codec (:class:`gw_jax.models.patch_vae.PatchVAE`) on simulated frames.

    codec, losses = train_codec(video, channels=16, steps=1000)     # video (B, 3, T, H, W) in [-1, 1]

1. The linear paths start as the principal directions of the training patches (the best linear
   autoencoder), scaled so the latents have unit mean square.
2. Encoder, decoder and residuals train together on reconstruction MSE of the pooled frames, with the
   decoder fed *noisy* latents: z + s * rms(z) * eps, s ~ U(0, latent_noise) per frame. A VAE gets
   the same robustness from decoding posterior samples; the demo uses latent_noise 0.3 (docs/demo.md:
   held-out 36.5 dB clean, 33.7 dB with noise 0.3 added). The noise is relative to the latents' own
   scale (no gradient through it), so the encoder cannot escape it by growing the latents.
3. ``error_focus`` adds mean(e^4) / error_focus to the mean squared error e^2: the cube is a few
   pixels per frame, so plain MSE lets it fade into the table; the quartic term weighs pixels that
   are far off more than their area does.
4. Horizontal flips double the frames (a mirrored scene is a scene).
5. Latents are normalised with their per-channel training mean and *one* shared scale, so the noise
   the decoder learned to absorb is isotropic in the units the DiT denoises in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from einops import rearrange
from flax import nnx

from gw_jax.models.patch_vae import PatchVAE


def principal_directions(patches: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean patch, first ``channels`` principal directions (C, P), rms of the projections)."""
    patches = np.asarray(patches, np.float64).reshape(-1, patches.shape[-1])
    if not 1 <= channels <= patches.shape[1]:
        raise ValueError(f"channels {channels}: choose 1..{patches.shape[1]}")
    mean = patches.mean(0)
    _, _, vt = np.linalg.svd(patches - mean, full_matrices=False)
    components = vt[:channels] * np.sign(vt[:channels].sum(1, keepdims=True) + 1e-12)  # reproducible signs
    scale = float(np.sqrt(np.mean(((patches - mean) @ components.T) ** 2)))
    return mean, components, scale


def train_codec(video: np.ndarray, *, channels: int = 16, pool: int = 2, fold: int = 4, width: int = 64,
                steps: int = 1000, batch_frames: int = 64, learning_rate: float = 2e-3, latent_noise: float = 0.3,
                error_focus: float = 0.0, flips: bool = True, seed: int = 0,
                progress: bool = True) -> tuple[PatchVAE, list[float]]:
    """Fits a PatchVAE to the frames of ``video`` (B, 3, T, H, W) in [-1, 1]. Returns (codec, losses)."""
    from tqdm.auto import tqdm

    codec = PatchVAE(channels, pool=pool, fold=fold, width=width, rngs=nnx.Rngs(seed))
    video = jnp.asarray(video, jnp.float32)
    patches = np.asarray(codec.patches(video))
    frames = np.asarray(rearrange(codec.pooled(video), "b c t h w -> (b t) h w c"))
    codec.set_principal_directions(*principal_directions(patches, channels))

    graphdef, params, rest = nnx.split(codec, nnx.Param, ...)
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(50, steps // 10 + 1), max(steps, 2),
                                                  learning_rate * 0.05)
    tx = optax.adam(schedule)
    opt_state = tx.init(params)

    def loss_fn(params, p, x, key):
        model = nnx.merge(graphdef, params, rest)
        z = model.encode_raw(p)
        rms = jax.lax.stop_gradient(jnp.sqrt(jnp.mean(jnp.square(z))))
        size = jax.random.uniform(key, (z.shape[0], 1, 1, 1)) * latent_noise * rms
        noisy = z + size * jax.random.normal(jax.random.fold_in(key, 1), z.shape)
        squared = jnp.square(model.decode_raw(noisy) - x)
        return jnp.mean(squared) + (jnp.mean(jnp.square(squared)) / error_focus if error_focus > 0 else 0.0)

    @jax.jit
    def step(params, opt_state, p, x, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, p, x, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    key = jax.random.key(seed)
    codec_patches_of = jax.jit(lambda frames_nhwc: rearrange(frames_nhwc, "n (h m) (w q) c -> n h w (c m q)",
                                                             m=fold, q=fold))
    losses = []
    for i in tqdm(range(steps), desc="codec", disable=not progress, mininterval=1.0):
        index = rng.choice(len(frames), size=min(batch_frames, len(frames)), replace=False)
        p, x = patches[index], frames[index]
        if flips and i % 2:  # mirrored scenes are scenes too: twice the frames for the same budget
            x = x[:, :, ::-1]
            p = np.asarray(codec_patches_of(x))
        params, opt_state, loss = step(params, opt_state, jnp.asarray(p), jnp.asarray(x), jax.random.fold_in(key, i))
        losses.append(float(loss))
    nnx.update(codec, params)
    encode = jax.jit(lambda params, p: nnx.merge(graphdef, params, rest).encode_raw(p))
    z = np.concatenate([np.asarray(encode(params, jnp.asarray(patches[i:i + 256])))
                        for i in range(0, len(patches), 256)]).reshape(-1, channels)
    codec.latents_mean[...] = jnp.asarray(z.mean(0))
    codec.latents_std[...] = jnp.full((channels,), float(np.sqrt(np.mean(np.square(z - z.mean(0))))))
    return codec, losses

