"""Block-sparse neighbourhood attention: never builds L x L logits, skips key blocks no query can see.

    out = blocksparse_attention(q, k, v, nb)        # q, k, v (B, T*H*W, heads, D)
    plan = make_plan(nb, block=128)                 # plan.kept: fraction of block pairs computed

``nb`` is a :class:`gw_jax.models.neighborhood_attention.Neighborhood` (its grid, dilation, per-axis key
intervals and masks are all this module uses).

How (flash-attention style, in plain XLA so it runs on CPU, GPU and TPU):
- tokens are reordered once so that a block of ``block`` consecutive tokens is a small 3D tile of one
  dilation group (as NATTEN's token permutation does); the tile shape is the one, among all factorings of
  ``block``, with the least work: the longest per-block lists of (query block, key block) pairs that hold
  any visible pair of tokens, then the fewest such pairs;
- for every query block a list of the key blocks it needs; a ``lax.scan`` over that list folds each key
  block into an online softmax; inside a block the exact token mask comes from per-axis key intervals;
- the backward pass (``custom_vjp``) recomputes probabilities from the saved log-sum-exp: dQ over the
  same lists, dK/dV over the transposed lists (which query blocks see a key block), no scatter;
- under a mesh with a ``context`` axis (:func:`gw_jax.parallel.logical.use_mesh_rules`) each device
  keeps its query blocks and all-gathers keys/values (``shard_map``); the per-row arithmetic is the same
  as on one device, so are the numbers.
Cost: (kept fraction) x dense attention FLOPs plus the tile edges; memory O(L x block) per head.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange
from jax.sharding import PartitionSpec

from gw_jax.parallel.logical import current_mesh, logical_to_spec

DEFAULT_BLOCK = 128
CONTEXT_AXIS = "context"
_MASKED = -1e30  # finite, so fully masked rows stay NaN-free


@dataclasses.dataclass(frozen=True)
class _Static:
    dilation: tuple[int, int, int]
    tested: tuple[bool, bool, bool]  # axes that need the interval test (others: every key visible)


@dataclasses.dataclass(frozen=True, eq=False)
class BlockPlan:
    """Static schedule of one neighbourhood on one grid (numpy; cached)."""

    block: int
    tile: tuple[int, int, int]
    order: np.ndarray  # (L,) row-major token at each position of the reordered sequence
    inverse: np.ndarray  # (L,) position of each row-major token
    padded: int  # reordered length, a multiple of block * shards
    q_first: np.ndarray  # (n, block, 3) first visible key coordinate per query (padding: 0)
    q_last: np.ndarray  # (n, block, 3) last one (padding: -1)
    k_coord: np.ndarray  # (n, block, 3) key coordinates (padding: -1)
    kv_index: np.ndarray  # (n, S) key blocks of each query block (ascending; padded by repeats)
    kv_valid: np.ndarray  # (n, S)
    q_index: np.ndarray  # (shards, n, S_t) per shard: its local query blocks that see each key block
    q_valid: np.ndarray  # (shards, n, S_t)
    static: _Static
    kept: float  # computed (query block, key block) pairs / all pairs

    @property
    def blocks(self) -> int:
        return self.padded // self.block

    @property
    def executed(self) -> float:
        """Block pairs the kernel computes (lists padded to the longest) / all pairs of token blocks."""
        real = -(-len(self.order) // self.block)
        return self.kv_index.size / float(real * real)


def _tile_order(nb, tile) -> np.ndarray:
    """Row-major token ids sorted by (dilation group, tile, position in tile) in group coordinates."""
    coords = np.stack(np.unravel_index(np.arange(nb.length), nb.grid), axis=-1)
    dil = np.asarray(nb.dilation)
    group, inner = coords % dil, coords // dil
    keys = [*group.T, *(inner // np.asarray(tile)).T, *inner.T]
    return np.lexsort(keys[::-1])


def _block_pairs(nb, order: np.ndarray, block: int, n: int, masks) -> np.ndarray:
    """(n, n) bool: some token of query block i may see some token of key block j.

    Per axis, the blocks' coordinate sets are joined through the axis mask; the AND over axes is exact
    for blocks that are whole tiles (products of per-axis sets) and a superset otherwise (never drops).
    """
    coords = np.stack(np.unravel_index(order, nb.grid), axis=-1)
    block_of = np.arange(len(order)) // block
    pairs = np.ones((n, n), bool)
    for a, (x, mask) in enumerate(zip(nb.grid, masks, strict=True)):
        member = np.zeros((n, x), np.int64)
        member[block_of, coords[:, a]] = 1
        pairs &= (member @ mask.astype(np.int64) @ member.T) > 0
    return pairs


def _factorings(block: int):
    divisors = [d for d in range(1, block + 1) if block % d == 0]
    return [(a, b, block // (a * b)) for a, b in itertools.product(divisors, divisors) if block % (a * b) == 0]


def _lists(pairs: np.ndarray, rows: np.ndarray | None = None):
    """Per row of ``pairs``, its True columns padded to a common length by repeating the last one."""
    hits = [np.flatnonzero(row) for row in pairs]
    width = max(1, max(len(h) for h in hits))
    index = np.zeros((len(hits), width), np.int32)
    valid = np.zeros((len(hits), width), bool)
    for i, h in enumerate(hits):
        if len(h):
            index[i, :len(h)], index[i, len(h):], valid[i, :len(h)] = h, h[-1], True
    return index, valid


@functools.lru_cache(maxsize=64)
def make_plan(nb, block: int = DEFAULT_BLOCK, shards: int = 1) -> BlockPlan:
    length = nb.length
    if length <= block:  # one block per shard
        block = -(-length // shards)
        block = -(-block // 8) * 8 if shards > 1 else block
    padded = -(-length // (block * shards)) * (block * shards)
    n = padded // block
    masks = nb.axis_masks()
    group_extent = [-(-x // d) for x, d in zip(nb.grid, nb.dilation, strict=True)]
    best = None
    for tile in _factorings(block):
        if any(t > 2 * e and t > 1 for t, e in zip(tile, group_extent, strict=True)):
            continue  # a tile far longer than the axis only repeats another candidate
        order = _tile_order(nb, tile)
        pairs = _block_pairs(nb, order, block, n, masks)
        # work: every query block runs as many steps as the longest list (dQ), every key block too (dK/dV)
        cost = (pairs.sum(1).max() + pairs.sum(0).max(), pairs.sum())
        if best is None or cost < best[0]:
            best = (cost, tile, order, pairs)
    _, tile, order, pairs = best
    real = -(-length // block)  # blocks holding tokens
    pairs[real:, :] = False  # padding query blocks need nothing
    inverse = np.argsort(order)

    coords = np.full((padded, 3), -1, np.int32)
    coords[:length] = np.stack(np.unravel_index(order, nb.grid), axis=-1)
    first, last = np.zeros((padded, 3), np.int32), np.full((padded, 3), -1, np.int32)
    for a, (lo, hi) in enumerate(nb.ranges()):
        first[:length, a], last[:length, a] = lo[coords[:length, a]], hi[coords[:length, a]]
    kv_index, kv_valid = _lists(pairs)
    local = n // shards
    per_shard = [_lists(pairs[r * local:(r + 1) * local].T) for r in range(shards)]
    width = max(i.shape[1] for i, _ in per_shard)
    pad = lambda a, mode: np.pad(a, ((0, 0), (0, width - a.shape[1])), mode=mode)
    q_index = np.stack([pad(i, "edge") for i, _ in per_shard])
    q_valid = np.stack([pad(v, "constant") for _, v in per_shard])
    tested = tuple(not whole for whole in nb.whole_axes())
    to_blocks = lambda a: a.reshape(n, block, 3)
    return BlockPlan(block, tile, order, inverse, padded, to_blocks(first), to_blocks(last), to_blocks(coords),
                     kv_index, kv_valid, q_index, q_valid, _Static(nb.dilation, tested),
                     float(pairs.sum()) / float(real * real))


# --------------------------------------------------------------------------------------------------
# The kernel on blocks: q (B, nq, H, block, D), k and v (B, nk, H, block, D), float32.


def _visible(st: _Static, first, last, coord):
    """(n, bq, bk) token mask from query intervals (n, bq, 3) and key coordinates (n, bk, 3)."""
    ok = coord[:, None, :, 0] >= 0  # padding keys have coordinate -1
    for a in range(3):
        if not st.tested[a]:
            continue
        f, c = first[:, :, None, a], coord[:, None, :, a]
        ok &= (c >= f) & (c <= last[:, :, None, a])
        if st.dilation[a] > 1:
            ok &= (c - f) % st.dilation[a] == 0
    return ok


def _scores(qs, kk, mask):
    s = jnp.einsum("bnhqd,bnhkd->bnhqk", qs, kk)
    return jnp.where(mask[None, :, None], s, _MASKED)


def _forward(st, q, k, v, arrays):
    kv_index, kv_valid, q_first, q_last, _, _, k_coord = arrays
    qs = q * q.shape[-1] ** -0.5

    def fold(carry, xs):
        acc, row_max, row_sum = carry
        kb, ok = xs
        mask = _visible(st, q_first, q_last, k_coord[kb]) & ok[:, None, None]
        s = _scores(qs, k[:, kb], mask)
        new_max = jnp.maximum(row_max, s.max(-1))
        p = jnp.where(mask[None, :, None], jnp.exp(s - new_max[..., None]), 0.0)
        correction = jnp.exp(row_max - new_max)
        row_sum = row_sum * correction + p.sum(-1)
        acc = acc * correction[..., None] + jnp.einsum("bnhqk,bnhkd->bnhqd", p, v[:, kb])
        return (acc, new_max, row_sum), None

    init = (jnp.zeros(q.shape[:-1] + v.shape[-1:], jnp.float32), jnp.full(q.shape[:-1], _MASKED, jnp.float32),
            jnp.zeros(q.shape[:-1], jnp.float32))
    (acc, row_max, row_sum), _ = jax.lax.scan(fold, init, (kv_index.T, kv_valid.T))
    row_sum = jnp.where(row_sum > 0, row_sum, 1.0)  # padding rows
    return acc / row_sum[..., None], row_max + jnp.log(row_sum)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _attend(st, q, k, v, arrays):
    return _forward(st, q, k, v, arrays)[0]


def _attend_fwd(st, q, k, v, arrays):
    out, lse = _forward(st, q, k, v, arrays)
    return out, (q, k, v, out, lse, arrays)


def _attend_bwd(st, residuals, d_out):
    q, k, v, out, lse, arrays = residuals
    kv_index, kv_valid, q_first, q_last, q_index, q_valid, k_coord = arrays
    scale = q.shape[-1] ** -0.5
    qs = q * scale
    delta = (d_out * out).sum(-1)  # (B, nq, H, bq)

    def dq_step(dq, xs):  # over each query block's key blocks
        kb, ok = xs
        mask = _visible(st, q_first, q_last, k_coord[kb]) & ok[:, None, None]
        p = jnp.where(mask[None, :, None], jnp.exp(_scores(qs, k[:, kb], mask) - lse[..., None]), 0.0)
        dp = jnp.einsum("bnhqd,bnhkd->bnhqk", d_out, v[:, kb])
        return dq + jnp.einsum("bnhqk,bnhkd->bnhqd", p * (dp - delta[..., None]), k[:, kb]), None

    def dkv_step(carry, xs):  # over each key block's (local) query blocks
        dk, dv = carry
        qb, ok = xs
        mask = _visible(st, q_first[qb], q_last[qb], k_coord) & ok[:, None, None]
        p = jnp.where(mask[None, :, None], jnp.exp(_scores(qs[:, qb], k, mask) - lse[:, qb, ..., None]), 0.0)
        dv = dv + jnp.einsum("bnhqk,bnhqd->bnhkd", p, d_out[:, qb])
        dp = jnp.einsum("bnhqd,bnhkd->bnhqk", d_out[:, qb], v)
        dk = dk + jnp.einsum("bnhqk,bnhqd->bnhkd", p * (dp - delta[:, qb, ..., None]), qs[:, qb])
        return (dk, dv), None

    dq, _ = jax.lax.scan(dq_step, jnp.zeros_like(q), (kv_index.T, kv_valid.T))
    (dk, dv), _ = jax.lax.scan(dkv_step, (jnp.zeros_like(k), jnp.zeros_like(v)), (q_index.T, q_valid.T))
    return dq * scale, dk, dv, None


_attend.defvjp(_attend_fwd, _attend_bwd)


# --------------------------------------------------------------------------------------------------


def _permutation(order: np.ndarray):
    """x -> x[:, order] whose transpose is the inverse gather (autodiff of a gather would scatter)."""
    inverse = np.argsort(order)

    @jax.custom_vjp
    def permute(x):
        return jnp.take(x, order, axis=1)

    permute.defvjp(lambda x: (permute(x), None), lambda _, g: (jnp.take(g, inverse, axis=1),))
    return permute


@functools.lru_cache(maxsize=64)
def _reorderings(plan: BlockPlan):
    """(row-major -> block order, block order -> row-major), cached per plan."""
    return _permutation(plan.order), _permutation(plan.inverse)


def _context_size(mesh) -> int:
    return 1 if mesh is None else mesh.shape.get(CONTEXT_AXIS, 1)


def blocksparse_attention(q, k, v, nb, *, block: int = DEFAULT_BLOCK):
    """Neighbourhood attention of q, k, v (B, L, H, D) over grid ``nb.grid``, row-major tokens."""
    mesh = current_mesh()
    shards = _context_size(mesh)
    plan = make_plan(nb, block, shards)
    pad = plan.padded - nb.length
    to_order, from_order = _reorderings(plan)

    def to_blocks(x):
        x = jnp.pad(to_order(x.astype(jnp.float32)), ((0, 0), (0, pad), (0, 0), (0, 0)))
        return rearrange(x, "b (n k) h d -> b n h k d", k=plan.block)

    arrays = tuple(jnp.asarray(a) for a in (plan.kv_index, plan.kv_valid, plan.q_first, plan.q_last,
                                             plan.q_index, plan.q_valid, plan.k_coord))
    qb, kb, vb = to_blocks(q), to_blocks(k), to_blocks(v)
    if shards == 1:
        out = _attend(plan.static, qb, kb, vb, arrays[:4] + (arrays[4][0], arrays[5][0], arrays[6]))
    else:
        batch, _, heads = logical_to_spec(("act_batch", None, "act_heads"), mesh=mesh)
        spec = PartitionSpec(batch, CONTEXT_AXIS, heads, None, None)
        rows = PartitionSpec(CONTEXT_AXIS)

        def local(qb, kb, vb, kv_index, kv_valid, q_first, q_last, q_index, q_valid, k_coord):
            kb = jax.lax.all_gather(kb, CONTEXT_AXIS, axis=1, tiled=True)
            vb = jax.lax.all_gather(vb, CONTEXT_AXIS, axis=1, tiled=True)
            return _attend(plan.static, qb, kb, vb, (kv_index, kv_valid, q_first, q_last, q_index[0], q_valid[0],
                                                     k_coord))

        out = jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, spec) + (rows,) * 6 + (PartitionSpec(),),
                            out_specs=spec, check_vma=False)(qb, kb, vb, *arrays)
    out = rearrange(out, "b n h k d -> b (n k) h d")[:, :nb.length]
    return from_order(out).astype(q.dtype)
