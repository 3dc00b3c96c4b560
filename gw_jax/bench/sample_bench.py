"""The sampling loop, JAX vs PyTorch: Karras schedule, order-1 x0 update, classifier-free guidance.

JAX runs ``gw_jax.diffusion.sample_reference`` (one jitted ``lax.scan`` over the steps). PyTorch runs
:func:`torch_sample_reference`, a line-for-line port of that loop (``make_x0_fn`` + the order-1 update) in
Python around diffusers' ``CosmosTransformer3DModel`` at the same dimensions, eager and ``torch.compile``.
Both do the same work, and the bench proves it before timing anything: the two loops run around the same
closed-form stand-in model (:func:`jax_stand_in` / :func:`torch_stand_in`), their outputs are compared
numerically, and every model call is counted with its batch size (one call per step, negative and
positive prompt together as a batch of 2B, as the reference pipeline does).

The old bench (before issue 20) ran PyTorch with two calls of batch B per step and a different
preconditioning; ``legacy_two_calls`` keeps that loop so the table can show what it cost.
"""

from __future__ import annotations

import itertools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gw_jax.bench.dit_bench import PRESETS, interleaved_medians, jax_dit, median_time, thread_info, torch_cosmos
from gw_jax.diffusion import sample_reference
from gw_jax.diffusion.samplers import karras_sigmas

GUIDANCE, FPS, AUGMENT_SIGMA = 7.0, 16.0, 0.001


def inputs(p: dict) -> dict[str, np.ndarray]:
    """The loop's inputs (seed 0), as numpy: both frameworks start from the same arrays."""
    rng = np.random.default_rng(0)
    b, t, h, w = p["batch"], p["frames"], p["height"], p["width"]
    mask = np.zeros((b, 1, t, 1, 1), np.float32)
    mask[:, :, 0] = 1.0  # the first latent frame is the reference
    return dict(noise=(rng.normal(size=(b, 16, t, h, w)) * 80.0).astype(np.float32),
                context=rng.normal(size=(b, p["text_len"], p["crossattn"])).astype(np.float32),
                negative=np.zeros((b, p["text_len"], p["crossattn"]), np.float32),
                cond=rng.normal(size=(b, 16, t, h, w)).astype(np.float32), mask=mask)


# ------------------------------------------------------------------------------------------------- PyTorch
def torch_sample_reference(model_call, noise, *, context, negative_context, cond_latents, cond_mask, steps: int,
                           guidance: float = GUIDANCE, augment_sigma: float = AUGMENT_SIGMA):
    """``gw_jax.diffusion.sample_reference`` in PyTorch (torch tensors in and out).

    ``model_call(x (N, 17, T, H, W), timesteps (N, 1, T, 1, 1), context (N, L, C)) -> (N, 16, T, H, W)``.
    """
    import torch

    sigmas = [float(s) for s in np.asarray(karras_sigmas(steps))]
    b, _, t, h, w = noise.shape
    mask_channel = cond_mask.expand(b, 1, t, h, w)
    both_context = torch.cat([negative_context, context])

    def x0_fn(sample, sigma):
        c_in, flow_t = 1.0 / (1.0 + sigma), sigma / (1.0 + sigma)
        x = cond_mask * cond_latents + (1.0 - cond_mask) * (sample * c_in)
        timesteps = (cond_mask * (augment_sigma / (1.0 + augment_sigma)) + (1.0 - cond_mask) * flow_t)
        x = torch.cat([x, mask_channel], dim=1)
        timesteps = timesteps.expand(b, 1, t, 1, 1)
        out = model_call(torch.cat([x, x]), torch.cat([timesteps, timesteps]), both_context).float()
        uncond, cond = out[:b], out[b:]
        v = cond + guidance * (cond - uncond)
        return cond_mask * cond_latents + (1.0 - cond_mask) * (c_in * sample - flow_t * v)

    sample = noise
    with torch.no_grad():
        for sigma_s, sigma_t in itertools.pairwise(sigmas):
            sample = (sigma_s - sigma_t) / sigma_s * x0_fn(sample, sigma_s) + sigma_t / sigma_s * sample
    return cond_mask * cond_latents + (1.0 - cond_mask) * sample


