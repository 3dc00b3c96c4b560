"""``gw-jax sample --workdir DIR --image first_frame.png --prompt "..." --frames N --out video.mp4``.

Rebuilds the model from the config saved with the newest checkpoint in DIR, encodes the image (resized to cover
the training size, centre-cropped) as the reference (first) frame, rolls out with the reference sampler
(``gw_jax.train.sampling.sample_workdir``) and writes an mp4. A model trained with actions takes
``--actions FILE.npy``: float (F, A), one row of raw actions per generated frame (row e: the command behind
frame e), and ``--action-guidance G`` (classifier-free guidance on the actions).
"""

from __future__ import annotations

import argparse

import numpy as np

from gw_jax.data.video import write_video
from gw_jax.diffusion.generate import decode_image
from gw_jax.errors import UserInputError
from gw_jax.storage import as_path, check_bucket, check_output_file
from gw_jax.train.sampling import sample_workdir


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
    parser.add_argument("--actions", default=None,
                        help=".npy of shape (frames, action values): the commands behind each generated frame "
                             "(a model trained with actions)")
    parser.add_argument("--action-guidance", type=float, default=None,
                        help="guidance scale on the actions (default: the config's sample.action_guidance)")


def read_actions(path: str) -> np.ndarray:
    """--actions FILE.npy -> float32 (F, A), or a one-line UserInputError naming the flag."""
    file = as_path(path, flag="--actions")
    check_bucket(file, flag="--actions")
    if not file.is_file():
        raise UserInputError(f"--actions {file}: no such file")
    try:
        with file.open("rb") as f:
            actions = np.load(f, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UserInputError(f"--actions {file}: not a .npy array ({e})") from e
    if actions.ndim != 2 or not np.issubdtype(actions.dtype, np.number) or not np.isfinite(actions).all():
        raise UserInputError(f"--actions {file}: shape {actions.shape} {actions.dtype}, expected finite numbers of "
                             "shape (frames, action values)")
    return actions.astype(np.float32)


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
    actions = read_actions(args.actions) if args.actions else None
    if args.action_guidance is not None and (not np.isfinite(args.action_guidance) or actions is None):
        raise UserInputError("--action-guidance needs --actions and a finite number")
    first = decode_image(image.read_bytes(), where=f"--image {image}")  # resized to cover, centre-cropped later
    clip, fps = sample_workdir(workdir, first, args.prompt, frames=args.frames, steps=args.steps,
                               guidance=args.guidance, seed=args.seed, ema=args.ema, actions=actions,
                               action_guidance=args.action_guidance)
    write_video(out_path, clip, fps=fps)
    print(f"wrote {out_path}: {clip.shape[0]} frames of {clip.shape[1]}x{clip.shape[2]}")
    return 0
