"""``gw-jax sim --out DIR --episodes N``: robot-arm episodes from MuJoCo in the seed's layout."""

from __future__ import annotations

import argparse

from gw_jax.data.sim import TASKS, simulate_dataset
from gw_jax.errors import UserInputError


def parse_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise UserInputError(f"--size {text!r}: expected H or HxW, e.g. 64 or 64x96") from None
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (i.mp4, i.txt, i.npz, manifest.json)")
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", default="64", help="H or HxW, multiples of 16 (default 64)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per simulated second (default 8)")
    parser.add_argument("--tasks", default="push,pick,place")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--random-background", action="store_true")
    parser.add_argument("--distractors", type=int, default=0)
    parser.add_argument("--random-camera", action="store_true")


def run(args) -> int:
    height, width = parse_size(args.size)
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise UserInputError(f"--tasks {args.tasks!r}: choose from {','.join(TASKS)}")
    if args.episodes < 1:
        raise UserInputError("--episodes must be at least 1")
    out = simulate_dataset(args.out, args.episodes, seed=args.seed, workers=args.workers, frames=args.frames,
                           height=height, width=width, fps=args.fps, tasks=tasks,
                           random_background=args.random_background, distractors=args.distractors,
                           random_camera=args.random_camera)
    print(f"wrote {args.episodes} episodes to {out}")
    return 0