def legacy_two_calls(model_call, noise, *, context, negative_context, cond_latents, cond_mask, steps: int):
    """The pre-issue-20 PyTorch loop: two model calls of batch B per step (positive, then negative)."""
    import torch

    sigmas = [float(s) for s in np.asarray(karras_sigmas(steps))]
    b, _, t, h, w = noise.shape

    def x0(x, sigma, ctx):
        c_in, c_skip, c_out = 1 / (1 + sigma**2) ** 0.5, 1 / (1 + sigma**2), -sigma / (1 + sigma**2) ** 0.5
        x = cond_mask * cond_latents + (1 - cond_mask) * x
        inputs_ = torch.cat([x * c_in, cond_mask.expand(b, 1, t, h, w)], dim=1)
        v = model_call(inputs_, torch.full((b, 1, t, 1, 1), sigma / (1 + sigma)), ctx)
        return cond_mask * cond_latents + (1 - cond_mask) * (c_skip * x + c_out * v)

    x = noise
    with torch.no_grad():
        for sigma, sigma_next in itertools.pairwise(sigmas):
            conditional, unconditional = x0(x, sigma, context), x0(x, sigma, negative_context)
            denoised = conditional + 7.0 * (conditional - unconditional)
            x = denoised + (x - denoised) * (sigma_next / sigma)
    return x


def cosmos_call(model):
    """diffusers' Cosmos model as a ``model_call`` (the zero padding-mask channel appended, see torch_cosmos)."""
    import torch

    def call(x, timesteps, context):
        pad = torch.zeros_like(x[:, :1])
        return model(torch.cat([x, pad], dim=1), timesteps, context, fps=int(FPS), return_dict=False)[0]

    return call


# ------------------------------------------------------------------------------------------- the proof
def jax_stand_in(x, timesteps, context, fps, padding_mask):
    """A closed-form stand-in with the DiT's call signature (depends on x, per-frame t and the prompt)."""
    del fps, padding_mask
    return jnp.tanh(0.5 * x[:, :16] + 2.0 * timesteps + jnp.mean(context, axis=(1, 2))[:, None, None, None, None])


def torch_stand_in(x, timesteps, context):
    import torch

    return torch.tanh(0.5 * x[:, :16] + 2.0 * timesteps + context.mean(dim=(1, 2))[:, None, None, None, None])


def check_same_work(p: dict, steps: int) -> dict:
    """Runs both loops around the stand-in, counting model calls and batch sizes; compares the outputs."""
    import torch

    data = inputs(p)
    jax_calls: list[int] = []

    def counted(x, *args):
        jax.debug.callback(lambda n: jax_calls.append(int(n)), x.shape[0])  # runs once per executed call
        return jax_stand_in(x, *args)

    out_jax = jax.jit(lambda noise: sample_reference(
        counted, noise, context=jnp.asarray(data["context"]), negative_context=jnp.asarray(data["negative"]),
        cond_latents=jnp.asarray(data["cond"]), cond_mask=jnp.asarray(data["mask"]), fps=FPS, steps=steps,
        guidance=GUIDANCE, augment_sigma=AUGMENT_SIGMA)[0])(jnp.asarray(data["noise"]))
    out_jax = np.asarray(jax.block_until_ready(out_jax))
    torch_calls: list[int] = []

    def torch_counted(x, timesteps, context):
        torch_calls.append(x.shape[0])
        return torch_stand_in(x, timesteps, context)

    tensors = {k: torch.from_numpy(v) for k, v in data.items()}
    out_torch = torch_sample_reference(
        torch_counted, tensors["noise"], context=tensors["context"], negative_context=tensors["negative"],
        cond_latents=tensors["cond"], cond_mask=tensors["mask"], steps=steps).numpy()
    return dict(jax_call_batches=jax_calls, torch_call_batches=torch_calls,
                max_abs_diff=float(np.abs(out_jax - out_torch).max()), max_abs=float(np.abs(out_jax).max()))


# ------------------------------------------------------------------------------------------- timing
def bench_jax_sampler(p: dict, steps: int, timers: dict | None = None, dtype: str = "float32",
                      **model_kwargs) -> dict:
    """``dtype`` / ``model_kwargs``: the DiT's compute dtype and options (e.g. ``attention_impl``). The weights
    are an argument of the compiled loop (closed over, 2B of them would be baked in as 8 GB of constants)."""
    model = jax_dit(p, dtype, **model_kwargs)
    count = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    graphdef, params = nnx.split(model)
    data = {k: jnp.asarray(v) for k, v in inputs(p).items()}

    @jax.jit
    def sample(params_, noise):
        return sample_reference(nnx.merge(graphdef, params_), noise, context=data["context"],
                                negative_context=data["negative"], cond_latents=data["cond"], cond_mask=data["mask"],
                                fps=FPS, steps=steps, guidance=GUIDANCE, augment_sigma=AUGMENT_SIGMA)[0]

    start = time.perf_counter()
    compiled = sample.lower(params, data["noise"]).compile()
    compile_s = time.perf_counter() - start
    run = lambda: compiled(params, data["noise"]).block_until_ready()  # noqa: E731
    run()
    if timers is not None:
        timers["loop_s"] = run
    return dict(loop_s=median_time(run, p["repeats"]), compile_s=compile_s, model_calls=steps,
                call_batch=2 * p["batch"], params=count)


