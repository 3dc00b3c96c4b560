"""``gw-jax verify OUT``: every shard's checksum and record count, every record's CRC and fields."""

from __future__ import annotations

import argparse
import sys

from gw_jax.data.pack import verify
from gw_jax.storage import as_path, check_bucket


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("packed", help="a `gw-jax pack` output folder or gs://BUCKET/...")


def run(args) -> int:
    packed = as_path(args.packed, flag="PACKED")
    check_bucket(packed, flag="PACKED")
    problems = verify(packed)
    for problem in problems:
        print(f"gw-jax verify: {problem}", file=sys.stderr)
    if problems:
        print(f"gw-jax verify: {len(problems)} problem(s) in {args.packed}", file=sys.stderr)
        return 1
    print(f"{args.packed}: all shards and records intact")
    return 0
