"""JAX vs PyTorch throughput of the GigaWorld-0 DiT: forward and train step (fwd + bwd + AdamW).

The PyTorch side is diffusers' ``CosmosTransformer3DModel`` (the Cosmos-Predict2 architecture
GigaWorld-0 uses) set to the same dimensions, eager and ``torch.compile``. Warm-up and compilation are
timed separately; steady-state numbers are medians of repeated runs, timed in interleaved rounds (each
implementation once per round, in a shuffled order, after one untimed call) so that load from other processes hits
every row alike. ``gw-jax bench --threads N`` puts both frameworks on the same N cores (the default: all cores this
process may use; the table states them).
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.ad_checkpoint import print_saved_residuals

from gw_jax.models.dit import GigaWorld0DiT

PRESETS = {
    # seconds: for tests
    "tiny": dict(model_channels=32, num_blocks=1, num_heads=2, crossattn=8, adaln=8, batch=1, frames=2,
                 height=4, width=4, text_len=3, repeats=2),
    # fits this 2-core CPU in a couple of minutes; 31 interleaved rounds (with 5, two runs of the same code on a
    # quiet machine put JAX's train step at 0.86x and 0.92x of eager's)
    "cpu": dict(model_channels=256, num_blocks=4, num_heads=4, crossattn=64, adaln=32, batch=2, frames=4,
                height=16, width=16, text_len=16, repeats=31),
    # the released 2B shape at 61x480x640 (16x60x80 latents): for a GPU/TPU
    "2b": dict(model_channels=2048, num_blocks=28, num_heads=16, crossattn=1024, adaln=256, batch=1, frames=16,
               height=60, width=80, text_len=512, repeats=10),
}


def saved_residual_lines(f, *args) -> list[str]:
    """What the backward of ``f(*args)`` keeps: ``jax.ad_checkpoint.print_saved_residuals``, one line per array
    (e.g. ``bf16[1,1200,2048] output of dot_general ...``), captured instead of printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        print_saved_residuals(f, *args)
    return printed.getvalue().splitlines()


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def thread_info() -> dict:
    """The threads each side may use: both default to every core this process may run on (state it in tables)."""
    info = {"cpus": len(os.sched_getaffinity(0)), "load_average": [round(x, 2) for x in os.getloadavg()]}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def model_flops(p: dict, params: int, train: bool) -> float:
    tokens = p["frames"] * (p["height"] // 2) * (p["width"] // 2)
    forward = 2 * params * tokens + 4 * tokens ** 2 * p["model_channels"] * p["num_blocks"]
    return p["batch"] * forward * (3 if train else 1)


def jax_dit(p: dict, dtype: str = "float32", **model_kwargs):
    """The GigaWorld-0 DiT at the preset's dimensions (random weights); ``model_kwargs`` e.g. natten_parameters."""
    return GigaWorld0DiT(max_img_h=p["height"], max_img_w=p["width"], max_frames=p["frames"], in_channels=17,
                         out_channels=16, patch_spatial=2, patch_temporal=1, model_channels=p["model_channels"],
                         num_blocks=p["num_blocks"], num_heads=p["num_heads"], crossattn_emb_channels=p["crossattn"],
                         adaln_lora_dim=p["adaln"], dtype=dtype, rngs=nnx.Rngs(0), **model_kwargs)


def torch_cosmos(p: dict):
    """diffusers' CosmosTransformer3DModel at the same dimensions (random weights)."""
    import torch
    from diffusers import CosmosTransformer3DModel

    torch.manual_seed(0)
    # the padding-mask channel is concatenated up front (18 inputs) rather than by diffusers, whose
    # resize of the mask needs torchvision: the same patch-embedding work without that dependency
    return CosmosTransformer3DModel(
        in_channels=18, out_channels=16, num_attention_heads=p["num_heads"],
        attention_head_dim=p["model_channels"] // p["num_heads"], num_layers=p["num_blocks"],
        text_embed_dim=p["crossattn"], adaln_lora_dim=p["adaln"], max_size=(p["frames"], p["height"], p["width"]),
        patch_size=(1, 2, 2), rope_scale=(1.0, 1.0, 1.0), concat_padding_mask=False, extra_pos_embed_type=None)


def jax_forward(p: dict, dtype: str = "float32", **model_kwargs):
    """(forward(params) -> output, params): the preset's DiT on fixed random inputs (seed 0)."""
    graphdef, params = nnx.split(jax_dit(p, dtype, **model_kwargs))
    rng = np.random.default_rng(0)
    b, t, h, w = p["batch"], p["frames"], p["height"], p["width"]
    x = jnp.asarray(rng.normal(size=(b, 17, t, h, w)), jnp.float32)
    ts = jnp.asarray(rng.uniform(size=(b, 1, t, 1, 1)), jnp.float32)
    ctx = jnp.asarray(rng.normal(size=(b, p["text_len"], p["crossattn"])), jnp.float32)
    pad = jnp.zeros((b, 1, 8 * h, 8 * w))

    def forward(params_):
        return nnx.merge(graphdef, params_)(x, ts, ctx, 16.0, pad)

    return forward, params


def adamw_train_step(forward):
    """(train_step(params, opt_state) -> (params, opt_state, loss), tx): the benches' step on ``forward(params)``,
    loss = mean square of the output in float32 (PyTorch's side: ``.float().pow(2).mean()``), AdamW at 1e-4."""
    tx = optax.adamw(1e-4)

    def train_step(params, opt_state):
        loss, grads = jax.value_and_grad(lambda q: jnp.mean(forward(q).astype(jnp.float32) ** 2))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return train_step, tx


def bench_jax(p: dict, dtype: str = "float32", timers: dict | None = None, **model_kwargs) -> dict:
    """Compile and time; ``timers`` (a dict) also receives the warmed-up ``forward_s`` / ``train_step_s``
    callables, for :func:`interleaved_medians`."""
    forward, params = jax_forward(p, dtype, **model_kwargs)
    train_step, tx = adamw_train_step(forward)

    result = {"params": sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))}
    start = time.perf_counter()
    fwd = jax.jit(forward).lower(params).compile()
    result["forward_compile_s"] = time.perf_counter() - start
    fwd(params).block_until_ready()
    result["forward_s"] = median_time(lambda: fwd(params).block_until_ready(), p["repeats"])
    train_params = jax.tree.map(jnp.copy, params)  # the step donates its state; the forward keeps `params`
    opt_state = tx.init(train_params)
    start = time.perf_counter()
    step = jax.jit(train_step, donate_argnums=(0, 1)).lower(train_params, opt_state).compile()
    result["train_compile_s"] = time.perf_counter() - start
    state = {"params": train_params, "opt": opt_state}

    def one_step():
        state["params"], state["opt"], loss = step(state["params"], state["opt"])
        loss.block_until_ready()

    one_step()
    result["train_step_s"] = median_time(one_step, p["repeats"])
    if timers is not None:
        timers.update(forward_s=lambda: fwd(params).block_until_ready(), train_step_s=one_step)
    return result


