"""The 2B DiT on one GPU in bfloat16: JAX (XLA, ``attention_impl="auto"`` = cuDNN flash attention) vs diffusers'
Cosmos model (PyTorch eager and ``torch.compile``): forward, train step (fwd + bwd + AdamW, float32 master
weights) and the 10-step guided sampling loop, with MFU. One framework per process (JAX preallocates GPU
memory); each row is appended to a JSON-lines file as soon as it is measured:

    XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 python scripts/gpu_bench.py jax --out gpu.jsonl
    JAX_PLATFORMS=cpu python scripts/gpu_bench.py torch --out gpu.jsonl
    JAX_PLATFORMS=cpu python scripts/gpu_bench.py torch-compile --out gpu.jsonl

Rows (the release's 2B shape, batch 1, 512 text tokens): ``fwd61`` the forward on a 61x480x640 clip (16x60x80
latents, 19,200 tokens); ``sample61`` the guided sampling loop on it (10 steps, one call of batch 2 per step,
``gw_jax.bench.sample_bench``'s loops); ``train61_remat`` a train step on it with every block recomputed in
the backward (JAX ``remat_policy="full"``, diffusers' gradient checkpointing); ``train17`` a train step on a
17-frame clip (5 latent frames, 6,000 tokens) without recomputation. Recorded results: docs/benchmarks.md (its
rows of 2026-11-26 ran scanned blocks; since session 35 the DiT unrolls them on a GPU, ``scan_blocks="auto"``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from gw_jax.bench.dit_bench import PRESETS, median_time, model_flops

SHAPES = {"fwd61": dict(PRESETS["2b"], frames=16, repeats=5), "sample61": dict(PRESETS["2b"], frames=16, repeats=3),
          "train61_remat": dict(PRESETS["2b"], frames=16, repeats=3),
          "train17": dict(PRESETS["2b"], frames=5, repeats=5)}
SAMPLE_STEPS = 10
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak, SXM


def peak_flops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in device_name), None)


def row_flops(shape: str, params: int) -> float:
    p = SHAPES[shape]
    if shape.startswith("sample"):  # one forward of batch 2 (negative + positive prompt) per step
        return SAMPLE_STEPS * model_flops(dict(p, batch=2 * p["batch"]), params, False)
    return model_flops(p, params, train=shape.startswith("train"))


# ------------------------------------------------------------------------------------------------ JAX
def jax_rows(shapes):
    import jax

    from gw_jax.bench import sample_bench
    from gw_jax.models.attention import resolve_auto
    from gw_jax.models.dit import blocks_scanned

    blocks = "scanned" if blocks_scanned("auto") else "unrolled"  # the DiT's default
    versions = f"jax {jax.__version__}, auto attention -> {resolve_auto()}, blocks {blocks}"
    for shape in shapes:
        try:
            if shape.startswith("sample"):
                result = sample_bench.bench_jax_sampler(SHAPES[shape], SAMPLE_STEPS, dtype="bfloat16",
                                                        attention_impl="auto")
                seconds, compile_s, count = result["loop_s"], result["compile_s"], result["params"]
            else:
                seconds, compile_s, count = jax_step(shape)
        except Exception as e:  # an out-of-memory row is a result too
            yield dict(framework="jax", shape=shape, error=f"{type(e).__name__}: {str(e)[:300]}")
            continue
        memory = jax.devices()[0].memory_stats() or {}
        yield dict(framework="jax", shape=shape, params=count, seconds=seconds, compile_s=compile_s,
                   flops=row_flops(shape, count), peak_gib_so_far=memory.get("peak_bytes_in_use", 0) / 2**30,
                   device=jax.devices()[0].device_kind, versions=versions)


def jax_step(shape: str) -> tuple[float, float, int]:
    import jax
    import numpy as np

    from gw_jax.bench.dit_bench import adamw_train_step, jax_forward

    p = SHAPES[shape]
    remat = "full" if shape.endswith("_remat") else "none"
    forward, params = jax_forward(p, "bfloat16", remat_policy=remat, attention_impl="auto")
    count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
    start = time.perf_counter()
    if shape.startswith("train"):
        step, tx = adamw_train_step(forward)
        opt_state = tx.init(params)
        compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state).compile()
        state = {"q": params, "opt": opt_state}

        def once():
            state["q"], state["opt"], loss = compiled(state["q"], state["opt"])
            loss.block_until_ready()
    else:
        compiled = jax.jit(forward).lower(params).compile()

        def once():
            compiled(params).block_until_ready()
    compile_s = time.perf_counter() - start
    once()
    return median_time(once, p["repeats"]), compile_s, count


# ------------------------------------------------------------------------------------------------ PyTorch
def torch_rows(shapes, compile_model: bool):
    import diffusers
    import torch

    from gw_jax.bench.dit_bench import torch_cosmos
    from gw_jax.bench.sample_bench import cosmos_call, inputs, torch_sample_reference

    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a smoke run of this script (--tiny)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.device(device):  # random init on the GPU (minutes on the CPU at 2B)
        model = torch_cosmos(SHAPES["fwd61"])
    run = torch.compile(model) if compile_model else model
    name = "pytorch torch.compile (autocast bf16)" if compile_model else "pytorch eager (autocast bf16)"
    count = sum(q.numel() for q in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for shape in shapes:
        p = SHAPES[shape]
        if shape.endswith("_remat"):
            model.enable_gradient_checkpointing()
        else:
            model.disable_gradient_checkpointing()
        b, t, h, w = p["batch"], p["frames"], p["height"], p["width"]
        x = torch.randn(b, 18, t, h, w, device=device)
        ts = torch.rand(b, device=device)
        ctx = torch.randn(b, p["text_len"], p["crossattn"], device=device)
        sample_inputs = {k: torch.from_numpy(v).to(device) for k, v in inputs(p).items()}
        call = cosmos_call(run)

        def once(shape=shape, x=x, ts=ts, ctx=ctx, sample_inputs=sample_inputs, call=call):
            with torch.autocast(device, dtype=torch.bfloat16):
                if shape.startswith("train"):
                    optimizer.zero_grad(set_to_none=True)
                    loss = run(x, ts, ctx, fps=16, return_dict=False)[0].float().pow(2).mean()
                    loss.backward()
                    optimizer.step()
                elif shape.startswith("sample"):
                    torch_sample_reference(call, sample_inputs["noise"], context=sample_inputs["context"],
                                           negative_context=sample_inputs["negative"],
                                           cond_latents=sample_inputs["cond"], cond_mask=sample_inputs["mask"],
                                           steps=SAMPLE_STEPS)
                else:
                    with torch.no_grad():
                        run(x, ts, ctx, fps=16, return_dict=False)
            sync()

        try:
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            once()  # warm-up (and compilation)
            first_s = time.perf_counter() - start
            seconds = median_time(once, p["repeats"])
        except Exception as e:
            yield dict(framework=name, shape=shape, error=f"{type(e).__name__}: {str(e)[:300]}")
            optimizer.zero_grad(set_to_none=True)
            continue
        yield dict(framework=name, shape=shape, params=count, seconds=seconds,
                   compile_s=first_s if compile_model else 0.0, flops=row_flops(shape, count),
                   peak_gib=torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
                   device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
                   versions=f"torch {torch.__version__}, diffusers {diffusers.__version__}")
        if device == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=["jax", "torch", "torch-compile"])
    parser.add_argument("--out", required=True, help="JSON-lines file the rows are appended to")
    parser.add_argument("--tiny", action="store_true", help="the rows at the tiny preset's size (a CPU smoke run)")
    parser.add_argument("--rows", default=",".join(SHAPES), help=f"comma-separated, of {list(SHAPES)}")
    args = parser.parse_args()
    shapes = args.rows.split(",")
    if unknown := set(shapes) - set(SHAPES):
        parser.error(f"--rows: unknown {sorted(unknown)}; choose from {list(SHAPES)}")
    if args.tiny:
        frames = {"train17": 2}
        SHAPES.update({k: dict(PRESETS["tiny"], frames=frames.get(k, 3)) for k in SHAPES})
    rows = (jax_rows(shapes) if args.framework == "jax"
            else torch_rows(shapes, compile_model=args.framework == "torch-compile"))
    for row in rows:  # each row written as soon as measured
        peak = peak_flops(row.get("device", ""))
        if "seconds" in row:
            row["mfu"] = row["flops"] / row["seconds"] / peak if peak else None
        row.update(date=time.strftime("%Y-%m-%d"), python=platform.python_version())
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
