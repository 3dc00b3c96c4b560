"""The sampling loop, JAX vs PyTorch: Karras schedule, order-1 x0 update, classifier-free guidance.

JAX runs ``gw_jax.diffusion.sample_reference`` (one jitted ``lax.scan`` over the steps); PyTorch runs
the same loop in Python around diffusers' ``CosmosTransformer3DModel`` at the same dimensions (eager):
two model calls per step (conditional and unconditional) and the same update, so both do the same work.
"""

from __future__ import annotations

import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from gw_jax.bench.dit_bench import PRESETS, median_time, jax_dit, torch_cosmos
from gw_jax.diffusion import sample_reference
from gw_jax.diffusion.samplers import karras_sigmas


def bench_jax_sampler(p: dict, steps: int) -> dict:
    model = jax_dit(p)
    rng = np.random.default_rng(0)
    b, t, h, w = p["batch"], p["frames"], p["height"], p["width"]
    noise = jnp.asarray(rng.normal(size=(b, 16, t, h, w)) * 80.0, jnp.float32)
    context = jnp.asarray(rng.normal(size=(b, p["text_len"], p["crossattn"])), jnp.float32)
    cond = jnp.asarray(rng.normal(size=(b, 16, t, h, w)), jnp.float32)
    mask = jnp.zeros((b, 1, t, 1, 1)).at[:, :, 0].set(1.0)

    @jax.jit
    def sample(noise):
        return sample_reference(model, noise, context=context, negative_context=jnp.zeros_like(context),
                                cond_latents=cond, cond_mask=mask, fps=16.0, steps=steps, guidance=7.0)[0]

    start = time.perf_counter()
    compiled = sample.lower(noise).compile()
    compile_s = time.perf_counter() - start
    compiled(noise).block_until_ready()
    return dict(loop_s=median_time(lambda: compiled(noise).block_until_ready(), p["repeats"]), compile_s=compile_s)


def bench_torch_sampler(p: dict, steps: int) -> dict | None:
    try:
        import torch
        model = torch_cosmos(p)
    except ImportError:
        return None
    b, t, h, w = p["batch"], p["frames"], p["height"], p["width"]
    sigmas = [float(s) for s in np.asarray(karras_sigmas(steps, 0.002, 80.0, 7.0))]
    context, negative = torch.randn(b, p["text_len"], p["crossattn"]), torch.zeros(b, p["text_len"], p["crossattn"])
    cond, noise = torch.randn(b, 16, t, h, w), torch.randn(b, 16, t, h, w) * 80.0
    mask = torch.zeros(b, 1, t, 1, 1)
    mask[:, :, 0] = 1.0
    extra = torch.zeros(b, 1, t, h, w)  # the padding-mask channel (see dit_bench.torch_cosmos)

    def x0(x, sigma, ctx):
        c_in, c_skip, c_out = 1 / (1 + sigma**2) ** 0.5, 1 / (1 + sigma**2), -sigma / (1 + sigma**2) ** 0.5
        x = mask * cond + (1 - mask) * x
        inputs = torch.cat([x * c_in, mask.expand(b, 1, t, h, w), extra], dim=1)
        v = model(inputs, torch.full((b,), sigma / (1 + sigma)), ctx, fps=16, return_dict=False)[0]
        return mask * cond + (1 - mask) * (c_skip * x + c_out * v)

    def loop():
        x = noise
        with torch.no_grad():
            for sigma, sigma_next in itertools.pairwise(sigmas):
                conditional, unconditional = x0(x, sigma, context), x0(x, sigma, negative)
                denoised = conditional + 7.0 * (conditional - unconditional)
                x = denoised + (x - denoised) * (sigma_next / sigma)
        return x

    loop()
    return dict(loop_s=median_time(loop, p["repeats"]))


def run_sample_bench(preset: str = "cpu", *, steps: int = 10) -> dict:
    p = dict(PRESETS[preset])
    report = dict(preset=preset, shape=p, steps=steps, device=str(jax.devices()[0].device_kind),
                  jax=bench_jax_sampler(p, steps))
    torch_row = bench_torch_sampler(p, steps)
    if torch_row is not None:
        report["torch_eager"] = torch_row
        report["speedup_jax_over_torch"] = torch_row["loop_s"] / report["jax"]["loop_s"]
    return report


def markdown_table(report: dict) -> str:
    torch_row = report.get("torch_eager")
    return "\n".join([
        f"Sampling loop ({report['steps']} steps, guidance 7: {2 * report['steps']} DiT calls), preset "
        f"`{report['preset']}` on {report['device']}", "",
        "| implementation | loop (s) | compile (s) | JAX speed-up |", "|---|---|---|---|",
        f"| jax (lax.scan, jit) | {report['jax']['loop_s']:.3f} | {report['jax']['compile_s']:.1f} | 1.00x |",
        f"| pytorch eager | {torch_row['loop_s']:.3f} | 0 | {report['speedup_jax_over_torch']:.2f}x |"
        if torch_row else "| pytorch | n/a | | |"])
