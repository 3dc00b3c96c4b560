"""Where the 2B bf16 train step's time goes on one GPU, and which switches change it (issue 20; the row JAX lost
to ``torch.compile`` in docs/benchmarks.md: ``train17``, 5x60x80 latents, no recomputation).

    XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 python scripts/gpu_train_study.py --out study.json \
        --variants base,no_triton_gemm,latency_hiding,unrolled
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 python scripts/gpu_train_study.py --out fwd61.json \
        --forward --frames 16 --variants base,unrolled

``profile``: xprof of 5 steps of ``base``: GPU time per kernel family (cuBLAS/Triton matmuls, cuDNN attention,
XLA fusions, copies) and how much of the step the GPU is busy. ``variants``: each compiled once, then timed
interleaved (rounds of 3 steps per variant, medians) on one shared (params, AdamW state). Results of
2026-11-27: docs/benchmarks.md ("The scanned blocks cost the GPU train step 22%"), docs/gpu_train_study_h100.json.

- ``base``: ``gw_jax.bench.dit_bench.jax_forward`` with its 28 blocks scanned (``nnx.scan``), the GPU default
  until session 35
- ``unrolled``: ``scan_blocks=False`` (the blocks in a Python loop; the GPU default since, via ``"auto"``)
- ``plain_elementwise``: LayerNorm, RMSNorm and GELU without their ``jax.checkpoint`` (saved, not recomputed;
  patches the blocks for every variant after it, so name it last; out of memory on an H100)
- ``no_triton_gemm`` / ``latency_hiding``: XLA:GPU compiler options for the same program

``--tiny`` runs everything at the tiny preset (a CPU smoke run; no GPU kernels to list).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import re
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
from jax.profiler import ProfileData

from gw_jax.bench.dit_bench import PRESETS, adamw_train_step, jax_forward
from gw_jax.models import dit_blocks, layers

SHAPE = dict(PRESETS["2b"], frames=5)
COMPILER_OPTIONS = {"no_triton_gemm": {"xla_gpu_enable_triton_gemm": False},
                    "latency_hiding": {"xla_gpu_enable_latency_hiding_scheduler": True}}
MODEL_OPTIONS = {"unrolled": {"scan_blocks": False}}  # the others scanned, as before "auto" (session 35)
FAMILIES = [("attention (cuDNN)", r"fmha|cudnn|flash"), ("matmul (cuBLAS)", r"gemm|xmma|nvjet|cutlass|cublas"),
            ("matmul (Triton)", r"triton"), ("copy / transpose", r"copy|transpose|memcpy|memset"),
            ("reduction fusion", r"reduce|reduction"), ("other fusion", r"fusion|loop|input"), ("other", r".")]


def plain_elementwise():
    """LayerNorm, RMSNorm and GELU as plain functions (their jax.checkpoint removed) in the DiT's blocks."""
    dit_blocks.layer_norm = lambda x, eps=1e-6: layers._layer_norm.__wrapped__(x, eps)
    dit_blocks.gelu = layers.gelu.__wrapped__
    layers._rms_norm = layers._rms_norm.__wrapped__


def compiled_step(variant: str, shape: dict, state: dict | None, forward_only: bool = False):
    """(compiled train step, state, compile seconds); ``state`` (params, opt) is made on the first call."""
    model_options = MODEL_OPTIONS.get(variant, {"scan_blocks": True})
    forward, params = jax_forward(shape, "bfloat16", attention_impl="auto", **model_options)
    step, tx = adamw_train_step(forward)

    if forward_only:  # the step's signature (one timing loop for both), the loss alone out
        step = lambda q, opt: jnp.mean(forward(q).astype(jnp.float32) ** 2)
    if state is None:
        state = {"q": params, "opt": tx.init(params)}
    start = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=() if forward_only else (0, 1)).lower(state["q"], state["opt"]).compile(
        compiler_options=COMPILER_OPTIONS.get(variant) or None)
    return compiled, state, time.perf_counter() - start


