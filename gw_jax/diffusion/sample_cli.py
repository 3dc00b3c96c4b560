"""``gw-jax sample --workdir DIR --image first_frame.png --prompt "..." --frames N --out video.mp4``.

Rebuilds the model from the config saved with the newest checkpoint in DIR, encodes the image (resized to cover
the training size, centre-cropped) as the reference (first) frame, rolls out with the reference sampler
(``gw_jax.train.sampling.sample_workdir``) and writes an mp4.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gw_jax.data.video import write_video
from gw_jax.diffusion.generate import read_image
from gw_jax.errors import UserInputError, check_output_dir
from gw_jax.train.sampling import sample_workdir


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


def run(args) -> int:
    # every argument is checked before anything slow (restoring, compiling) starts
    if not (Path(args.workdir) / "checkpoints").is_dir():
        raise UserInputError(f"--workdir {args.workdir}: no checkpoints/ folder (train first)")
    if not Path(args.image).is_file():
        raise UserInputError(f"--image {args.image}: no such file")
    check_output_dir(Path(args.out).absolute().parent, flag="--out")
    if args.frames is not None and args.frames < 2:
        raise UserInputError("--frames must be at least 2 (the first one is the given image)")
    if args.steps is not None and args.steps < 1:
        raise UserInputError(f"--steps must be at least 1, got {args.steps}")
    if args.guidance is not None and not np.isfinite(args.guidance):
        raise UserInputError(f"--guidance must be a finite number, got {args.guidance}")
    try:
        first = read_image(args.image)  # resized to cover the training size and centre-cropped
    except UserInputError as e:
        raise UserInputError(f"--image {e}") from None
    clip, fps = sample_workdir(args.workdir, first, args.prompt, frames=args.frames, steps=args.steps,
                               guidance=args.guidance, seed=args.seed, ema=args.ema)
    write_video(args.out, clip, fps=fps)
    print(f"wrote {args.out}: {clip.shape[0]} frames of {clip.shape[1]}x{clip.shape[2]}")
    return 0
