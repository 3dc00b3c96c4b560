"""``gw-jax export --workdir DIR --out OUT [--ema] [--fuse] [--step N]``: a training run in the release's format.

Full training -> OUT/config.json + diffusion_pytorch_model*.safetensors (a ``transformer/`` folder); LoRA
training -> OUT/diffusion_pytorch_model.safetensors with the peft keys the release's ``load_lora`` reads
(``--fuse``: the base with the adapters merged, as a transformer folder; required when the run trained action
layers, which the adapter file cannot hold).
"""

from __future__ import annotations

import argparse

from gw_jax.storage import local_args
from gw_jax.train.export import export_workdir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="a `gw-jax train` folder")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--ema", action="store_true", help="export the EMA weights")
    parser.add_argument("--fuse", action="store_true", help="LoRA runs: merge the adapters into the base")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")


def run(args) -> int:
    local_args(args, {"out": "--out"}, command="export")  # safetensors are written by a local-file library
    written = export_workdir(args.workdir, args.out, ema=args.ema, step=args.step, fuse=args.fuse)
    print(f"wrote {written}")
    return 0
