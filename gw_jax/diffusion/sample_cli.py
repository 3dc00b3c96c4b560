"""``gw-jax sample --workdir DIR --image first_frame.png --prompt "..." --frames N --out video.mp4``.

Rebuilds the model from the config saved with the newest checkpoint in DIR, encodes the image as the
reference (first) frame, rolls out with the reference sampler and writes an mp4.
"""

from __future__ import annotations

import argparse
import io

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from gw_jax.data.video import write_video
from gw_jax.diffusion import sample_reference
from gw_jax.errors import UserInputError
from gw_jax.models.factory import load_codec, load_text_encoder
from gw_jax.storage import as_path, check_bucket, check_output_file
from gw_jax.train.export import restore_workdir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a `gw-jax train` (or demo train/) folder or gs:// URI")
    parser.add_argument("--image", required=True, help="first frame (png/jpg), resized to the training size")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--frames", type=int, default=None, help="frames to generate (default: training clips)")
    parser.add_argument("--out", required=True, help="output .mp4 (a file or gs:// URI)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ema", action="store_true", help="sample with the EMA weights")


def load_image(path, height: int, width: int) -> np.ndarray:
    """(3, H, W) in [-1, 1]: resized to cover and centre-cropped (the reference transform, no randomness)."""
    path = as_path(path, flag="--image")
    if not path.is_file():
        raise UserInputError(f"--image {path}: no such file")
    try:
        image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    except Exception as e:
        raise UserInputError(f"--image {path}: unreadable image ({e})") from e
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    pixels = np.asarray(image.crop((left, top, left + width, top + height)), np.float32)
    return np.moveaxis(pixels / 127.5 - 1.0, -1, 0)


def run(args) -> int:
    # every argument is checked before anything slow (restoring, compiling) starts
    workdir, image = as_path(args.workdir, flag="--workdir"), as_path(args.image, flag="--image")
    check_bucket(workdir, flag="--workdir")
    if not (workdir / "checkpoints").is_dir():
        raise UserInputError(f"--workdir {workdir}: no checkpoints/ folder (train first)")
    check_bucket(image, flag="--image")
    if not image.is_file():
        raise UserInputError(f"--image {image}: no such file")
    out_path = check_output_file(args.out, flag="--out")
    if args.frames is not None and args.frames < 2:
        raise UserInputError("--frames must be at least 2 (the first one is the given image)")
    if args.steps is not None and args.steps < 1:
        raise UserInputError(f"--steps must be at least 1, got {args.steps}")
    if args.guidance is not None and not np.isfinite(args.guidance):
        raise UserInputError(f"--guidance must be a finite number, got {args.guidance}")
    config, setup, state = restore_workdir(args.workdir)
    codec, text = load_codec(config), load_text_encoder(config)
    model = setup.model_def.merge(state.ema_params if args.ema else state.params, setup.init_frozen())

    frames = args.frames or config.data.num_frames
    first = load_image(image, config.data.height, config.data.width)
    video = np.zeros((1, 3, frames, config.data.height, config.data.width), np.float32)
    video[:, :, 0] = first
    latents = codec.encode(jnp.asarray(video))
    mask = jnp.zeros((1, 1, latents.shape[2], 1, 1)).at[:, :, 0].set(1.0)
    sample_cfg = config.sample
    # Prompts are encoded here, outside jit: text encoders are host code (tokenizers, numpy) around their own jit.
    emb, _ = text.encode([args.prompt])
    negative, _ = text.encode([sample_cfg.negative_prompt])
    noise = jax.random.normal(jax.random.key(args.seed), latents.shape) * sample_cfg.sigma_max
    out, _ = jax.jit(lambda n: sample_reference(
        model, n, context=jnp.asarray(emb), negative_context=jnp.asarray(negative), cond_latents=latents,
        cond_mask=mask, fps=config.data.fps, steps=args.steps or sample_cfg.steps,
        guidance=sample_cfg.guidance if args.guidance is None else args.guidance,
        sigma_max=sample_cfg.sigma_max, augment_sigma=sample_cfg.augment_sigma))(noise)
    pixels = np.asarray(codec.decode(out))[0]
    clip = np.clip((np.moveaxis(pixels, 0, -1) + 1) * 127.5, 0, 255).round().astype(np.uint8)
    write_video(out_path, clip, fps=config.data.fps)
    print(f"wrote {out_path}: {clip.shape[0]} frames of {clip.shape[1]}x{clip.shape[2]}")
    return 0