def bench_torch(p: dict, compile_model: bool, timers: dict | None = None) -> dict | None:
    """PyTorch on its GPU when it sees one (CUDA), else on the CPU; ``device`` in the result says which."""
    try:
        import torch
        model = torch_cosmos(p)
    except ImportError:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device)
    b, t, h, w = p["batch"], p["frames"], p["height"], p["width"]
    x = torch.randn(b, 18, t, h, w, device=device)
    ts = torch.rand(b, device=device)
    ctx = torch.randn(b, p["text_len"], p["crossattn"], device=device)
    run = torch.compile(model) if compile_model else model
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward():
        out = run(x, ts, ctx, fps=16, return_dict=False)[0]
        sync()  # CUDA kernels run asynchronously: time them to completion, as block_until_ready does for JAX
        return out

    result = {"params": sum(q.numel() for q in model.parameters()), "device": device}
    with torch.no_grad():
        start = time.perf_counter()
        forward()
        result["forward_compile_s"] = time.perf_counter() - start if compile_model else 0.0
        result["forward_s"] = median_time(forward, p["repeats"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss = forward().pow(2).mean()
        loss.backward()
        optimizer.step()
        sync()

    start = time.perf_counter()
    train_step()
    result["train_compile_s"] = time.perf_counter() - start if compile_model else 0.0
    result["train_step_s"] = median_time(train_step, p["repeats"])
    if timers is not None:
        def forward_no_grad():
            with torch.no_grad():
                forward()

        timers.update(forward_s=forward_no_grad, train_step_s=train_step)
    return result


def interleaved_medians(rows: dict, timers: dict, repeats: int, seed: int = 0) -> None:
    """Re-times every row in rounds (each round runs every implementation, in a shuffled order), so load from other
    processes that comes and goes hits all rows alike; replaces the rows' medians with these, and adds the
    median process CPU time of each as ``<key>_cpu`` (every thread's, so on ``--threads 1`` a load-robust
    figure: time taken away by other processes is not counted).

    Each turn runs its callable once untimed before the timed call: the first call after another framework's can run
    slower, and a training loop never pays that (timed the old way, right after ``torch.compile``'s train step, JAX's
    forward read 11-18% slow: docs/benchmarks.md "Session 38", scripts/bench_carryover.py)."""
    times = {(name, key): ([], []) for name, fns in timers.items() for key in fns}
    turns = list(times)
    rng = np.random.default_rng(seed)
    for _ in range(repeats):
        for i in rng.permutation(len(turns)):
            (name, key), (wall, cpu) = turns[i], times[turns[i]]
            timers[name][key]()
            start, start_cpu = time.perf_counter(), time.process_time()
            timers[name][key]()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    for (name, key), (wall, cpu) in times.items():
        rows[name][key] = statistics.median(wall)
        rows[name][f"{key}_cpu"] = statistics.median(cpu)


def run_dit_bench(preset: str = "cpu", *, torch_compile: bool = True) -> dict:
    p = dict(PRESETS[preset])
    timers = {name: {} for name in ("jax (XLA, jit)", "pytorch eager", "pytorch torch.compile")}
    rows = {"jax (XLA, jit)": dict(bench_jax(p, timers=timers["jax (XLA, jit)"]), device=jax.default_backend())}
    eager = bench_torch(p, compile_model=False, timers=timers["pytorch eager"])
    if eager is not None:
        rows["pytorch eager"] = eager
        if torch_compile:
            try:
                rows["pytorch torch.compile"] = bench_torch(p, compile_model=True,
                                                            timers=timers["pytorch torch.compile"])
            except Exception as e:  # inductor needs a C++ toolchain; report instead of failing the bench
                rows["pytorch torch.compile"] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    interleaved_medians(rows, {name: fns for name, fns in timers.items() if fns}, p["repeats"])
    for row in rows.values():
        if "params" in row:
            row["forward_tflops_per_s"] = model_flops(p, row["params"], False) / row["forward_s"] / 1e12
            row["train_tflops_per_s"] = model_flops(p, row["params"], True) / row["train_step_s"] / 1e12
    return dict(preset=preset, shape=p, device=str(jax.devices()[0]), threads=thread_info(), rows=rows)


def markdown_table(report: dict) -> str:
    rows = report["rows"]
    base = rows["jax (XLA, jit)"]
    lines = [f"DiT bench, preset `{report['preset']}` on {report['device']}: {report['shape']}; "
             f"threads {report.get('threads')}", "",
             "| implementation | device | params | forward (s) | train step (s) | compile fwd / train (s) | "
             "JAX speed-up fwd / train | CPU-s fwd / train | JAX speed-up in CPU-s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | - | - | - | - | {r['error']} | - | - | - |")
            continue
        cpu = (f"{r['forward_s_cpu']:.4f} / {r['train_step_s_cpu']:.4f} | "
               f"{r['forward_s_cpu'] / base['forward_s_cpu']:.2f}x / "
               f"{r['train_step_s_cpu'] / base['train_step_s_cpu']:.2f}x") if "forward_s_cpu" in r else "- | -"
        lines.append(f"| {name} | {r.get('device', '-')} | {r['params']:,} | {r['forward_s']:.4f} | "
                     f"{r['train_step_s']:.4f} | "
                     f"{r['forward_compile_s']:.1f} / {r['train_compile_s']:.1f} | "
                     f"{r['forward_s'] / base['forward_s']:.2f}x / {r['train_step_s'] / base['train_step_s']:.2f}x | "
                     f"{cpu} |")
    return "\n".join(lines)
