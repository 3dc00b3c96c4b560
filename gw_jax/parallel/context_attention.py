"""Context-parallel attention: a clip's tokens split over the ``context`` mesh axis.

Two schedules, both with ``shard_map`` over the mesh from :func:`gw_jax.parallel.logical.use_mesh_rules`:
- ``allgather``: each device keeps its query block and all-gathers keys/values (simple; K/V memory
  grows with the full length, fine for the 2B model's 19,200 tokens);
- ``ring``: keys/values travel around the ring with ``ppermute`` while each device folds each block into
  an online softmax (flash-attention style running max and sum), so no device ever holds all K/V.
Layout (B, L, H, D) as everywhere in gw_jax. Without a mesh (or with context size 1) both reduce to
plain attention.

:func:`mesh_sharded_attention` runs any per-device kernel (Pallas splash, cuDNN flash attention) under
``shard_map`` on the whole mesh: batch over ``data``/``fsdp``, heads over ``tensor``, queries over
``context`` with keys/values all-gathered over ``context`` (the ``allgather`` schedule). A custom kernel
(a Pallas or cuDNN custom call) has no SPMD partitioning rule, so without it XLA would gather the whole
sequence and every head onto every device.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from gw_jax.parallel.logical import current_mesh, logical_to_spec

CONTEXT_AXIS = "context"


def _plain_attention(q, k, v):
    return jax.nn.dot_product_attention(q, k, v, implementation="xla")


def _specs(mesh):
    batch, _, heads = logical_to_spec(("act_batch", None, "act_heads"), mesh=mesh)
    q_spec = PartitionSpec(batch, CONTEXT_AXIS, heads, None)
    return q_spec


def _allgather_local(q, k, v, *, attention_fn):
    k = jax.lax.all_gather(k, CONTEXT_AXIS, axis=1, tiled=True)
    v = jax.lax.all_gather(v, CONTEXT_AXIS, axis=1, tiled=True)
    return attention_fn(q, k, v)


def _ring_local(q, k, v, *, axis_size: int):
    """Online-softmax attention of the local queries over K/V blocks passed around the ring."""
    scale = q.shape[-1] ** -0.5
    qf = q.astype(jnp.float32) * scale
    b, lq, h, _ = q.shape
    permutation = [(i, (i + 1) % axis_size) for i in range(axis_size)]

    def fold(carry, _):
        out, row_max, row_sum, k_blk, v_blk = carry
        logits = jnp.einsum("bqhd,bkhd->bhqk", qf, k_blk.astype(jnp.float32))
        new_max = jnp.maximum(row_max, logits.max(axis=-1))
        correction = jnp.exp(row_max - new_max)
        probs = jnp.exp(logits - new_max[..., None])
        row_sum = row_sum * correction + probs.sum(axis=-1)
        out = out * correction[..., None] + jnp.einsum("bhqk,bkhd->bhqd", probs, v_blk.astype(jnp.float32))
        k_blk = jax.lax.ppermute(k_blk, CONTEXT_AXIS, permutation)
        v_blk = jax.lax.ppermute(v_blk, CONTEXT_AXIS, permutation)
        return (out, new_max, row_sum, k_blk, v_blk), None

    init = (jnp.zeros((b, h, lq, v.shape[-1]), jnp.float32),
            jnp.full((b, h, lq), -jnp.inf, jnp.float32), jnp.zeros((b, h, lq), jnp.float32), k, v)
    (out, _, row_sum, _, _), _ = jax.lax.scan(fold, init, None, length=axis_size)
    out = out / row_sum[..., None]
    return jnp.einsum("bhqd->bqhd", out).astype(q.dtype)


def _divides(mesh, axes, n: int) -> bool:
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    return n % max(1, int(np.prod([mesh.shape[a] for a in axes]))) == 0


def mesh_sharded_attention(q, k, v, *, local_fn):
    """``local_fn(q, k, v)`` on each device's share of (B, L, H, D) q, k, v: batch over the ``act_batch``
    axes, heads over ``act_heads``, queries over ``context``. Keys/values of self-attention (as long as the
    queries) are split over ``context`` and all-gathered inside (backward: reduce-scatter); shorter ones
    (cross-attention text) stay whole on each device. A dimension that does not divide by its mesh axes is
    left unsplit. Exact: each device computes full-softmax attention for its queries and heads."""
    mesh = current_mesh()
    if mesh is None or mesh.size == 1:
        return local_fn(q, k, v)
    batch, _, heads = logical_to_spec(("act_batch", None, "act_heads"), mesh=mesh)
    batch = batch if _divides(mesh, batch, q.shape[0]) else None
    heads = heads if _divides(mesh, heads, q.shape[2]) else None
    size = mesh.shape.get(CONTEXT_AXIS, 1)
    split_q = size > 1 and q.shape[1] % size == 0
    split_kv = split_q and k.shape[1] == q.shape[1]
    q_spec = PartitionSpec(batch, CONTEXT_AXIS if split_q else None, heads, None)
    kv_spec = PartitionSpec(batch, CONTEXT_AXIS if split_kv else None, heads, None)
    local = functools.partial(_allgather_local, attention_fn=local_fn) if split_kv else local_fn
    return jax.shard_map(local, mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec), out_specs=q_spec,
                         check_vma=False)(q, k, v)


def context_parallel_attention(q, k, v, *, schedule: str = "ring", fallback=None):
    """Self-attention with q, k, v (B, L, H, D) split over ``context``. ``fallback``: the plain attention
    (q, k, v) -> out used unsharded and, by ``allgather``, on each device's block (default:
    ``jax.nn.dot_product_attention``, XLA path)."""
    fallback = fallback or _plain_attention
    mesh = current_mesh()
    size = 1 if mesh is None else mesh.shape.get(CONTEXT_AXIS, 1)
    if size == 1 or q.shape[1] % size or k.shape[1] % size:
        return fallback(q, k, v)
    spec = _specs(mesh)
    local = (functools.partial(_allgather_local, attention_fn=fallback) if schedule == "allgather"
             else functools.partial(_ring_local, axis_size=size))
    return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, spec), out_specs=spec,
                         check_vma=False)(q, k, v)
