"""``gw-jax verify OUT``: every shard's checksum and record count, every record's CRC and fields."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REQUIRED = ("episode", "video", "num_frames", "height", "width", "fps", "prompt", "text_emb", "text_len")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("packed", help="a `gw-jax pack` output folder")


def verify(packed_dir) -> list[str]:
    """Problems found (empty when the dataset is intact), each naming the shard and the record."""
    from gw_jax.data.pack import read_index, sha256_of
    from gw_jax.data.records import CorruptRecordError, decode_example, iter_records

    packed_dir = Path(packed_dir)
    index = read_index(packed_dir)
    problems = []
    for shard in index["shards"]:
        path = packed_dir / shard["file"]
        if not path.is_file():
            problems.append(f"{path}: shard missing")
            continue
        offsets = []
        try:
            for i, (offset, data) in enumerate(iter_records(path)):
                offsets.append(offset)
                missing = [k for k in REQUIRED if k not in decode_example(data)]
                if missing:
                    problems.append(f"{path} record {i}: missing fields {missing}")
        except CorruptRecordError as e:
            problems.append(str(e))
            continue
        except Exception as e:  # an undecodable protobuf
            problems.append(f"{path} record {len(offsets) - 1}: not a tf.train.Example ({e})")
            continue
        if offsets != shard["offsets"]:
            problems.append(f"{path}: {len(offsets)} records found, the index lists {shard['records']}")
        elif path.stat().st_size != shard["bytes"] or sha256_of(path) != shard["sha256"]:
            problems.append(f"{path}: size or sha256 differs from the index")
    return problems


def run(args) -> int:
    problems = verify(args.packed)
    for problem in problems:
        print(f"gw-jax verify: {problem}", file=sys.stderr)
    if problems:
        print(f"gw-jax verify: {len(problems)} problem(s) in {args.packed}", file=sys.stderr)
        return 1
    print(f"{args.packed}: all shards and records intact")
    return 0
