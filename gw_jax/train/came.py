"""CAME (Luo et al. 2023, "Confidence-guided Adaptive Memory Efficient Optimization") as an optax transformation.

    tx = came(learning_rate=2 ** -14.5)                                  # came-pytorch's algorithm
    tx = came(2 ** -14.5, batch_dims=stacked_dims, state_8bit=True)      # the release's CAME8Bit

Per parameter matrix (the last two axes): Adafactor-style factored second moments (row/column means of
g^2 + eps1), the update clipped to RMS <= ``clip_threshold``, its momentum ``m``, and the *confidence*: a
factored moving average of the instability (u - m)^2 + eps2 that scales ``m`` down where the update is
unstable. Vectors keep a full second moment and skip the confidence step. Step for step the published
algorithm (tests compare against the ``came-pytorch`` package); decoupled weight decay wd * lr * p.

``batch_dims(path, param) -> int``: leading axes that stack independent matrices (the DiT's scanned
``layers``, MoE ``experts``), so every block is its own matrix, as the per-block tensors of the reference.
``state_8bit``: the release's CAME8Bit keeps the momentum of matrices larger than ``min_8bit_size`` as
uint8 with a min/scale per block of ``block_size`` output features (its ``split(block_size)`` along the
torch weight's first axis, our kernel's last); the factored statistics stay float32.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

BatchDims = Callable[[tuple, Any], int]


class CameState(NamedTuple):
    count: jax.Array
    mu: optax.Updates  # momentum: float32, or uint8 codes (8-bit state)
    mu_min: optax.Updates  # 8-bit only: per block minimum, (*batch, blocks); else (1,)
    mu_scale: optax.Updates  # 8-bit only: per block (max - min) / 255
    nu: optax.Updates  # vectors: full second moment; else (1,)
    nu_row: optax.Updates  # matrices: factored second moment (*batch, rows) / (*batch, cols)
    nu_col: optax.Updates
    res_row: optax.Updates  # matrices: factored instability
    res_col: optax.Updates


def _empty():
    """An unused slot (one float: Orbax cannot save zero-size arrays)."""
    return jnp.zeros((1,), jnp.float32)


def _blocks(cols: int, block_size: int) -> int:
    return -(-cols // block_size)


def quantize_blocks(x: jax.Array, block_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Min-max uint8 codes of x (*batch, rows, cols) per block of ``block_size`` columns (all rows):
    (codes like x, min (*batch, blocks), scale (*batch, blocks)); x = codes * scale + min per block."""
    *batch, rows, cols = x.shape
    n = _blocks(cols, block_size)
    padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n * block_size - cols)], mode="edge")
    blocks = padded.reshape(*batch, rows, n, block_size)
    lo, hi = blocks.min(axis=(-3, -1)), blocks.max(axis=(-3, -1))
    scale = (hi - lo) / 255.0
    safe = jnp.where(scale > 0, scale, 1.0)
    codes = jnp.round((blocks - lo[..., None, :, None]) / safe[..., None, :, None])
    codes = jnp.clip(codes, 0, 255).astype(jnp.uint8).reshape(*batch, rows, n * block_size)[..., :cols]
    return codes, lo, scale


def dequantize_blocks(codes: jax.Array, lo: jax.Array, scale: jax.Array, block_size: int) -> jax.Array:
    per_col = lambda v: jnp.repeat(v, block_size, axis=-1)[..., None, : codes.shape[-1]]  # noqa: E731
    return codes.astype(jnp.float32) * per_col(scale) + per_col(lo)


