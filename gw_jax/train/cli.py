"""``gw-jax train --config configs/tiny.py --workdir DIR [--config.a.b=value ...]``.

Resumes automatically from the newest checkpoint in DIR. SIGTERM saves a checkpoint and exits 0; a NaN/inf
loss stops the run with exit status 1, naming the step (the newest checkpoint is the last good one).
"""

from __future__ import annotations

import argparse
import sys

from gw_jax.config import load_config
from gw_jax.errors import UserInputError
from gw_jax.parallel.distributed import initialize
from gw_jax.train.guards import NonFiniteLossError
from gw_jax.train.loop import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment config file (configs/*.py)")
    parser.add_argument("--workdir", required=True,
                        help="checkpoints, metrics and TensorBoard logs: a folder or gs://BUCKET/...")
    parser.add_argument("--max-steps", type=int, default=None, help="stop (and save) after this step")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    if args.max_steps is not None and args.max_steps < 1:
        raise UserInputError(f"--max-steps must be at least 1, got {args.max_steps}")
    config = load_config(args.config, args.config_overrides)
    initialize(config.multihost)
    if config.latents not in ("vae", "precomputed"):
        raise UserInputError(f"--config.latents must be 'vae' or 'precomputed', got {config.latents!r}")
    try:
        result = train(config, args.workdir, max_steps=args.max_steps, progress=not args.no_progress)
    except NonFiniteLossError as e:  # not the user's input, but one line and a non-zero exit all the same
        print(f"gw-jax train: error: {e}", file=sys.stderr)
        return 1
    final = result.losses[-1] if result.losses else float("nan")
    print(f"done: step {int(result.state.step)}, last logged loss {final:.4f}"
          + (" (stopped early, checkpoint saved)" if result.stopped_early else ""))
    return 0
