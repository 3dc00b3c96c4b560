"""Wan2.1 VAE: compiled memory at the real size, and JAX vs PyTorch (diffusers) encode/decode speed.

``compiled_memory`` compiles the streaming encode or decode ahead of time for abstract inputs (nothing is
allocated or run), so the 61-frame 480x640 case can be sized on a laptop; ``run_vae_bench`` times both
frameworks on the same weights and clip in one run.
"""

from __future__ import annotations

import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gw_jax.bench.dit_bench import median_time
from gw_jax.models.vae import WanVAE

GIB = 2**30
PRESETS = {
    # seconds, for tests: a toy config
    "tiny": dict(config=dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                             latents_mean=[0.0] * 4, latents_std=[1.0] * 4), batch=1, frames=5, height=32, width=32,
                 repeats=2),
    # the real Wan2.1 architecture on a short, small clip: this 2-core CPU
    "cpu": dict(config={}, batch=1, frames=9, height=64, width=64, repeats=3),
    # the GigaWorld-0 pretraining clip: an accelerator
    "2b": dict(config={}, batch=1, frames=61, height=480, width=640, repeats=5),
}
CHIPS_HBM_GIB = {"H100 80GB": 80, "TPU v5p": 95, "TPU v5e": 16, "TPU v6e": 32}


def _abstract_vae(config: dict, dtype):
    return nnx.split(nnx.eval_shape(lambda: WanVAE(rngs=nnx.Rngs(0), dtype=dtype, **config)))


def compiled_memory(config: dict, *, batch: int, frames: int, height: int, width: int, dtype="float32",
                    streaming: bool = True) -> dict:
    """Per-device memory of the compiled encode and decode (in GiB), XLA's FLOP count and compile time.

    XLA counts a scan body once, so for ``streaming=True`` ``gflops`` is the first chunk plus one later chunk.
    """
    compute = None if dtype == "float32" else jnp.dtype(dtype)
    graphdef, state = _abstract_vae(config, compute)
    vae = nnx.merge(graphdef, state)
    z = vae.config["z_dim"]
    latent_shape = (batch, z, 1 + (frames - 1) // vae.temporal_factor, height // vae.spatial_factor,
                    width // vae.spatial_factor)
    jobs = {
        "encode": (lambda s, v: nnx.merge(graphdef, s)._encode(v, streaming), (batch, 3, frames, height, width)),
        "decode": (lambda s, zz: nnx.merge(graphdef, s)._decode(zz, streaming), latent_shape),
    }
    out = {}
    for name, (fn, shape) in jobs.items():
        start = time.perf_counter()
        compiled = jax.jit(fn).lower(state, jax.ShapeDtypeStruct(shape, jnp.dtype(dtype))).compile()
        memory = compiled.memory_analysis()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        out[name] = dict(
            input_shape=list(shape), compile_s=round(time.perf_counter() - start, 1),
            arguments_gib=memory.argument_size_in_bytes / GIB, temporaries_gib=memory.temp_size_in_bytes / GIB,
            outputs_gib=memory.output_size_in_bytes / GIB,
            total_gib=(memory.argument_size_in_bytes + memory.temp_size_in_bytes + memory.output_size_in_bytes) / GIB,
            gflops=float((cost or {}).get("flops", 0.0)) / 1e9)
    return out


def _time_jax(vae, video, repeats):
    compile_start = time.perf_counter()
    posterior = jax.block_until_ready(vae.encode(video))
    jax.block_until_ready(vae.decode(posterior.mean))
    first_call = time.perf_counter() - compile_start
    encode = median_time(lambda: jax.block_until_ready(vae.encode(video)), repeats)
    decode = median_time(lambda: jax.block_until_ready(vae.decode(posterior.mean)), repeats)
    return dict(encode_s=encode, decode_s=decode, first_call_s=first_call), posterior


def _time_torch(model, video, repeats):
    import torch

    with torch.no_grad():
        clip = torch.from_numpy(np.asarray(video))
        latents = model.encode(clip).latent_dist.mean
        encode = median_time(lambda: model.encode(clip), repeats)
        decode = median_time(lambda: model.decode(latents), repeats)
    return dict(encode_s=encode, decode_s=decode), latents.numpy()


def run_vae_bench(preset: str = "cpu", *, memory: bool = True) -> dict:
    """Times encode/decode in JAX and diffusers on the same random weights; optional compiled memory."""
    p = PRESETS[preset]
    shape = (p["batch"], 3, p["frames"], p["height"], p["width"])
    video = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    report = dict(preset=preset, clip=list(shape), device=str(jax.devices()[0].device_kind), jax=jax.__version__)
    try:
        import torch
        from diffusers import AutoencoderKLWan
    except ImportError:
        torch = None
    if torch is not None:
        torch.manual_seed(0)
        reference = AutoencoderKLWan(**p["config"]).eval()
        with tempfile.TemporaryDirectory() as folder:
            reference.save_pretrained(folder)
            vae = WanVAE.from_pretrained(folder)
        report["torch_version"] = torch.__version__
        report["torch"], torch_latents = _time_torch(reference, video, p["repeats"])
    else:
        vae, torch_latents = WanVAE(rngs=nnx.Rngs(0), **p["config"]), None
    report["jax"], posterior = _time_jax(vae, video, p["repeats"])
    if torch_latents is not None:
        report["max_rel_diff_latents"] = float(np.abs(np.asarray(posterior.mean) - torch_latents).max()
                                               / np.abs(torch_latents).max())
        for step in ("encode", "decode"):
            report[f"{step}_speedup_jax_over_torch"] = report["torch"][f"{step}_s"] / report["jax"][f"{step}_s"]
    if memory:
        report["compiled_memory"] = compiled_memory(p["config"], batch=p["batch"], frames=p["frames"],
                                                    height=p["height"], width=p["width"])
    return report


def markdown_table(report: dict) -> str:
    lines = [f"Wan2.1 VAE, preset `{report['preset']}`, clip {report['clip']} on {report['device']}", "",
             "| step | JAX (s) | PyTorch eager (s) | JAX speed-up |", "|---|---|---|---|"]
    for step in ("encode", "decode"):
        torch_s = report.get("torch", {}).get(f"{step}_s")
        ratio = report.get(f"{step}_speedup_jax_over_torch")
        lines.append(f"| {step} | {report['jax'][f'{step}_s']:.3f} | "
                     f"{'n/a' if torch_s is None else f'{torch_s:.3f}'} | "
                     f"{'n/a' if ratio is None else f'{ratio:.2f}x'} |")
    for name, m in report.get("compiled_memory", {}).items():
        lines.append(f"\ncompiled {name} {m['input_shape']}: arguments {m['arguments_gib']:.3f} GiB, temporaries "
                     f"{m['temporaries_gib']:.3f} GiB, outputs {m['outputs_gib']:.3f} GiB, {m['gflops']:.1f} GFLOP")
    return "\n".join(lines)
