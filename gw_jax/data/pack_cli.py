"""``gw-jax pack RAW OUT [--text-encoder minilm] [--shards K] [--workers N] [--strict]``, or
``gw-jax pack --from-tfds NAME OUT [--tfds-data-dir DIR] [--split train] ...`` for an RLDS dataset."""

from __future__ import annotations

import argparse

from gw_jax.data.pack import pack
from gw_jax.data.rlds import import_rlds
from gw_jax.errors import UserInputError
from gw_jax.storage import as_path, check_bucket, check_output_dir
from gw_jax.models.factory import text_encoder_from_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("raw", nargs="?", help="episodes in the seed's layout: i.mp4 + i.txt (+ i.npz ground truth); "
                                               "a folder or gs://BUCKET/...")
    parser.add_argument("out", nargs="?", help="output folder or gs://BUCKET/... (TFRecord shards + index.json)")
    parser.add_argument("--text-encoder", default="minilm",
                        help="minilm (embedded default), hash (tiny, for CPU demos) or a T5 checkpoint folder")
    parser.add_argument("--max-text-tokens", type=int, default=None, help="text length (default: the encoder's)")
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="processes writing shards in parallel")
    parser.add_argument("--strict", action="store_true", help="fail on any bad input instead of skipping it")
    rlds = parser.add_argument_group("Open X-Embodiment / RLDS import (no TensorFlow needed)")
    rlds.add_argument("--from-tfds", metavar="NAME",
                      help="import a TFDS-prepared RLDS dataset: NAME[/VERSION] under --tfds-data-dir, or its folder; "
                           "then only OUT is given")
    rlds.add_argument("--tfds-data-dir", default=None, help="TFDS data folder (default $TFDS_DATA_DIR or "
                                                            "~/tensorflow_datasets)")
    rlds.add_argument("--split", default="train")
    rlds.add_argument("--image-key", default=None,
                      help="per-step image feature to make videos from (default: the first, e.g. "
                           "steps/observation/image)")
    rlds.add_argument("--fps", type=float, default=10.0, help="frame rate of the imported videos")
    rlds.add_argument("--max-episodes", type=int, default=None)


def _paths(args):
    if args.from_tfds:
        if args.raw and args.out:
            raise UserInputError("--from-tfds takes only OUT (the RLDS dataset replaces RAW)")
        if not args.raw:
            raise UserInputError("--from-tfds NAME: missing OUT folder")
        return None, as_path(args.raw, flag="OUT")
    if not (args.raw and args.out):
        raise UserInputError("pack needs RAW and OUT folders (or --from-tfds NAME OUT)")
    return as_path(args.raw, flag="RAW"), as_path(args.out, flag="OUT")


def run(args) -> int:
    raw, out = _paths(args)
    counts = {"--shards": args.shards, "--workers": args.workers, "--max-text-tokens": args.max_text_tokens}
    for flag, value in counts.items():
        if value is not None and value < 1:
            raise UserInputError(f"{flag} must be at least 1, got {value}")
    check_output_dir(out, flag="OUT")  # before the import and the text encoder, which take a while
    if raw is not None:
        check_bucket(raw, flag="RAW")
    skipped_before = []  # inputs the RLDS import already rejected, counted in the index too
    if args.from_tfds:
        raw = out / "rlds_episodes"  # kept, so a re-run resumes; remove it once the pack is done if space matters
        summary = import_rlds(args.from_tfds, raw, data_dir=args.tfds_data_dir, split=args.split,
                              image_key=args.image_key, fps=args.fps, max_episodes=args.max_episodes)
        print(f"imported {summary['episodes']} episode(s) of {summary['path']} (video {summary['video']}, "
              f"prompt {summary['prompt']}, actions {summary['actions']}, joints {summary['joints']}); "
              f"skipped {len(summary['skipped'])}")
        skipped_before = summary["skipped"]
    encoder = text_encoder_from_spec(args.text_encoder, max_length=args.max_text_tokens)
    index = pack(raw, out, text_encoder=encoder, shards=args.shards, workers=args.workers, strict=args.strict,
                 skipped_before=skipped_before)
    print(f"packed {index['num_records']} of {index['inputs']} episodes into {len(index['shards'])} shard(s) "
          f"in {out}; skipped {len(index['skipped'])}")
    for item in index["skipped"]:
        print(f"  skipped {item['file']}: {item['reason']}")
    if index["prompts_at_max_length"]:
        print(f"note: {index['prompts_at_max_length']} prompt(s) fill all {index['text_encoder']['max_length']} "
              f"text tokens and may have been cut (--max-text-tokens sets the length)")
    return 0
