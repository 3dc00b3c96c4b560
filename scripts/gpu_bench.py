"""The 2B DiT on one GPU in bfloat16: JAX (XLA, cuDNN attention) vs diffusers' Cosmos model (PyTorch eager),
forward and train step (fwd + bwd + AdamW, float32 master weights), with MFU. One framework per process (JAX
preallocates GPU memory), results appended to a JSON-lines file:

    python scripts/gpu_bench.py jax --out gpu.jsonl && python scripts/gpu_bench.py torch --out gpu.jsonl

Shapes: ``fwd61`` = the release's 61x480x640 clip (16x60x80 latents, 19,200 tokens), forward only;
``train17`` = a 17-frame clip (5 latent frames, 6,000 tokens), train step. Recorded results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from gw_jax.bench.dit_bench import PRESETS, median_time, model_flops

SHAPES = {"fwd61": dict(PRESETS["2b"], frames=16, repeats=5), "train17": dict(PRESETS["2b"], frames=5, repeats=5)}
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak, SXM


def peak_flops(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in device_name), None)


def run_jax():
    for shape, train in (("fwd61", False), ("train17", True)):
        yield jax_row(shape, train)


def jax_row(shape: str, train: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from gw_jax.bench.dit_bench import jax_forward

    p = SHAPES[shape]
    forward, params = jax_forward(p, "bfloat16", remat_policy="none", attention_impl="cudnn")
    count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
    start = time.perf_counter()
    if train:
        tx = optax.adamw(1e-4)

        def step(q, opt):
            loss, grads = jax.value_and_grad(lambda q_: jnp.mean(forward(q_).astype(jnp.float32) ** 2))(q)
            updates, opt = tx.update(grads, opt, q)
            return optax.apply_updates(q, updates), opt, loss

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
    seconds = median_time(once, p["repeats"])
    memory = jax.devices()[0].memory_stats() or {}
    return dict(framework="jax", shape=shape, params=count, seconds=seconds, compile_s=compile_s,
                flops=model_flops(p, count, train), peak_gib_so_far=memory.get("peak_bytes_in_use", 0) / 2**30,
                device=jax.devices()[0].device_kind, versions=f"jax {jax.__version__}")


def run_torch():
    import torch

    for shape, train in (("fwd61", False), ("train17", True)):
        yield torch_row(shape, train)
        torch.cuda.empty_cache()


def torch_row(shape: str, train: bool) -> dict:
    import diffusers
    import torch

    from gw_jax.bench.dit_bench import torch_cosmos

    p = SHAPES[shape]
    model = torch_cosmos(p).cuda()
    b, t, h, w = p["batch"], p["frames"], p["height"], p["width"]
    x = torch.randn(b, 18, t, h, w, device="cuda")
    ts = torch.rand(b, device="cuda")
    ctx = torch.randn(b, p["text_len"], p["crossattn"], device="cuda")
    count = sum(q.numel() for q in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4) if train else None

    def once():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if train:
                optimizer.zero_grad(set_to_none=True)
                loss = model(x, ts, ctx, fps=16, return_dict=False)[0].float().pow(2).mean()
                loss.backward()
                optimizer.step()
            else:
                with torch.no_grad():
                    model(x, ts, ctx, fps=16, return_dict=False)
        torch.cuda.synchronize()

    once()
    seconds = median_time(once, p["repeats"])
    return dict(framework="pytorch eager (autocast bf16)", shape=shape, params=count, seconds=seconds,
                compile_s=0.0, flops=model_flops(p, count, train),
                peak_gib_so_far=torch.cuda.max_memory_allocated() / 2**30, device=torch.cuda.get_device_name(),
                versions=f"torch {torch.__version__}, diffusers {diffusers.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=["jax", "torch"])
    parser.add_argument("--out", required=True, help="JSON-lines file the rows are appended to")
    args = parser.parse_args()
    for row in run_jax() if args.framework == "jax" else run_torch():  # each row written as soon as measured
        with open(args.out, "a") as f:
            peak = peak_flops(row["device"])
            row.update(mfu=row["flops"] / row["seconds"] / peak if peak else None,
                       date=time.strftime("%Y-%m-%d"), python=platform.python_version())
            f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
