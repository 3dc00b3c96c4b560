"""``gw-jax train --config configs/tiny.py --workdir DIR [--config.a.b=value ...]``.

Resumes automatically from the newest checkpoint in DIR. SIGTERM saves a checkpoint and exits 0.
"""

from __future__ import annotations

import argparse

from gw_jax.config import load_config
from gw_jax.errors import UserInputError
from gw_jax.parallel.distributed import initialize
from gw_jax.train.loop import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment config file (configs/*.py)")
    parser.add_argument("--workdir", required=True, help="checkpoints, metrics and TensorBoard logs")
    parser.add_argument("--max-steps", type=int, default=None, help="stop (and save) after this step")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    if args.max_steps is not None and args.max_steps < 1:
        raise UserInputError(f"--max-steps must be at least 1, got {args.max_steps}")
    config = load_config(args.config, args.config_overrides)
    initialize(config.multihost)
    if config.latents not in ("vae", "precomputed"):
        raise UserInputError(f"--config.latents must be 'vae' or 'precomputed', got {config.latents!r}")
    result = train(config, args.workdir, max_steps=args.max_steps, progress=not args.no_progress)
    final = result.losses[-1] if result.losses else float("nan")
    print(f"done: step {int(result.state.step)}, last logged loss {final:.4f}"
          + (" (stopped early, checkpoint saved)" if result.stopped_early else ""))
    return 0
