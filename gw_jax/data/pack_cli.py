"""``gw-jax pack RAW OUT [--text-encoder minilm] [--shards K] [--workers N] [--strict]``."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("raw", help="episodes in the seed's layout: i.mp4 + i.txt (+ i.npz ground truth)")
    parser.add_argument("out", help="output folder (TFRecord shards + index.json)")
    parser.add_argument("--text-encoder", default="minilm",
                        help="minilm (embedded default), hash (tiny, for CPU demos) or a T5 checkpoint folder")
    parser.add_argument("--max-text-tokens", type=int, default=None, help="text length (default: the encoder's)")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="processes writing shards in parallel")
    parser.add_argument("--strict", action="store_true", help="fail on any bad input instead of skipping it")


def run(args) -> int:
    from gw_jax.data.pack import pack
    from gw_jax.diffusion.sample_cli import text_encoder_from_spec

    encoder = text_encoder_from_spec(args.text_encoder, max_length=args.max_text_tokens)
    index = pack(args.raw, args.out, text_encoder=encoder, shards=args.shards, workers=args.workers,
                 strict=args.strict)
    print(f"packed {index['num_records']} of {index['inputs']} episodes into {len(index['shards'])} shard(s) "
          f"in {args.out}; skipped {len(index['skipped'])}")
    for item in index["skipped"]:
        print(f"  skipped {item['file']}: {item['reason']}")
    return 0
