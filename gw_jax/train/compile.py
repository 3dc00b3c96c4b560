"""Ahead-of-time compile of the sharded train step for a Cloud TPU topology, on a CPU host with libtpu.

    report = compile_report(config, "v5p:4x4x4", dict(fsdp=16, context=4))
    report["per_chip"], report["peak_estimate_gib"], report["fits"]
    report = compile_sampling_report(config.model, "v5e:1x1", frames=61, height=480, width=640)   # one step

Needs libtpu (``pip install -e ".[tpu]"``); no TPU is touched. ``gw-jax compile`` (train/compile_cli.py)
prints this report.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from gw_jax.diffusion.generate import denoiser_step
from gw_jax.errors import UserInputError
from gw_jax.models.dit import GigaWorld0DiT
from gw_jax.models.neighborhood_attention import NattenSchedule
from gw_jax.parallel.logical import DEFAULT_RULES
from gw_jax.parallel.mesh import batch_sharding, describe, make_mesh
from gw_jax.train.loop import build_setup, jit_train_step
from gw_jax.train.pretrained import model_kwargs

HBM_GIB = {"v4": 32, "v5p": 95, "v5e": 16, "v5litepod": 16, "v6e": 32}
# Meshes that fit the 2B model at 61x480x640 (19,200 tokens), global batch 16.
DEFAULT_MESHES = {"v5p": dict(data=1, fsdp=16, context=-1, tensor=1),
                  "v5e": dict(data=1, fsdp=16, context=-1, tensor=4),
                  "v6e": dict(data=1, fsdp=16, context=-1, tensor=1)}


def tpu_devices(topology: str):
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


def compile_report(config, topology: str, mesh_sizes: dict | None = None) -> dict:
    devices = tpu_devices(topology)
    chip = topology.split(":")[0].lower()
    sizes = mesh_sizes or DEFAULT_MESHES.get(chip, dict(config.mesh.axes))
    mesh = make_mesh(sizes, devices=devices)
    t0 = time.perf_counter()
    setup = build_setup(config, mesh=mesh)
    frames, height, width = config.data.num_frames, config.data.height, config.data.width
    latent = (1 + (frames - 1) // 4, height // 8, width // 8)
    b = config.train.global_batch_size
    batch = {
        "latents": np.zeros((b, config.model.out_channels) + latent, np.float32),
        "text_emb": np.zeros((b, 512, config.model.crossattn_emb_channels), np.float32),
        "fps": np.zeros((b,), np.float32),
    }
    step = jit_train_step(setup, batch)
    abstract_state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                  setup.abstract_state, setup.state_sharding)
    abstract_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sharding(mesh, v.ndim))
                      for k, v in batch.items()}
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
    compiled = step.lower(abstract_state, abstract_batch, key, None).compile()
    seconds = time.perf_counter() - t0
    per_chip, peak = _memory(compiled)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(setup.abstract_state.params))
    tokens = latent[0] // config.model.patch_temporal * (latent[1] // config.model.patch_spatial) * (
        latent[2] // config.model.patch_spatial)
    hbm = HBM_GIB.get(chip)
    fraction = attention_kept_fraction(config, latent)
    return dict(topology=topology, chips=len(devices), mesh=describe(mesh), compile_s=round(seconds, 1),
                params=params, tokens_per_sample=tokens, global_batch=b, per_chip=per_chip,
                peak_estimate_gib=peak, hbm_gib=hbm, fits=(hbm is None or peak < 0.95 * hbm),
                attention_kept_fraction=fraction,
                model_flops_per_step=model_flops_per_step(config, tokens, params, fraction))


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


def _memory(compiled) -> tuple[dict, float]:
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
    per_chip, peak = _memory(compiled)
    chip = topology.split(":")[0].lower()
    hbm = HBM_GIB.get(chip)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state))
    tokens = latent[2] * (latent[3] // 2) * (latent[4] // 2)
    return dict(topology=topology, chips=len(devices), mesh=describe(mesh), what="sampling step (CFG batch 2)",
                frames=frames, height=height, width=width, tokens=tokens, dtype=dtype, attention_impl=attention_impl,
                params=params, compile_s=round(time.perf_counter() - t0, 1), per_chip=per_chip,
                peak_estimate_gib=peak, hbm_gib=hbm, fits=(hbm is None or peak < 0.95 * hbm))
