"""``gw-jax bench dit|vae|sample [--preset tiny|cpu|2b] [--json PATH]``: JAX vs PyTorch, one run, one table;
``bench dit --sparse`` (NATTEN sparse vs dense attention);
``bench data`` (loader throughput) and ``bench sim`` (scripted-policy success rates)."""

from __future__ import annotations

import argparse

from gw_jax.bench import dit_bench, sample_bench, sparse_bench, vae_bench
from gw_jax.data import bench as data_bench
from gw_jax.data import sim
from gw_jax.errors import UserInputError
from gw_jax.storage import as_path, check_bucket, check_output_file, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["dit", "vae", "sample", "data", "sim"])
    parser.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "2b"])
    parser.add_argument("--no-torch-compile", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="dit/sample: run both frameworks on this many cores (CPU affinity + torch threads); "
                             "default: all cores this process may use")
    parser.add_argument("--sparse", action="store_true",
                        help="dit: NATTEN sparse vs dense attention (presets tiny, cpu) instead of JAX vs PyTorch")
    parser.add_argument("--no-memory", action="store_true", help="vae: skip the ahead-of-time memory report")
    parser.add_argument("--steps", type=int, default=10, help="sample: sampler steps")
    parser.add_argument("--packed", default=None, help="data: the packed dataset to read (a folder or gs:// URI)")
    parser.add_argument("--workers", type=int, default=0, help="data: loader worker processes")
    parser.add_argument("--batch-size", type=int, default=8, help="data: clips per batch")
    parser.add_argument("--seconds", type=float, default=10.0, help="data: how long to read")
    parser.add_argument("--seeds", type=int, default=30, help="sim: episodes per task")
    parser.add_argument("--fps", type=float, default=8.0, help="sim: frames per simulated second (33 frames)")
    parser.add_argument("--json", default=None, help="also write the results as JSON (a file or gs:// URI)")


def limit_threads(threads: int) -> None:
    """Both frameworks on the same ``threads`` cores: XLA:CPU sizes its pool from the CPU affinity when its
    backend starts (so this must run first), PyTorch takes ``set_num_threads``."""
    import os

    from jax._src import xla_bridge

    cpus = sorted(os.sched_getaffinity(0))
    if not 1 <= threads <= len(cpus):
        raise UserInputError(f"--threads {threads}: choose 1 to {len(cpus)} (the cores this process may use)")
    if xla_bridge.backends_are_initialized():
        raise UserInputError("--threads: the JAX backend already started; pass --threads to a fresh gw-jax bench")
    os.sched_setaffinity(0, set(cpus[:threads]))
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass


def run(args) -> int:
    json_out = check_output_file(args.json, flag="--json") if args.json else None
    if args.threads is not None:
        limit_threads(args.threads)
    if args.what == "dit" and args.sparse:
        if args.preset not in sparse_bench.SPARSE_PRESETS:
            raise UserInputError(f"--preset {args.preset}: bench dit --sparse has presets "
                                 f"{sorted(sparse_bench.SPARSE_PRESETS)}")
        module, report = sparse_bench, sparse_bench.run_sparse_bench(args.preset)
    elif args.what == "dit":
        module, report = dit_bench, dit_bench.run_dit_bench(args.preset, torch_compile=not args.no_torch_compile)
    elif args.what == "vae":
        module, report = vae_bench, vae_bench.run_vae_bench(args.preset, memory=not args.no_memory)
    elif args.what == "sample":
        module, report = sample_bench, sample_bench.run_sample_bench(
            args.preset, steps=args.steps, torch_compile=not args.no_torch_compile)
    elif args.what == "data":
        if not args.packed:
            raise UserInputError("bench data needs --packed DIR (a `gw-jax pack` output)")
        packed = as_path(args.packed, flag="--packed")
        check_bucket(packed, flag="--packed")
        module, report = data_bench, data_bench.bench_data(packed, batch_size=args.batch_size,
                                                           workers=args.workers, seconds=args.seconds)
    elif args.what == "sim":
        module, report = sim, sim.bench_sim(args.seeds, fps=args.fps)
    else:
        raise UserInputError(f"bench {args.what}: unknown")
    print(module.markdown_table(report))
    if json_out is not None:
        write_json(json_out, report)
    return 0
