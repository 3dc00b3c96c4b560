"""Sparse (NATTEN neighbourhood) vs dense attention on this machine: per attention layer and whole DiT.

    gw-jax bench dit --sparse [--preset cpu] [--json PATH]

The neighbourhoods are blocks of Cosmos-Predict2's published 2B configuration
(``COSMOS_PREDICT2_2B_NATTEN``), rescaled by their ``base_size`` to the preset's token grid. Dense is the
``xla`` kernel (L x L logits), sparse the block-sparse kernel. For each pattern: the kept fraction of
(query, key) pairs, the fraction of block pairs the kernel computes, and forward / forward+backward times
of one attention layer; then the DiT with those blocks (forward, train step) against the same DiT dense.
Medians of ``repeats`` runs after a warm-up; compilation excluded.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gw_jax.bench.dit_bench import bench_jax, median_time
from gw_jax.models.attention import xla_attention
from gw_jax.models.neighborhood_attention import COSMOS_PREDICT2_2B_NATTEN, adapt, parse_entry
from gw_jax.models.neighborhood_blocksparse import blocksparse_attention, make_plan

SPARSE_PRESETS = {
    # seconds: for tests
    "tiny": dict(model_channels=32, num_blocks=2, num_heads=2, crossattn=8, adaln=8, batch=1, frames=2,
                 height=8, width=8, text_len=3, repeats=1, blocks=(3, 11)),
    # 8 x 24 x 32 = 6,144 tokens: attention dominates the DiT's FLOPs on this CPU
    "cpu": dict(model_channels=256, num_blocks=4, num_heads=4, crossattn=64, adaln=32, batch=1, frames=8,
                height=48, width=64, text_len=16, repeats=3, blocks=(0, 3, 11, 23)),
}


def _attention_rows(p: dict, entries) -> list[dict]:
    grid = (p["frames"], p["height"] // 2, p["width"] // 2)
    length, heads = int(np.prod(grid)), p["num_heads"]
    rng = np.random.default_rng(0)
    q, k, v, cot = (jnp.asarray(rng.normal(size=(p["batch"], length, heads, p["model_channels"] // heads)),
                                jnp.float32) for _ in range(4))

    def timings(kernel):
        forward = jax.jit(kernel)
        backward = jax.jit(lambda q, k, v, cot: jax.vjp(kernel, q, k, v)[1](cot))
        forward(q, k, v).block_until_ready()
        jax.block_until_ready(backward(q, k, v, cot))
        return (median_time(lambda: forward(q, k, v).block_until_ready(), p["repeats"]),
                median_time(lambda: jax.block_until_ready(backward(q, k, v, cot)), p["repeats"]))

    dense_fwd, dense_bwd = timings(xla_attention)
    rows = [dict(block="dense", kept=1.0, executed=1.0, forward_s=dense_fwd, forward_backward_s=dense_bwd)]
    for index, entry in zip(p["blocks"], entries, strict=True):
        nb = adapt(parse_entry(entry, f"block {index}"), grid, f"block {index}")
        plan = make_plan(nb)
        fwd, bwd = timings(functools.partial(blocksparse_attention, nb=nb))
        rows.append(dict(block=index, window=nb.window, stride=nb.stride, dilation=nb.dilation, tile=plan.tile,
                         kept=nb.kept_fraction, executed=plan.executed, forward_s=fwd, forward_backward_s=bwd))
    return rows


def run_sparse_bench(preset: str = "cpu") -> dict:
    p = dict(SPARSE_PRESETS[preset])
    entries = [dict(COSMOS_PREDICT2_2B_NATTEN[i]) for i in p["blocks"]]
    model = {k: p[k] for k in p if k != "blocks"}
    attention = _attention_rows(p, entries)
    dense = bench_jax(model, attention_impl="xla")
    sparse = bench_jax(model, attention_impl="blocksparse", natten_parameters=entries)
    # expected forward time ratio if time followed FLOPs: matmuls 2*params*tokens, attention 4*L^2*D each block
    tokens = p["frames"] * (p["height"] // 2) * (p["width"] // 2)
    matmuls = 2 * dense["params"] * tokens
    per_block = 4 * tokens ** 2 * p["model_channels"]
    flops_ratio = (matmuls + per_block * sum(r["kept"] for r in attention[1:])) / (
        matmuls + per_block * p["num_blocks"])
    return dict(preset=preset, shape=p, tokens=tokens, device=str(jax.devices()[0]), attention=attention,
                dit={"dense (xla)": dense, "sparse (blocksparse)": sparse}, dit_flops_ratio=flops_ratio)


def markdown_table(report: dict) -> str:
    p = report["shape"]
    lines = [f"Sparse vs dense, preset `{report['preset']}` on {report['device']}: {report['tokens']:,} tokens "
             f"({p['frames']}x{p['height'] // 2}x{p['width'] // 2}), {p['num_heads']} heads x "
             f"{p['model_channels'] // p['num_heads']}, batch {p['batch']}", "",
             "| attention | window / stride / dilation | kept | computed | forward (s) | fwd+bwd (s) | "
             "time vs dense fwd / fwd+bwd |", "| --- | --- | --- | --- | --- | --- | --- |"]
    dense = report["attention"][0]
    for r in report["attention"]:
        shape = "-" if r["block"] == "dense" else f"{r['window']} / {r['stride']} / {r['dilation']}"
        name = "dense (xla)" if r["block"] == "dense" else f"2B block {r['block']}"
        lines.append(f"| {name} | {shape} | {r['kept']:.3f} | {r['executed']:.3f} | {r['forward_s']:.3f} | "
                     f"{r['forward_backward_s']:.3f} | {r['forward_s'] / dense['forward_s']:.3f} / "
                     f"{r['forward_backward_s'] / dense['forward_backward_s']:.3f} |")
    lines += ["", "| DiT | forward (s) | train step (s) | compile fwd / train (s) |", "| --- | --- | --- | --- |"]
    for name, r in report["dit"].items():
        lines.append(f"| {name} | {r['forward_s']:.3f} | {r['train_step_s']:.3f} | "
                     f"{r['forward_compile_s']:.1f} / {r['train_compile_s']:.1f} |")
    d, s = report["dit"]["dense (xla)"], report["dit"]["sparse (blocksparse)"]
    lines += ["", f"Sparse / dense: forward {s['forward_s'] / d['forward_s']:.3f}, train step "
              f"{s['train_step_s'] / d['train_step_s']:.3f}; FLOPs ratio {report['dit_flops_ratio']:.3f}."]
    return "\n".join(lines)
