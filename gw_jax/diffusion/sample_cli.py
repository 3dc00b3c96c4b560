"""``gw-jax sample --workdir DIR --image first_frame.png --prompt "..." --frames N --out video.mp4``.

Rebuilds the model from the config saved with the newest checkpoint in DIR, encodes the image as the
reference (first) frame, rolls out with the reference sampler and writes an mp4.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gw_jax.errors import UserInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a `gw-jax train` (or demo train/) folder")
    parser.add_argument("--image", required=True, help="first frame (png/jpg), resized to the training size")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--frames", type=int, default=None, help="frames to generate (default: training clips)")
    parser.add_argument("--out", required=True, help="output .mp4")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--guidance", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ema", action="store_true", help="sample with the EMA weights")


def load_codec(config):
    if config.codec.name == "pixel":
        from gw_jax.models.pixel_codec import PixelCodec

        return PixelCodec(pool=config.codec.pool, fold=config.codec.fold)
    if config.codec.name == "patch_vae":  # the demo's learned codec: a folder written by PatchVAE.save
        from gw_jax.models.patch_vae import PatchVAE

        if not config.codec.get("path"):
            raise UserInputError("--config.codec.path: the patch_vae codec needs its folder (gw-jax demo writes OUT/codec)")
        return PatchVAE.load(config.codec.path)
    if config.codec.name == "wan_vae":
        from gw_jax.models.vae import WanLatentCodec, vae_from_config

        return WanLatentCodec(vae_from_config(config.vae))
    raise UserInputError(f"codec {config.codec.name!r} is not available to `gw-jax sample` in this build")


def text_encoder_from_spec(spec: str, *, max_length: int | None = None, width: int = 32):
    """"hash" (tiny, weight-free: CPU demos), "minilm" (embedded default) or a T5 checkpoint folder."""
    if spec == "hash":
        from gw_jax.models.text_hash import HashTextEncoder

        return HashTextEncoder(width=width, max_length=max_length or 16)
    from gw_jax.models.text import load_text_encoder

    return load_text_encoder(spec, max_length=max_length)


def load_text_encoder(config):
    """The text encoder a config names (``config.text_encoder.name``; "t5:<path>" or a path for T5)."""
    name = config.text_encoder.name
    spec = name[3:] if name.startswith("t5:") else name
    return text_encoder_from_spec(spec, max_length=config.text_encoder.get("max_length"),
                                  width=config.text_encoder.get("width", 32))


def load_image(path: Path, height: int, width: int) -> np.ndarray:
    """(3, H, W) in [-1, 1]: resized to cover and centre-cropped (the reference transform, no randomness)."""
    from PIL import Image

    if not path.is_file():
        raise UserInputError(f"--image {path}: no such file")
    try:
        image = Image.open(path).convert("RGB")
    except Exception as e:
        raise UserInputError(f"--image {path}: unreadable image ({e})") from e
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    pixels = np.asarray(image.crop((left, top, left + width, top + height)), np.float32)
    return np.moveaxis(pixels / 127.5 - 1.0, -1, 0)


def run(args) -> int:
    import jax
    import jax.numpy as jnp
    import ml_collections

    from gw_jax.data.video import write_video
    from gw_jax.diffusion import sample_reference
    from gw_jax.train.checkpoint import Checkpointer, abstract_with_shardings
    from gw_jax.train.loop import build_setup

    if not (Path(args.workdir) / "checkpoints").is_dir():
        raise UserInputError(f"--workdir {args.workdir}: no checkpoints/ folder (train first)")
    checkpointer = Checkpointer(Path(args.workdir) / "checkpoints", async_save=False)
    saved_config = checkpointer.restore_config()
    if saved_config is None:
        raise UserInputError(f"--workdir {args.workdir}: no checkpoint found (train first)")
    config = ml_collections.ConfigDict(saved_config)
    config.mesh.axes = ml_collections.ConfigDict(dict(data=-1, fsdp=1, context=1, tensor=1))
    codec, text = load_codec(config), load_text_encoder(config)
    setup = build_setup(config, mesh=None)
    state, _, _ = checkpointer.restore(abstract_with_shardings(setup.abstract_state, setup.state_sharding))
    model = setup.model_def.merge(state.ema_params if args.ema else state.params)

    frames = args.frames or config.data.num_frames
    if frames < 2:
        raise UserInputError("--frames must be at least 2 (the first one is the given image)")
    first = load_image(Path(args.image), config.data.height, config.data.width)
    video = np.zeros((1, 3, frames, config.data.height, config.data.width), np.float32)
    video[:, :, 0] = first
    latents = codec.encode(jnp.asarray(video))
    mask = jnp.zeros((1, 1, latents.shape[2], 1, 1)).at[:, :, 0].set(1.0)
    emb, _ = text.encode([args.prompt])
    sample_cfg = config.sample
    noise = jax.random.normal(jax.random.key(args.seed), latents.shape) * sample_cfg.sigma_max
    out, _ = jax.jit(lambda n: sample_reference(
        model, n, context=jnp.asarray(emb), negative_context=jnp.asarray(text.encode([sample_cfg.negative_prompt])[0]),
        cond_latents=latents, cond_mask=mask, fps=config.data.fps, steps=args.steps or sample_cfg.steps,
        guidance=sample_cfg.guidance if args.guidance is None else args.guidance,
        sigma_max=sample_cfg.sigma_max, augment_sigma=sample_cfg.augment_sigma))(noise)
    pixels = np.asarray(codec.decode(out))[0]
    clip = np.clip((np.moveaxis(pixels, 0, -1) + 1) * 127.5, 0, 255).round().astype(np.uint8)
    write_video(args.out, clip, fps=config.data.fps)
    print(f"wrote {args.out}: {clip.shape[0]} frames of {clip.shape[1]}x{clip.shape[2]}")
    return 0
