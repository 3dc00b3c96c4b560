"""Ahead-of-time compile of the sharded train step for a Cloud TPU topology, on a CPU host with libtpu.

    report = compile_report(config, "v5p:4x4x4", dict(fsdp=16, context=4), with_roofline=True)
    report["per_chip"], report["peak_estimate_gib"], report["fits"], report["roofline"]["step_s"]
    report = compile_sampling_report(config.model, "v5e:1x1", frames=61, height=480, width=640)   # one step

Needs libtpu (``pip install -e ".[tpu]"``); no TPU is touched. ``gw-jax compile`` (train/compile_cli.py)
prints this report.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from gw_jax.diffusion.generate import denoiser_step
from gw_jax.errors import UserInputError
from gw_jax.models.dit import GigaWorld0DiT
from gw_jax.models.neighborhood_attention import NattenSchedule
from gw_jax.models.attention import resolve_auto
from gw_jax.parallel.logical import DEFAULT_RULES, use_mesh_rules
from gw_jax.parallel.mesh import batch_sharding, describe, make_mesh
from gw_jax.train.loop import build_setup, jit_train_step
from gw_jax.train.pretrained import model_kwargs
from gw_jax.train.roofline import CHIPS, combine, roofline, step_costs

TEXT_TOKENS = 512  # T5 context length of the compiled batch
HBM_GIB = {"v4": 32, "v5p": 95, "v5e": 16, "v5litepod": 16, "v6e": 32}
# Meshes that fit the 2B model at 61x480x640 (19,200 tokens), global batch 16.
DEFAULT_MESHES = {"v5p": dict(data=1, fsdp=16, context=-1, tensor=1),
                  "v5e": dict(data=1, fsdp=16, context=-1, tensor=4),
                  "v6e": dict(data=1, fsdp=16, context=-1, tensor=1)}


def tpu_devices(topology: str):
    # An AOT compile only loads libtpu's compiler: let it run beside other processes that loaded libtpu
    # (otherwise the second one fails on /tmp/libtpu_lockfile).
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    try:
        from jax.experimental import topologies
    except ImportError as e:
        raise UserInputError(f"jax.experimental.topologies unavailable: {e}") from e
    try:
        single = topology.split(":")[-1] in ("1x1", "1x1x1")  # one chip is its own host
        desc = topologies.get_topology_desc(platform="tpu", topology_name=topology, chip_config_name="default",
                                            chips_per_host_bounds=(1, 1, 1) if single else (2, 2, 1), num_slices=1)
    except Exception as e:
        raise UserInputError(f"--topology {topology}: cannot build it ({type(e).__name__}: {e}); "
                             "is libtpu installed (pip install -e '.[tpu]')?") from e
    return desc.devices


def model_flops_per_step(config, tokens_per_sample: int, params: int, attention_fraction: float = 1.0) -> float:
    """6 * params * tokens (matmuls, fwd + bwd) + attention (12 * L^2 * D per block, fwd + bwd), the
    attention term scaled by the mean fraction of (query, key) pairs that sparse (NATTEN) blocks keep."""
    batch = config.train.global_batch_size
    d, blocks = config.model.model_channels, config.model.num_blocks
    attention = 12.0 * tokens_per_sample ** 2 * d * blocks * attention_fraction
    return batch * (6.0 * params * tokens_per_sample + attention)


def with_blocks(config, num_blocks: int | None = None, *, scan_blocks: bool):
    """A copy of ``config`` whose DiT has ``num_blocks`` blocks (None: as many as it has), scanned or unrolled.
    The model ConfigDict is rebuilt, not assigned into: ``scan_blocks`` may be typed str ("auto") there."""
    variant = config.copy_and_resolve_references()
    model = dict(variant.model.to_dict(), scan_blocks=scan_blocks)
    if num_blocks is not None:
        model["num_blocks"] = num_blocks
    variant.model = ml_collections.ConfigDict(model)
    return variant


def compile_train_step(config, mesh):
    """The sharded train step lowered on abstract inputs for ``mesh`` and compiled; (compiled, setup, latent)."""
    setup = build_setup(config, mesh=mesh)
    frames, height, width = config.data.num_frames, config.data.height, config.data.width
    latent = (1 + (frames - 1) // 4, height // 8, width // 8)
    b = config.train.global_batch_size
    batch = {
        "latents": np.zeros((b, config.model.out_channels) + latent, np.float32),
        "text_emb": np.zeros((b, TEXT_TOKENS, config.model.crossattn_emb_channels), np.float32),
        "fps": np.zeros((b,), np.float32),
    }
    step = jit_train_step(setup, batch)
    abstract_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                  setup.abstract_state, setup.state_sharding)
    abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sharding(mesh, v.ndim))
                      for k, v in batch.items()}
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
    return step.lower(abstract_state, abstract_batch, key, None).compile(), setup, latent


def compile_report(config, topology: str, mesh_sizes: dict | None = None, *, with_roofline: bool = False) -> dict:
    """Per-chip memory of the train step compiled for ``topology``; ``with_roofline`` adds
    :func:`train_step_roofline` (two more, small compiles)."""
    devices = tpu_devices(topology)
    chip = topology.split(":")[0].lower()
    sizes = mesh_sizes or DEFAULT_MESHES.get(chip, dict(config.mesh.axes))
    mesh = make_mesh(sizes, devices=devices)
    t0 = time.perf_counter()
    compiled, setup, latent = compile_train_step(config, mesh)
    seconds = time.perf_counter() - t0
    per_chip, peak = memory_report(compiled)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(setup.abstract_state.params))
    tokens = latent[0] // config.model.patch_temporal * (latent[1] // config.model.patch_spatial) * (
        latent[2] // config.model.patch_spatial)
    hbm = HBM_GIB.get(chip)
    fraction = attention_kept_fraction(config, latent)
    report = dict(topology=topology, chips=len(devices), mesh=describe(mesh), compile_s=round(seconds, 1),
                  attention_impl=resolved_attention(config, mesh),
                  pallas_kernels=compiled.as_text().count('custom_call_target="tpu_custom_call"'),
                  params=params, tokens_per_sample=tokens, global_batch=config.train.global_batch_size,
                  per_chip=per_chip, peak_estimate_gib=peak, hbm_gib=hbm, fits=(hbm is None or peak < 0.95 * hbm),
                  attention_kept_fraction=fraction,
                  model_flops_per_step=model_flops_per_step(config, tokens, params, fraction))
    if with_roofline:
        report["roofline"] = train_step_roofline(config, mesh, chip, report)
    return report


def resolved_attention(config, mesh) -> str:
    """The kernel ``config.model.attention_impl`` runs on ``mesh`` (``auto`` resolved for its platform)."""
    impl = config.model.attention_impl
    if impl != "auto":
        return impl
    with use_mesh_rules(mesh):
        return resolve_auto(config.model.dtype)


def hidden_attention_flops(config, tokens: int, impl: str) -> float:
    """FLOPs of attention run inside a Pallas custom call (splash), which ``cost_analysis`` does not count.
    Per self- (L x L) and cross-attention (L x 512 text tokens) a forward is 2 matmuls of 2 * L * Lk * C
    FLOPs, recomputed once in the backward pass under remat; splash's backward is 7 (dq kernel: QK, dO V, dS K;
    dkv kernel: QK, P dO, dO V, dS Q)."""
    if impl != "splash":
        return 0.0
    m = config.model
    matmuls = 2 * (2 if m.remat_policy != "none" else 1) + 7
    per_sample = 2.0 * m.model_channels * (tokens * tokens + tokens * TEXT_TOKENS) * matmuls * m.num_blocks
    return per_sample * config.train.global_batch_size


def train_step_roofline(config, mesh, chip: str, report: dict) -> dict | None:
    """Roofline of the train step on ``mesh`` (gw_jax.train.roofline). XLA's cost analysis counts a scanned
    body once, so it compiles the step unrolled with 1 and 2 blocks and extrapolates linearly to
    ``num_blocks`` (blocks are identical): c(N) = c(1) + (N - 1) * (c(2) - c(1)). None without peak numbers for
    ``chip``; per-block NATTEN models are not linear in the block count (skipped)."""
    if chip not in CHIPS or config.model.get("natten_parameters"):
        return None
    costs = []
    for blocks in (1, 2):
        costs.append(step_costs(compile_train_step(with_blocks(config, blocks, scan_blocks=False), mesh)[0], mesh.size))
    n = config.model.num_blocks
    total = combine(costs, [2 - n, n - 1])
    extra = hidden_attention_flops(config, report["tokens_per_sample"], report["attention_impl"]) / mesh.size
    estimate = roofline(total, CHIPS[chip], model_flops_per_chip=report["model_flops_per_step"] / mesh.size,
                        extra_flops=extra)
    estimate["collectives"] = total["collectives"]
    estimate["method"] = ("per chip; unrolled 1- and 2-block compiles extrapolated to "
                          f"{n} blocks; splash FLOPs added analytically" if extra else
                          f"per chip; unrolled 1- and 2-block compiles extrapolated to {n} blocks")
    return estimate


def attention_kept_fraction(config, latent) -> float:
    """Mean over blocks of the attention kept by ``natten_parameters`` on this latent grid (1.0: dense)."""
    m = config.model
    natten = m.get("natten_parameters")
    if natten is None:
        return 1.0
    grid = (latent[0] // m.patch_temporal, latent[1] // m.patch_spatial, latent[2] // m.patch_spatial)
    max_grid = (m.max_frames // m.patch_temporal, m.max_img_h // m.patch_spatial, m.max_img_w // m.patch_spatial)
    fractions = NattenSchedule.from_config(natten, m.num_blocks, max_grid).kept_fractions(grid)
    return sum(fractions) / len(fractions)


def memory_report(compiled) -> tuple[dict, float]:
    """(per-chip GiB of arguments, outputs, temporaries and aliased buffers; their peak estimate) of ``compiled``."""
    memory = compiled.memory_analysis()
    gib = 1 / 2 ** 30
    per_chip = {"arguments_gib": memory.argument_size_in_bytes * gib, "outputs_gib": memory.output_size_in_bytes * gib,
                "temporaries_gib": memory.temp_size_in_bytes * gib,
                "aliased_gib": getattr(memory, "alias_size_in_bytes", 0) * gib}
    peak = per_chip["arguments_gib"] + per_chip["temporaries_gib"] + per_chip["outputs_gib"] - per_chip["aliased_gib"]
    return per_chip, peak


def compile_sampling_report(model_config, topology: str, *, frames: int, height: int, width: int,
                            dtype: str = "bfloat16", attention_impl: str = "splash", mesh_sizes: dict | None = None,
                            text_length: int = 512, guidance: float = 7.0) -> dict:
    """One denoising step of ``gw-jax generate`` (the DiT on the CFG batch of 2, weights in ``dtype``) compiled
    for a TPU topology: per-chip memory and whether it fits."""
    devices = tpu_devices(topology)
    mesh = make_mesh(mesh_sizes or dict(data=1, context=-1), devices=devices)
    kwargs = {**model_kwargs(model_config), "dtype": dtype, "param_dtype": dtype, "attention_impl": attention_impl,
              "remat_policy": "none"}
    t0 = time.perf_counter()
    graphdef, state = nnx.split(nnx.eval_shape(lambda: GigaWorld0DiT.from_config(kwargs, rngs=nnx.Rngs(0))))
    replicated = NamedSharding(mesh, PartitionSpec())
    abstract_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), state)
    latent = (1, model_config.out_channels, 1 + (frames - 1) // 4, height // 8, width // 8)
    spec = lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32, sharding=batch_sharding(mesh, len(shape)))  # noqa
    context = (1, text_length, model_config.crossattn_emb_channels)
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated)
    step = denoiser_step(graphdef, mesh, DEFAULT_RULES, guidance, 0.001)
    compiled = step.lower(abstract_state, spec(latent), spec(latent), spec((1, 1, latent[2], 1, 1)), spec(context),
                          jax.ShapeDtypeStruct(context, jnp.float32, sharding=replicated), scalar, scalar,
                          scalar).compile()
    per_chip, peak = memory_report(compiled)
    chip = topology.split(":")[0].lower()
    hbm = HBM_GIB.get(chip)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state))
    tokens = latent[2] * (latent[3] // 2) * (latent[4] // 2)
    return dict(topology=topology, chips=len(devices), mesh=describe(mesh), what="sampling step (CFG batch 2)",
                frames=frames, height=height, width=width, tokens=tokens, dtype=dtype, attention_impl=attention_impl,
                params=params, compile_s=round(time.perf_counter() - t0, 1), per_chip=per_chip,
                peak_estimate_gib=peak, hbm_gib=hbm, fits=(hbm is None or peak < 0.95 * hbm))
