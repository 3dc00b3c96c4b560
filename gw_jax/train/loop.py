"""The training loop: mesh, sharded init, AOT-compiled step, data, Orbax checkpoints, metrics.

``train(config, workdir)`` is what ``gw-jax train`` runs; it resumes automatically from the newest
checkpoint in ``workdir`` (params, optimizer, EMA, step and the data iterator), and on SIGTERM saves
and returns cleanly (preemptible TPU VMs send it before they go; on several hosts all of them stop and save
at the same step). A NaN/inf loss stops the run (``NonFiniteLossError``) before anything diverged is saved;
``config.train.profile_steps`` traces that many steps into ``workdir/profile``. ``workdir`` is a local folder
or a ``gs://`` URI (checkpoints, metrics and TensorBoard go straight to the bucket).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from gw_jax.errors import UserInputError
from gw_jax.parallel.logical import use_mesh_rules
from gw_jax.parallel.mesh import batch_sharding, describe, logical_tree_shardings, make_mesh
from gw_jax.storage import as_path, check_output_dir, make_output_dir
from gw_jax.train.checkpoint import Checkpointer, abstract_with_shardings
from gw_jax.train.config_checks import check_resume_config, check_train_config
from gw_jax.train.data import make_batches, make_latent_encoder
from gw_jax.train.guards import FiniteGuard, Profiler, StopSignal
from gw_jax.train.metrics import MetricsWriter
from gw_jax.train.optim import make_optimizer
from gw_jax.train.pretrained import NEW_LAYERS, load_params, model_parts
from gw_jax.train.sharding import state_shardings
from gw_jax.train.state import ModelDef, TrainState, create_train_state
from gw_jax.train.step import make_train_step


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    model_def: ModelDef
    losses: list[float]
    stopped_early: bool  # True when a SIGTERM (or max_steps) ended the run before num_steps


def _rules(config):
    return tuple((name, tuple(t) if isinstance(t, (list, tuple)) else t) for name, t in config.mesh.rules)


@dataclasses.dataclass
class Setup:
    """Everything a step needs, built once: also what the AOT compile command lowers.

    ``frozen_sharding`` is None unless part of the model is frozen (LoRA): then the step takes the frozen
    weights (``init_frozen()``) as a fifth argument and the state holds only the trainable part."""
    mesh: Mesh
    rules: tuple
    model_def: ModelDef
    tx: Any
    schedule: Any
    state_sharding: TrainState
    abstract_state: TrainState
    init_state: Callable[[], TrainState]
    train_step: Callable
    mode: str = "full"
    frozen_sharding: Any = None
    init_frozen: Callable[[], Any] = lambda: None


def build_setup(config, mesh: Mesh | None = None, latent_fn=None) -> Setup:
    mesh = mesh if mesh is not None else make_mesh(dict(config.mesh.axes))
    rules = _rules(config)
    parts = model_parts(config)  # from a pretrained folder: its model config, full or LoRA

    def split(model):
        return nnx.split(model, parts.trainable, parts.frozen, ...)

    with use_mesh_rules(mesh, rules):
        abstract_model = nnx.eval_shape(lambda: parts.build(nnx.Rngs(config.seed)))
        graphdef, abstract_params, abstract_frozen, _ = split(abstract_model)
        logical_specs = nnx.to_pure_dict(nnx.get_partition_spec(abstract_params))
        tx, schedule = make_optimizer(config.train, logical_specs)

        def init_everything():
            _, params, _, buffers = split(parts.build(nnx.Rngs(config.seed)))
            return create_train_state(nnx.to_pure_dict(params), tx), buffers

        abstract_state, abstract_buffers = jax.eval_shape(init_everything)
        sharding = state_shardings(abstract_state, logical_specs, mesh, rules, tx)
        replicated = NamedSharding(mesh, PartitionSpec())
        buffer_sharding = jax.tree.map(lambda _: replicated, abstract_buffers)
        state_and_buffers = jax.jit(init_everything, out_shardings=(sharding, buffer_sharding))
        # non-trainable buffers are small constants; none at all for the DiT, so abstract meshes (AOT
        # compiles for TPU topologies from a CPU host) never have to execute anything here
        buffers = abstract_buffers if not jax.tree.leaves(abstract_buffers) else state_and_buffers()[1]
        frozen_sharding = None
        if jax.tree.leaves(abstract_frozen):
            frozen_specs = nnx.to_pure_dict(nnx.get_partition_spec(abstract_frozen))
            frozen_sharding = logical_tree_shardings(frozen_specs, mesh, rules)

    # LoRA: layers the release lacks (action MLPs) train too and start from the checkpoint's values, as in full
    abstract_loaded = abstract_params if parts.mode == "full" else nnx.filter_state(abstract_params, NEW_LAYERS)
    abstract_whole = nnx.state(abstract_model, nnx.Param)  # what the checkpoint's keys are checked against

    def init_state() -> TrainState:
        if parts.pretrained is None or not jax.tree.leaves(abstract_loaded):
            return state_and_buffers()[0]
        loaded = flatten_dict(load_params(parts.pretrained, abstract_loaded, sharding.params, abstract_whole))
        fresh = {} if parts.mode == "full" else flatten_dict(state_and_buffers()[0].params)  # LoRA: new adapters
        params = unflatten_dict({**fresh, **loaded})  # EMA starts from them too
        return jax.jit(lambda p: create_train_state(p, tx), out_shardings=sharding, donate_argnums=0)(params)

    def init_frozen():
        if frozen_sharding is None:
            return None
        if parts.pretrained is not None:
            return load_params(parts.pretrained, abstract_frozen, frozen_sharding, abstract_whole)
        random_frozen = lambda: nnx.to_pure_dict(split(parts.build(nnx.Rngs(config.seed)))[2])  # noqa: E731
        return jax.jit(random_frozen, out_shardings=frozen_sharding)()

    # as plain arrays: merging then makes fresh variables inside each trace (LoRA scales are buffers)
    model_def = ModelDef(graphdef, nnx.to_pure_dict(buffers) if jax.tree.leaves(buffers) else buffers)
    step = make_train_step(model_def, tx, schedule, config.loss, accum_steps=config.train.accum_steps,
                           latent_fn=latent_fn, ema_max_decay=config.train.ema_max_decay)
    return Setup(mesh=mesh, rules=rules, model_def=model_def, tx=tx, schedule=schedule,
                 state_sharding=sharding, abstract_state=abstract_state, init_state=init_state, train_step=step,
                 mode=parts.mode, frozen_sharding=frozen_sharding, init_frozen=init_frozen)


def jit_train_step(setup: Setup, batch_example: dict, vae_params=None):
    """The step jitted with explicit shardings and donated state: (state, batch, key, vae[, frozen])."""
    replicated = NamedSharding(setup.mesh, PartitionSpec())
    batch_sh = {k: batch_sharding(setup.mesh, np.ndim(v)) for k, v in batch_example.items()}
    vae_sh = jax.tree.map(lambda _: replicated, vae_params)
    frozen_sh = () if setup.frozen_sharding is None else (setup.frozen_sharding,)

    def step(state, batch, key, vae, *frozen):
        with use_mesh_rules(setup.mesh, setup.rules):
            return setup.train_step(state, batch, key, vae, *frozen)

    return jax.jit(step, in_shardings=(setup.state_sharding, batch_sh, replicated, vae_sh) + frozen_sh,
                   out_shardings=(setup.state_sharding, replicated), donate_argnums=(0,))


def memory_report(compiled) -> str:
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend reports
        return "memory analysis unavailable"
    if m is None:
        return "memory analysis unavailable"
    gib = 1 / 2**30
    return (f"arguments {m.argument_size_in_bytes * gib:.3f} GiB, outputs {m.output_size_in_bytes * gib:.3f} GiB, "
            f"temporaries {m.temp_size_in_bytes * gib:.3f} GiB, code {m.generated_code_size_in_bytes * gib:.3f} GiB")


def global_batch(mesh: Mesh, local_batch: dict) -> dict:
    """Per-process numpy batch -> global jax arrays sharded over data+fsdp."""
    return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), np.asarray(v))
            for k, v in local_batch.items()}


def train(config, workdir: str | Path, *, batches=None, vae=None, max_steps: int | None = None,
          progress: bool = True) -> TrainResult:
    """Trains ``config`` in ``workdir``, resuming from its newest checkpoint.

    ``batches``: an iterator of per-process numpy batches with ``get_state``/``set_state`` (default:
    ``make_loader`` over ``config.data.packed_dir``). ``vae``: (latent_fn, vae_params) when
    ``config.latents == "vae"`` (default: built from ``config.vae``). ``max_steps`` stops early (tests
    use it to simulate an interruption).
    """
    check_train_config(config)
    workdir = as_path(workdir, flag="--workdir")
    check_output_dir(workdir, flag="--workdir")  # created below, once the model and data are known to be good
    latent_fn, vae_params = (None, None)
    if config.latents == "vae":
        if vae is None:
            vae = make_latent_encoder(config)
        latent_fn, vae_params = vae
    setup = build_setup(config, latent_fn=latent_fn)
    check_batch_layout(config, setup.mesh)
    if batches is None:
        batches = make_batches(config)
    make_output_dir(workdir, flag="--workdir")
    checkpointer = Checkpointer(workdir / "checkpoints", max_to_keep=config.train.max_checkpoints,
                                async_save=config.train.async_checkpoint)
    check_resume_config(checkpointer.restore_config(), config, where=checkpointer.directory)
    data = batches if hasattr(batches, "get_state") else None  # saved and restored with the model
    restored = checkpointer.restore(abstract_with_shardings(setup.abstract_state, setup.state_sharding), data=data)
    state = setup.init_state() if restored is None else restored[0]
    frozen = () if setup.frozen_sharding is None else (setup.init_frozen(),)  # LoRA: the base, never saved
    start = int(jax.device_get(state.step))
    num_steps = int(config.train.num_steps)
    metrics_writer = MetricsWriter(workdir, resume_step=start)
    base_key = jax.random.key(config.seed)
    losses: list[float] = []
    stopped_early = False

    local = next(batches)
    batch = global_batch(setup.mesh, local)
    step_fn = jit_train_step(setup, local, vae_params)
    t0 = time.perf_counter()
    compiled = step_fn.lower(state, batch, base_key, vae_params, *frozen).compile()
    print(f"mesh {describe(setup.mesh)}; compiled train step in {time.perf_counter() - t0:.1f}s; "
          f"memory per device: {memory_report(compiled)}", flush=True)

    config_dict = config.to_dict()
    finite = FiniteGuard(checkpointer.directory)
    finite.last_saved = checkpointer.latest_step()
    # the first step after (re)start is skipped: it still warms caches up
    profiler = Profiler(workdir / "profile", first=start + 2, steps=int(config.train.get("profile_steps", 0)))

    def save(done: int, force: bool = False) -> None:
        finite.check()  # never save a diverged state: the newest checkpoint stays the last good one
        checkpointer.save(done, state, data=data, config=config_dict, force=force)
        metrics_writer.flush()  # a bucket's metrics.jsonl is rewritten in batches: complete up to every checkpoint
        finite.last_saved = done

    try:
        with StopSignal(checkpointer) as stop:
            bar = tqdm(range(start, num_steps), initial=start, total=num_steps, desc="train",
                       disable=not progress or jax.process_index() != 0)
            last_log = time.perf_counter()
            for step in bar:
                if step > start:
                    batch = global_batch(setup.mesh, next(batches))
                done = step + 1  # steps are counted as updates done, as in checkpoints and metrics
                profiler.before(done)
                state, metrics = compiled(state, batch, jax.random.fold_in(base_key, step), vae_params, *frozen)
                profiler.after(done, metrics)
                finite.add(done, metrics)
                if done % config.train.log_every == 0 or done == num_steps:
                    finite.check()
                    metrics = jax.device_get(metrics)
                    now = time.perf_counter()
                    steps_since = done - max(start, done - config.train.log_every)
                    metrics["step_time_s"] = (now - last_log) / max(steps_since, 1)
                    metrics["tokens_per_s"] = _tokens(batch, config) / max(metrics["step_time_s"], 1e-9)
                    last_log = now
                    metrics_writer.write(done, metrics)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                    losses.append(float(metrics["loss"]))
                saved = done % config.train.checkpoint_every == 0 or done == num_steps
                if saved:
                    save(done)
                if stop.reached(done) or (max_steps is not None and done >= max_steps):
                    if not saved:
                        save(done, force=True)
                    stopped_early = done < num_steps
                    break
    finally:
        profiler.stop()
        checkpointer.close()
        metrics_writer.close()
    return TrainResult(state=state, model_def=setup.model_def, losses=losses, stopped_early=stopped_early)


def check_batch_layout(config, mesh: Mesh) -> None:
    """The global batch splits into accumulation micro-batches, each split over data x fsdp devices."""
    batch, accum = int(config.train.global_batch_size), int(config.train.accum_steps)
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    if batch % accum or (batch // accum) % shards:
        raise UserInputError(f"--config.train.global_batch_size={batch} must split into accum_steps={accum} "
                             f"micro-batches divisible by data x fsdp = {shards} devices")


def _tokens(batch: dict, config) -> float:
    """Tokens per step after patching (latent T x H/p x W/p per sample)."""
    m = config.model
    if "latents" in batch:
        b, _, t, h, w = batch["latents"].shape
    else:
        b, _, frames, height, width = batch["video"].shape
        t, h, w = 1 + (frames - 1) // 4, height // 8, width // 8
    return float(b * (t // m.patch_temporal) * (h // m.patch_spatial) * (w // m.patch_spatial))
