"""Sampling from a training workdir (what ``gw-jax sample`` and the quickstart notebook do).

    clip = sample_workdir("runs/tiny", first_frame, "push the red cube to the left", frames=9)   # uint8 (F, H, W, 3)
    clip = sample_workdir(..., actions=actions_fa)   # a DiT trained with actions: (F, A), row e behind frame e

The model is rebuilt from the config saved with the newest checkpoint; the first frame becomes the reference
(conditioning) frame and the reference sampler (Karras sigmas, order 1, CFG; guidance on the reference frame
where the config's ``sample.reference_guidance`` sets it) rolls the clip out.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gw_jax.diffusion import reference_guidance_options, sample_reference, with_actions
from gw_jax.data.transforms import normalise_actions
from gw_jax.diffusion.generate import resize_and_crop
from gw_jax.errors import UserInputError
from gw_jax.models.factory import load_codec, load_text_encoder
from gw_jax.train.export import restore_workdir


def to_model_frame(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H', W', 3) of any size -> float32 (3, height, width) in [-1, 1]: resized to cover, centre-cropped."""
    pixels = resize_and_crop(np.asarray(image, np.uint8), width, height).astype(np.float32)
    return np.moveaxis(pixels / 127.5 - 1.0, -1, 0)


def sample_workdir(workdir: str | Path, first_frame: np.ndarray, prompt: str, *, frames: int | None = None,
                   steps: int | None = None, guidance: float | None = None, seed: int = 0,
                   ema: bool = False, actions: np.ndarray | None = None,
                   action_guidance: float | None = None) -> tuple[np.ndarray, float]:
    """(uint8 clip (F, H, W, 3), fps) rolled out from ``first_frame``: uint8 (H', W', 3) of any size, or float32
    (3, H, W) in [-1, 1] at the training size. ``frames``/``steps``/``guidance`` default to the config's.

    ``actions`` (F, A) raw (unnormalised) actions, row e the command behind frame e (row 0: the given frame's),
    for a DiT trained with actions; normalised with the training data's statistics (``config.data.action_stats``).
    ``action_guidance`` (default the config's ``sample.action_guidance``) > 0 guides on them."""
    config, setup, state = restore_workdir(workdir)
    num_frames = frames or config.data.num_frames
    stats = config.data.get("action_stats")
    if actions is not None:
        if not config.model.get("action_dim") or not stats:
            raise UserInputError(f"--actions: the model in {workdir} was not trained with actions")
        expected = (num_frames, len(stats.mean))
        if tuple(np.shape(actions)) != expected:
            raise UserInputError(f"--actions: shape {tuple(np.shape(actions))}, expected {expected} (one row of "
                                 f"{expected[1]} action values per generated frame)")
    codec, text = load_codec(config), load_text_encoder(config)
    model = setup.model_def.merge(state.ema_params if ema else state.params, setup.init_frozen())
    if actions is not None:
        model = with_actions(model, normalise_actions(actions, stats)[None], guidance=(
            config.sample.get("action_guidance", 0.0) if action_guidance is None else action_guidance))
    height, width = config.data.height, config.data.width
    first = to_model_frame(first_frame, height, width) if first_frame.dtype == np.uint8 else first_frame
    video = np.zeros((1, 3, num_frames, height, width), np.float32)
    video[:, :, 0] = first
    latents = codec.encode(jnp.asarray(video))
    mask = jnp.zeros((1, 1, latents.shape[2], 1, 1)).at[:, :, 0].set(1.0)
    sample_cfg = config.sample
    # Prompts are encoded here, outside jit: text encoders are host code (tokenizers, numpy) around their own jit.
    emb, _ = text.encode([prompt])
    negative, _ = text.encode([sample_cfg.negative_prompt])
    noise = jax.random.normal(jax.random.key(seed), latents.shape) * sample_cfg.sigma_max
    out, _ = jax.jit(lambda n: sample_reference(
        model, n, context=jnp.asarray(emb), negative_context=jnp.asarray(negative), cond_latents=latents,
        cond_mask=mask, fps=config.data.fps, steps=steps or sample_cfg.steps,
        guidance=sample_cfg.guidance if guidance is None else guidance,
        sigma_max=sample_cfg.sigma_max, augment_sigma=sample_cfg.augment_sigma,
        **reference_guidance_options(sample_cfg)))(noise)
    pixels = np.asarray(codec.decode(out))[0]
    clip = np.clip((np.moveaxis(pixels, 0, -1) + 1) * 127.5, 0, 255).round().astype(np.uint8)
    return clip, float(config.data.fps)