def came(learning_rate: optax.ScalarOrSchedule, *, b1: float = 0.9, b2: float = 0.999, b3: float = 0.9999,
         eps1: float = 1e-30, eps2: float = 1e-16, clip_threshold: float = 1.0, weight_decay: float = 0.0,
         batch_dims: BatchDims | None = None, state_8bit: bool = False, block_size: int = 2048,
         min_8bit_size: int = 16384) -> optax.GradientTransformation:
    """CAME; defaults are came-pytorch's (and the release's CAME8Bit's)."""
    nb = batch_dims or (lambda _path, _p: 0)

    def kind(path, p) -> tuple[int, bool, bool]:
        """(batch dims, factored (a matrix), 8-bit momentum)."""
        k = int(nb(path, p))
        matrix = p.ndim - k >= 2
        quantized = state_8bit and p.ndim - k == 2 and p.shape[-1] * p.shape[-2] > min_8bit_size
        return k, matrix, quantized

    def per_leaf(fn):
        return lambda tree: jax.tree_util.tree_map_with_path(fn, tree)

    def init_fn(params):
        def mu(path, p):
            return jnp.zeros(p.shape, jnp.uint8 if kind(path, p)[2] else jnp.float32)

        def block_stat(path, p):
            k, _, q = kind(path, p)
            return jnp.zeros(p.shape[:k] + (_blocks(p.shape[-1], block_size),), jnp.float32) if q else _empty()

        def nu(path, p):
            return _empty() if kind(path, p)[1] else jnp.zeros(p.shape, jnp.float32)

        def row(path, p):
            return jnp.zeros(p.shape[:-1], jnp.float32) if kind(path, p)[1] else _empty()

        def col(path, p):
            return jnp.zeros(p.shape[:-2] + p.shape[-1:], jnp.float32) if kind(path, p)[1] else _empty()

        return CameState(count=jnp.zeros((), jnp.int32), mu=per_leaf(mu)(params), mu_min=per_leaf(block_stat)(params),
                         mu_scale=per_leaf(block_stat)(params), nu=per_leaf(nu)(params), nu_row=per_leaf(row)(params),
                         nu_col=per_leaf(col)(params), res_row=per_leaf(row)(params), res_col=per_leaf(col)(params))

    def update_fn(updates, state: CameState, params=None):
        if weight_decay and params is None:
            raise ValueError("came with weight_decay needs the params")
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        paths_and_grads, treedef = jax.tree_util.tree_flatten_with_path(updates)
        fields = [treedef.flatten_up_to(getattr(state, f)) for f in CameState._fields[1:]]
        param_leaves = treedef.flatten_up_to(params) if params is not None else [None] * len(fields[0])
        out_updates, new_fields = [], [[] for _ in fields]
        for i, (path, g) in enumerate(paths_and_grads):
            k, matrix, quantized = kind(path, g)
            leaf = dict(zip(CameState._fields[1:], (f[i] for f in fields), strict=True))
            u, new_leaf = _leaf_update(g.astype(jnp.float32), leaf, k, matrix, quantized)
            step = -lr * u
            if weight_decay:
                step = step - weight_decay * lr * param_leaves[i].astype(jnp.float32)
            out_updates.append(step.astype(g.dtype))
            for j, name in enumerate(CameState._fields[1:]):
                new_fields[j].append(new_leaf[name])
        new_state = CameState(optax.safe_increment(state.count),
                              *(treedef.unflatten(f) for f in new_fields))
        return treedef.unflatten(out_updates), new_state

    def _leaf_update(g, leaf, k, matrix, quantized):
        axes = tuple(range(k, g.ndim))  # one matrix (or vector) per batch index
        rms = lambda x: jnp.sqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True))  # noqa: E731
        new = dict(leaf)
        sq = jnp.square(g) + eps1
        if matrix:
            new["nu_row"] = b2 * leaf["nu_row"] + (1 - b2) * sq.mean(axis=-1)
            new["nu_col"] = b2 * leaf["nu_col"] + (1 - b2) * sq.mean(axis=-2)
            u = _approx_rsqrt(new["nu_row"], new["nu_col"]) * g
        else:
            new["nu"] = b2 * leaf["nu"] + (1 - b2) * sq
            u = jax.lax.rsqrt(new["nu"]) * g
        u = u / jnp.maximum(rms(u) / clip_threshold, 1.0)
        mu = (dequantize_blocks(leaf["mu"], leaf["mu_min"], leaf["mu_scale"], block_size) if quantized
              else leaf["mu"])
        mu = b1 * mu + (1 - b1) * u
        if quantized:
            new["mu"], new["mu_min"], new["mu_scale"] = quantize_blocks(mu, block_size)
        else:
            new["mu"] = mu
        if not matrix:
            return mu, new
        res = jnp.square(u - mu) + eps2
        new["res_row"] = b3 * leaf["res_row"] + (1 - b3) * res.mean(axis=-1)
        new["res_col"] = b3 * leaf["res_col"] + (1 - b3) * res.mean(axis=-2)
        return _approx_rsqrt(new["res_row"], new["res_col"]) * mu, new

    return optax.GradientTransformation(init_fn, update_fn)


def _approx_rsqrt(row: jax.Array, col: jax.Array) -> jax.Array:
    """1/sqrt of the rank-1 estimate row_i col_j / mean(row) of a matrix of moving averages."""
    r_factor = jax.lax.rsqrt(row / row.mean(axis=-1, keepdims=True))[..., None]
    return r_factor * jax.lax.rsqrt(col)[..., None, :]
