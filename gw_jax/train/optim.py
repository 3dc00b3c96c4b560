"""optax AdamW with warmup + cosine decay and global-norm clipping; EMA with the reference schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def make_schedule(cfg) -> optax.Schedule:
    """Linear warmup to ``cfg.learning_rate`` then cosine decay to ``final_lr_fraction`` of it."""
    total = max(int(cfg.num_steps), int(cfg.warmup_steps) + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=float(cfg.learning_rate), warmup_steps=int(cfg.warmup_steps),
        decay_steps=total, end_value=float(cfg.learning_rate) * float(cfg.final_lr_fraction))


def make_optimizer(cfg) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = make_schedule(cfg)

    def decay_mask(params):  # no weight decay on norms / vectors
        return jax.tree.map(lambda p: p.ndim >= 2, params)

    tx = optax.chain(
        optax.clip_by_global_norm(float(cfg.grad_clip_norm)),
        optax.adamw(schedule, b1=float(cfg.adam_b1), b2=float(cfg.adam_b2), eps=float(cfg.adam_eps),
                    weight_decay=float(cfg.weight_decay), mask=decay_mask),
    )
    return tx, schedule


def ema_decay(step: jax.Array, max_decay: float = 0.9999) -> jax.Array:
    """The reference EMA schedule: min(max_decay, (1 + n) / (10 + n)), n = updates so far."""
    n = jnp.asarray(step, jnp.float32)
    return jnp.minimum(max_decay, (1.0 + n) / (10.0 + n))


def ema_update(ema_params, params, decay: jax.Array):
    return jax.tree.map(lambda e, p: e * decay + p.astype(e.dtype) * (1.0 - decay), ema_params, params)
