"""The ``gw-jax`` console script.

Subcommands live in their own modules and are imported only when chosen, so ``gw-jax --help`` is
instant and a broken optional dependency only affects its own command. Each module provides
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gw_jax import host_memory
from gw_jax.errors import UserInputError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("gw_jax.demo", "the data engine end to end: sim, pack, train, roll out, report"),
    "sim": ("gw_jax.data.sim_cli", "simulate robot-arm episodes with MuJoCo (mp4 + txt + npz)"),
    "pack": ("gw_jax.data.pack_cli", "pack episodes into sharded TFRecords with text embeddings"),
    "verify": ("gw_jax.data.verify_cli", "check every record and checksum of a packed dataset"),
    "train": ("gw_jax.train.cli", "train a world model from a config (resumes from --workdir)"),
    "sample": ("gw_jax.diffusion.sample_cli", "roll out a trained model from a first frame"),
    "generate": ("gw_jax.diffusion.generate_cli", "videos from released weights (the release's inference.py)"),
    "export": ("gw_jax.train.export_cli", "a training run in the release's format (transformer or LoRA)"),
    "bench": ("gw_jax.bench.cli", "JAX vs PyTorch throughput (dit, vae, sample, data)"),
    "compile": ("gw_jax.train.compile_cli", "compile the sharded train step for a TPU topology"),
    "idm": ("gw_jax.idm.cli", "inverse dynamics: train / eval / label joint trajectories"),
    "lam": ("gw_jax.lam.cli", "latent actions from unlabelled video: train / probe / label"),
    "sysid": ("gw_jax.physics.cli", "physics system identification with a PINN surrogate"),
    "engine": ("gw_jax.engine.cli", "data engine: seeds -> new views -> IDM labels -> gates -> RLDS"),
    "filter": ("gw_jax.engine.filter_cli", "score episodes with the visual, geometric and physical gates"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gw-jax",
        description="GigaWorld-0 world model in JAX.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {n:<9} {h}" for n, (_, h) in COMMANDS.items()),
    )
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _top_parser().parse_args(argv[:1] or ["--help"])  # prints help / error and exits
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    host_memory.keep_freed_memory()  # before JAX starts its threads: XLA:CPU calls stop page-faulting their temporaries
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not module_name.startswith(e.name):  # a dependency, not the command, is missing
            raise
        print(f"gw-jax {name}: not available in this build yet ({help_text})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog=f"gw-jax {name}", description=help_text)
    module.add_arguments(parser)
    # Config overrides (--config.a.b=value) are collected for any command that takes --config.
    args, extra = parser.parse_known_args(rest)
    unknown = [a for a in extra if not (a.startswith("--config.") and "=" in a)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (config overrides look like --config.a.b=value)")
    args.config_overrides = extra
    try:
        return int(module.run(args) or 0)
    except UserInputError as e:
        print(f"gw-jax {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gw-jax {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