def bench_torch_sampler(p: dict, steps: int, *, compile_model: bool, legacy: bool = False,
                        timers: dict | None = None) -> dict:
    import torch

    model = torch_cosmos(p)
    call = cosmos_call(torch.compile(model) if compile_model else model)
    tensors = {k: torch.from_numpy(v) for k, v in inputs(p).items()}
    loop = legacy_two_calls if legacy else torch_sample_reference
    run = lambda: loop(call, tensors["noise"], context=tensors["context"],  # noqa: E731
                       negative_context=tensors["negative"], cond_latents=tensors["cond"],
                       cond_mask=tensors["mask"], steps=steps)
    start = time.perf_counter()
    run()  # warm-up (and compilation)
    first_s = time.perf_counter() - start
    if timers is not None:
        timers["loop_s"] = run
    return dict(loop_s=median_time(run, p["repeats"]), compile_s=first_s if compile_model else 0.0,
                model_calls=2 * steps if legacy else steps, call_batch=p["batch"] if legacy else 2 * p["batch"])


def run_sample_bench(preset: str = "cpu", *, steps: int = 10, torch_compile: bool = True) -> dict:
    p = dict(PRESETS[preset])
    if preset == "cpu":
        p["repeats"] = 3  # a 10-step loop is ~20 forward passes: 3 repeats keep the bench to a few minutes
    jax_name, eager, compiled, old = ("jax (lax.scan, jit)", "pytorch eager", "pytorch torch.compile",
                                      "pytorch eager, old loop (2 calls of B per step)")
    timers = {name: {} for name in (jax_name, eager, compiled, old)}
    report = dict(preset=preset, shape=p, steps=steps, guidance=GUIDANCE, device=str(jax.devices()[0].device_kind),
                  threads=thread_info(), rows={jax_name: bench_jax_sampler(p, steps, timers[jax_name])})
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return report
    report["same_work"] = check_same_work(p, steps)
    report["rows"][eager] = bench_torch_sampler(p, steps, compile_model=False, timers=timers[eager])
    if torch_compile:
        try:
            report["rows"][compiled] = bench_torch_sampler(p, steps, compile_model=True, timers=timers[compiled])
        except Exception as e:  # inductor needs a C++ toolchain; report instead of failing the bench
            report["rows"][compiled] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    report["rows"][old] = bench_torch_sampler(p, steps, compile_model=False, legacy=True, timers=timers[old])
    interleaved_medians(report["rows"], {name: fns for name, fns in timers.items() if fns}, p["repeats"])
    report["load_average_after"] = os.getloadavg()
    return report


def markdown_table(report: dict) -> str:
    rows, base = report["rows"], report["rows"]["jax (lax.scan, jit)"]
    lines = [f"Sampling loop ({report['steps']} steps, guidance {report['guidance']}), preset `{report['preset']}` "
             f"on {report['device']}; threads {report['threads']}", "",
             "| implementation | model calls x batch | loop (s) | compile / first run (s) | JAX speed-up "
             "| loop (CPU-s) | JAX speed-up in CPU-s |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if "error" in r:
            lines.append(f"| {name} | - | - | {r['error']} | - | - | - |")
            continue
        cpu = (f"{r['loop_s_cpu']:.3f} | {r['loop_s_cpu'] / base['loop_s_cpu']:.2f}x" if "loop_s_cpu" in r
               else "- | -")
        lines.append(f"| {name} | {r['model_calls']} x {r['call_batch']} | {r['loop_s']:.3f} | {r['compile_s']:.1f} | "
                     f"{r['loop_s'] / base['loop_s']:.2f}x | {cpu} |")
    if "same_work" in report:
        w = report["same_work"]
        lines += ["", f"Same work: around the same stand-in model, JAX made {len(w['jax_call_batches'])} calls "
                      f"(batches {sorted(set(w['jax_call_batches']))}), PyTorch {len(w['torch_call_batches'])} "
                      f"(batches {sorted(set(w['torch_call_batches']))}); outputs differ by at most "
                      f"{w['max_abs_diff']:.2e} (max |x| {w['max_abs']:.2f})."]
    return "\n".join(lines)
