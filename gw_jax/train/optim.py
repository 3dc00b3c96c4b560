"""The optimizer a config names, with global-norm clipping; EMA with the reference schedule.

``config.train.optimizer``: "adamw" (optax) | "came" | "came8bit" (the release's CAME8Bit, gw_jax.train.came);
``config.train.schedule``: "cosine" (linear warmup, cosine decay) | "constant" (the release's, after warmup).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec

from gw_jax.errors import UserInputError
from gw_jax.train.came import came

OPTIMIZERS = ("adamw", "came", "came8bit")
STACKED_AXES = ("layers", "experts")  # leading axes that stack independent matrices


def make_schedule(cfg) -> optax.Schedule:
    """Linear warmup to ``cfg.learning_rate`` then cosine decay to ``final_lr_fraction`` of it (or constant)."""
    schedule = cfg.get("schedule", "cosine")
    if schedule == "constant":
        warmup, peak = int(cfg.warmup_steps), float(cfg.learning_rate)
        return optax.linear_schedule(0.0, peak, warmup) if warmup else optax.constant_schedule(peak)
    if schedule != "cosine":
        raise UserInputError(f"--config.train.schedule={schedule!r}: choose 'cosine' or 'constant'")
    total = max(int(cfg.num_steps), int(cfg.warmup_steps) + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=float(cfg.learning_rate), warmup_steps=int(cfg.warmup_steps),
        decay_steps=total, end_value=float(cfg.learning_rate) * float(cfg.final_lr_fraction))


def stacked_dims_fn(logical_specs):
    """``(path, param) -> int`` leading stacked axes of each parameter, from its logical axis names."""
    table = {}
    for path, spec in jax.tree_util.tree_flatten_with_path(
            logical_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))[0]:
        names = tuple(spec) if isinstance(spec, PartitionSpec) else ()
        count = 0
        while count < len(names) and names[count] in STACKED_AXES:
            count += 1
        table[jax.tree_util.keystr(path)] = count
    return lambda path, _param: table.get(jax.tree_util.keystr(path), 0)


def make_optimizer(cfg, logical_specs=None) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``logical_specs``: the parameters' logical PartitionSpecs (CAME treats each stacked block's matrix as
    its own, as the reference's per-block tensors)."""
    schedule = make_schedule(cfg)
    name = cfg.get("optimizer", "adamw")
    if name not in OPTIMIZERS:
        raise UserInputError(f"--config.train.optimizer={name!r}: choose from {OPTIMIZERS}")

    def decay_mask(params):  # no weight decay on norms / vectors
        return jax.tree.map(lambda p: p.ndim >= 2, params)

    if name == "adamw":
        opt = optax.adamw(schedule, b1=float(cfg.adam_b1), b2=float(cfg.adam_b2), eps=float(cfg.adam_eps),
                          weight_decay=float(cfg.weight_decay), mask=decay_mask)
    else:
        opt = came(schedule, weight_decay=float(cfg.weight_decay), state_8bit=name == "came8bit",
                   batch_dims=stacked_dims_fn(logical_specs) if logical_specs is not None else None)
    tx = optax.chain(optax.clip_by_global_norm(float(cfg.grad_clip_norm)), opt)
    return tx, schedule


def ema_decay(step: jax.Array, max_decay: float = 0.9999) -> jax.Array:
    """The reference EMA schedule: min(max_decay, (1 + n) / (10 + n)), n = updates so far."""
    n = jnp.asarray(step, jnp.float32)
    return jnp.minimum(max_decay, (1.0 + n) / (10.0 + n))


def ema_update(ema_params, params, decay: jax.Array):
    return jax.tree.map(lambda e, p: e * decay + p.astype(e.dtype) * (1.0 - decay), ema_params, params)