def run_steps(compiled, state: dict, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        loss = compiled(state["q"], state["opt"])
        if isinstance(loss, tuple):  # a train step: the new state, then the loss
            state["q"], state["opt"], loss = loss
        loss.block_until_ready()
        times.append(time.perf_counter() - start)
    return times


def gpu_kernel_profile(compiled, state: dict, steps: int = 5) -> dict:
    """Kernel time per family and the GPU's busy fraction over ``steps`` steps (xprof)."""
    with tempfile.TemporaryDirectory() as trace_dir:
        start = time.perf_counter()
        with jax.profiler.trace(trace_dir):
            run_steps(compiled, state, steps)
        wall = time.perf_counter() - start
        data = ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])
    kernels = [(e.start_ns, e.duration_ns, e.name) for plane in data.planes if plane.name.startswith("/device:GPU")
               for line in plane.lines if "Stream" in line.name for e in line.events]
    if not kernels:
        return {"note": "no GPU kernels traced", "planes": [p.name for p in data.planes]}
    by_name = collections.Counter()
    for _, duration, name in kernels:
        by_name[name] += duration
    families = collections.Counter()
    for name, total in by_name.items():
        family = next(f for f, pattern in FAMILIES if re.search(pattern, name, re.IGNORECASE))
        families[family] += total
    spans = sorted((s, s + d) for s, d, _ in kernels)  # busy = union of kernel intervals over all streams
    busy, end = 0, spans[0][0]
    for s, e in spans:
        busy += max(0, e - max(s, end))
        end = max(end, e)
    ms = lambda ns: round(ns / steps / 1e6, 2)
    return {"wall_ms_per_step_traced": round(wall / steps * 1e3, 1), "gpu_busy_ms_per_step": ms(busy),
            "kernel_ms_per_step": ms(sum(by_name.values())), "kernels_per_step": len(kernels) // steps,
            "families_ms_per_step": {f: ms(t) for f, t in families.most_common()},
            "top_kernels_ms_per_step": {n[:120]: ms(t) for n, t in by_name.most_common(30)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file for the profile and the timings")
    parser.add_argument("--variants", default="base,unrolled,no_triton_gemm,latency_hiding")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=SHAPE["frames"], help="latent frames (16: the 61-frame clip)")
    parser.add_argument("--forward", action="store_true", help="time the forward, not the train step")
    parser.add_argument("--tiny", action="store_true", help="the tiny preset (a CPU smoke run)")
    args = parser.parse_args()
    shape = dict(PRESETS["tiny"], frames=2) if args.tiny else dict(SHAPE, frames=args.frames)
    variants = args.variants.split(",")
    result = {"device": jax.devices()[0].device_kind, "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"),
              "shape": shape, "timed": "forward" if args.forward else "train step", "compile_s": {}, "errors": {}}
    steps, state = {}, None
    for variant in variants:  # plain_elementwise patches the blocks for the variants after it: keep it last
        try:
            if variant == "plain_elementwise":
                plain_elementwise()
            steps[variant], state, result["compile_s"][variant] = compiled_step(variant, shape, state, args.forward)
            run_steps(steps[variant], state, 2)  # warm-up
            if variant == "base":  # profiled first: a later variant that runs out of memory fragments the pool
                result["profile_base"] = gpu_kernel_profile(steps["base"], state)
                print(json.dumps(result["profile_base"], indent=1), flush=True)
        except Exception as e:  # an option this XLA lacks, or out of memory: a result too
            result["errors"][variant] = f"{type(e).__name__}: {str(e)[:300]}"
            steps.pop(variant, None)
        print(variant, result["compile_s"].get(variant), result["errors"].get(variant), flush=True)
    times = collections.defaultdict(list)
    for _ in range(args.rounds):
        for variant, compiled in steps.items():
            times[variant] += run_steps(compiled, state, 3)
    result["median_s"] = {v: statistics.median(t) for v, t in times.items()}
    result["vs_base"] = {v: result["median_s"][v] / result["median_s"]["base"] for v in times} if "base" in times \
        else {}
    result["peak_gib"] = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**30
    result["params_finite"] = all(bool(jnp.isfinite(leaf).all()) for leaf in jax.tree.leaves(state["q"]))
    print(json.dumps({k: result[k] for k in ("median_s", "vs_base", "compile_s", "errors", "peak_gib")}, indent=1))
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
