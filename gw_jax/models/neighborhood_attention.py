"""NATTEN neighbourhood attention for the DiT's self-attention (Cosmos-Predict2 sparse attention).

A DiT config's ``natten_parameters`` is a list with one entry per block: ``None`` (dense attention) or a
dict with ``window_size`` (3 ints, ``-1``/``1`` = the whole axis) and optional ``stride``, ``dilation``
(int or 3 ints), ``is_causal`` (bool or 3 bools) and ``base_size`` (3 ints, ``-1`` = the actual size)::

    schedule = NattenSchedule.from_config(natten_parameters, num_blocks=28, max_grid=(128, 120, 120))
    nb = adapt(schedule.per_block[0], grid=(16, 30, 40), where="natten_parameters[0]")
    out = neighborhood_attention(q, k, v, nb, impl="blocksparse")     # q, k, v (B, T*H*W, heads, D)

Semantics, per axis of the (T, H, W) token grid, as NATTEN 0.21 defines them and the reference
(giga-models ``NeighborhoodAttention``) calls them:
- :func:`adapt` is the reference's ``get_adaptive_parameters``: a window of ``-1``/``1`` covers the axis;
  ``base_size`` rescales window, stride and dilation from the grid they were tuned for to the actual one;
  then window * dilation <= axis and stride <= window must hold (and NATTEN needs window >= 2);
- dilation d splits an axis into d interleaved groups (i % d); a query only sees keys of its group;
- stride s makes groups of s consecutive queries (in group coordinates) share the neighbourhood of
  their leader (the centre query, or the last one when causal);
- non-causal windows keep their full size and shift inward at the borders (they never shrink);
- causal windows end at the query itself and reach back ``window`` positions from the leader.
A key is visible when it is visible along every axis, so each query's neighbourhood is a per-axis
interval of keys (:func:`axis_ranges`), which both kernels use.

Kernels, chosen from the model's ``attention_impl`` (:data:`SPARSE_KERNELS`): ``masked`` — exact L x L
logits with the neighbourhood mask, the test reference (``attention_impl="xla"``); ``blocksparse`` — the
memory-efficient block-sparse kernel of :mod:`gw_jax.models.neighborhood_blocksparse` (every other impl).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gw_jax.errors import UserInputError
from gw_jax.models.neighborhood_blocksparse import blocksparse_attention

AXES = ("T", "H", "W")
ENTRY_KEYS = ("window_size", "stride", "dilation", "is_causal", "base_size")

# Cosmos-Predict2's published 2B sparse configuration (nvidia-cosmos/cosmos-predict2,
# configs/base/config_natten.py): one entry per block, tuned on a 44 x 80 token grid (720p); the
# comments give the sparsity there. No block is dense.
_BASE_720P = (-1, 44, 80)
_GLOBAL_HW = dict(window_size=(-1, 4, 16), dilation=(1, 11, 5), base_size=_BASE_720P)  # 98%, dilated H and W
_GLOBAL_W = dict(window_size=(-1, 12, 16), stride=(1, 4, 1), dilation=(1, 1, 5), base_size=_BASE_720P)  # 95%
_LOCAL_92 = dict(window_size=(-1, 12, 24), stride=(1, 4, 8), base_size=_BASE_720P)
_LOCAL_77 = dict(window_size=(-1, 20, 40), stride=(1, 4, 8), base_size=_BASE_720P)
_LOCAL_55 = dict(window_size=(-1, 28, 56), stride=(1, 4, 8), base_size=_BASE_720P)
COSMOS_PREDICT2_2B_NATTEN = tuple(
    [_GLOBAL_HW, _GLOBAL_HW, _GLOBAL_W, _LOCAL_92, _LOCAL_92, _GLOBAL_W, _LOCAL_92, _LOCAL_92, _LOCAL_92,
     _LOCAL_92, _GLOBAL_W]  # blocks 0-10
    + [_LOCAL_77] * 12 + [_LOCAL_55] + [_LOCAL_77] * 3 + [_LOCAL_92])  # blocks 11-22, 23, 24-26, 27


@dataclasses.dataclass(frozen=True)
class NeighborhoodParams:
    """One block's ``natten_parameters`` entry, normalised (ints/bools broadcast to 3 axes)."""

    window_size: tuple[int, int, int]
    stride: tuple[int, int, int] = (1, 1, 1)
    dilation: tuple[int, int, int] = (1, 1, 1)
    is_causal: tuple[bool, bool, bool] = (False, False, False)
    base_size: tuple[int, int, int] | None = None


@dataclasses.dataclass(frozen=True)
class Neighborhood:
    """Neighbourhood parameters adapted to one token grid (what NATTEN is called with)."""

    grid: tuple[int, int, int]
    window: tuple[int, int, int]
    stride: tuple[int, int, int]
    dilation: tuple[int, int, int]
    causal: tuple[bool, bool, bool]

    @property
    def length(self) -> int:
        return int(np.prod(self.grid))

    def ranges(self) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        """Per axis, (first, last) visible key coordinate for every query coordinate."""
        return tuple(axis_ranges(*args) for args in zip(self.grid, self.window, self.stride, self.dilation,
                                                        self.causal, strict=True))

    def axis_masks(self) -> tuple[np.ndarray, ...]:
        """Per axis, (x, x) bool: query coordinate (rows) sees key coordinate (columns)."""
        return tuple(axis_mask(*args) for args in zip(self.grid, self.window, self.stride, self.dilation,
                                                      self.causal, strict=True))

    @property
    def kept_fraction(self) -> float:
        """Visible (query, key) pairs / L^2: the attention FLOPs kept (a product over the axes)."""
        return float(np.prod([mask.mean() for mask in self.axis_masks()]))

    def whole_axes(self) -> tuple[bool, bool, bool]:
        """Axes along which every query sees every key (no test needed there)."""
        return tuple(d == 1 and bool((lo == 0).all() and (hi == x - 1).all())
                     for (lo, hi), x, d in zip(self.ranges(), self.grid, self.dilation, strict=True))


# --------------------------------------------------------------------------------------------------
# Parsing and the reference's rules


def _ints(value, name: str, where: str, *, allow_scalar: bool, minimum: int | None = None) -> tuple[int, ...]:
    if allow_scalar and isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * 3
    if (isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in value)):
        shape = "an int or 3 ints" if allow_scalar else "3 ints"
        raise UserInputError(f"{where}.{name}: expected {shape}, got {value!r}")
    if minimum is not None and min(value) < minimum:
        raise UserInputError(f"{where}.{name}: every value must be >= {minimum} (NATTEN), got {list(value)}")
    return tuple(value)


def parse_entry(entry, where: str) -> NeighborhoodParams:
    """Checks one entry as the reference's ``NeighborhoodAttention.__init__`` and NATTEN's argument checks do."""
    if not isinstance(entry, Mapping) or "window_size" not in entry:
        raise UserInputError(f"{where}: expected None (dense) or a dict with at least 'window_size', got {entry!r}")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise UserInputError(f"{where}: unknown keys {unknown}; allowed: {list(ENTRY_KEYS)}")
    causal = entry.get("is_causal", False)
    if isinstance(causal, bool):
        causal = (causal,) * 3
    if (not isinstance(causal, Sequence) or isinstance(causal, str) or len(causal) != 3
            or not all(isinstance(c, bool) for c in causal)):
        raise UserInputError(f"{where}.is_causal: expected a bool or 3 bools, got {causal!r}")
    base = entry.get("base_size")
    return NeighborhoodParams(
        window_size=_ints(entry["window_size"], "window_size", where, allow_scalar=False),
        stride=_ints(entry.get("stride", 1), "stride", where, allow_scalar=True, minimum=1),
        dilation=_ints(entry.get("dilation", 1), "dilation", where, allow_scalar=True, minimum=1),
        is_causal=tuple(causal),
        base_size=None if base is None else _ints(base, "base_size", where, allow_scalar=False),
    )


def adapt(params: NeighborhoodParams, grid: Sequence[int], where: str) -> Neighborhood:
    """The reference's ``get_adaptive_parameters`` (Python's round, half to even) and its assertions."""
    grid = tuple(int(x) for x in grid)
    window = tuple(w if w > 1 else x for x, w in zip(grid, params.window_size, strict=True))
    stride, dilation = params.stride, params.dilation
    if params.base_size is not None:
        base = tuple(b if b > 0 else x for x, b in zip(grid, params.base_size, strict=True))
        scale = tuple(x / b for x, b in zip(grid, base, strict=True))
        window = tuple(min(max(2, round(w * s)), x) for w, s, x in zip(window, scale, grid, strict=True))
        stride = tuple(min(max(1, round(st * s)), w) for w, s, st in zip(window, scale, stride, strict=True))
        max_dilation = tuple(x // w for x, w in zip(grid, window, strict=True))
        dilation = tuple(min(max(1, round(d * s)), m) for d, s, m in zip(dilation, scale, max_dilation, strict=True))
    for axis, x, w, d, s in zip(AXES, grid, window, dilation, stride, strict=True):
        if w * d > x:
            raise UserInputError(f"{where}: window_size {w} x dilation {d} = {w * d} exceeds the {axis} axis of "
                                 f"{x} tokens (rule: window x dilation <= axis size), grid {grid}")
        if s > w:
            raise UserInputError(f"{where}: stride {s} exceeds window_size {w} along {axis} "
                                 f"(rule: stride <= window), grid {grid}")
    return Neighborhood(grid, window, tuple(stride), tuple(dilation), params.is_causal)


def check_runnable(nb: Neighborhood, where: str) -> None:
    """What the reference forward and NATTEN refuse beyond :func:`adapt`: one frame, windows of 1."""
    if nb.grid[0] <= 1:
        raise UserInputError(f"{where}: neighbourhood attention needs more than one latent frame "
                             f"(the reference raises for T={nb.grid[0]}); use natten_parameters=None for images")
    for axis, w in zip(AXES, nb.window, strict=True):
        if w < 2:
            raise UserInputError(f"{where}: window {w} along {axis} (rule: NATTEN windows are >= 2), grid {nb.grid}")


@dataclasses.dataclass(frozen=True)
class NattenSchedule:
    """Per-block neighbourhood parameters of a DiT: block i runs ``options[codes[i]]`` (None = dense).

    Only configurations some block uses become options (a ``lax.switch`` compiles every branch, and an
    unused dense branch would set the memory high-water mark)."""

    per_block: tuple[NeighborhoodParams | None, ...]

    @classmethod
    def from_config(cls, natten_parameters, num_blocks: int, max_grid: Sequence[int]) -> "NattenSchedule | None":
        """Validates a config's ``natten_parameters``; rules that depend on the grid are checked on the
        largest grid the config declares (a failure there fails on every smaller grid too)."""
        if natten_parameters is None:
            return None
        if isinstance(natten_parameters, (str, Mapping)) or not isinstance(natten_parameters, Sequence):
            raise UserInputError(f"natten_parameters: expected a list with one entry per block, got "
                                 f"{type(natten_parameters).__name__}")
        if len(natten_parameters) != num_blocks:
            raise UserInputError(f"natten_parameters: {len(natten_parameters)} entries for {num_blocks} blocks "
                                 "(rule: one entry, None or a dict, per block)")
        per_block = []
        for i, entry in enumerate(natten_parameters):
            where = f"natten_parameters[{i}]"
            params = None if entry is None else parse_entry(entry, where)
            if params is not None:
                adapt(params, max_grid, where)
            per_block.append(params)
        return cls(tuple(per_block))

    def check(self, grid: Sequence[int]) -> None:
        """Raises, naming the block, when a sparse block cannot run on this token grid (T, H, W)."""
        for i, params in enumerate(self.per_block):
            if params is not None:
                check_runnable(adapt(params, grid, f"natten_parameters[{i}]"), f"natten_parameters[{i}]")

    def kept_fractions(self, grid: Sequence[int]) -> tuple[float, ...]:
        """Per block, the fraction of dense attention it computes on ``grid`` (1.0 for dense blocks)."""
        return tuple(1.0 if p is None else adapt(p, grid, f"natten_parameters[{i}]").kept_fraction
                     for i, p in enumerate(self.per_block))

    @property
    def options(self) -> tuple[NeighborhoodParams | None, ...]:
        return tuple(dict.fromkeys(self.per_block))

    @property
    def codes(self) -> tuple[int, ...]:
        index = {p: i for i, p in enumerate(self.options)}
        return tuple(index[p] for p in self.per_block)


def to_json(natten_parameters):
    """A JSON-ready copy (tuples become lists), as the reference config.json stores it."""
    if isinstance(natten_parameters, Mapping):
        return {k: to_json(v) for k, v in natten_parameters.items()}
    if isinstance(natten_parameters, (list, tuple)):
        return [to_json(v) for v in natten_parameters]
    return natten_parameters


# --------------------------------------------------------------------------------------------------
# Neighbourhoods


def axis_ranges(size: int, window: int, stride: int, dilation: int, causal: bool) -> tuple[np.ndarray, np.ndarray]:
    """(first, last) visible key for each query along one axis, in axis coordinates.

    Keys between them that share the query's dilation group (same coordinate mod dilation) are visible.
    """
    i = np.arange(size)
    group, j = i % dilation, i // dilation
    group_len = (size - group + dilation - 1) // dilation
    if causal:
        leader = np.minimum((j // stride) * stride + stride - 1, group_len - 1)  # last query of the stride group
        first, last = np.maximum(leader - window + 1, 0), j
    else:
        left = window // 2
        right = window - 1 - left
        leader = np.minimum((j // stride) * stride + stride // 2, group_len - 1)  # centre query of the group
        centre = np.clip(leader, left, group_len - 1 - right)  # windows shift inward at the borders
        first, last = centre - left, centre + right
    return group + dilation * first, group + dilation * last


def axis_mask(size: int, window: int, stride: int, dilation: int, causal: bool) -> np.ndarray:
    """(size, size) bool: query coordinate (rows) sees key coordinate (columns) along one axis."""
    first, last = axis_ranges(size, window, stride, dilation, causal)
    k = np.arange(size)[None, :]
    return (k >= first[:, None]) & (k <= last[:, None]) & ((k - first[:, None]) % dilation == 0)


def neighborhood_mask(nb: Neighborhood) -> np.ndarray:
    """(L, L) bool over row-major (t, h, w) tokens; separable, so the Kronecker product of the axes."""
    return functools.reduce(np.kron, nb.axis_masks()).astype(bool)


# --------------------------------------------------------------------------------------------------
# Kernels


def masked_attention(q, k, v, nb: Neighborhood):
    """Exact neighbourhood attention with L x L float32 logits (the test reference): the dense kernel's
    ``jax.nn.dot_product_attention`` (XLA path) with the neighbourhood mask."""
    f32, mask = jnp.float32, jnp.asarray(neighborhood_mask(nb))[None, None]
    return jax.nn.dot_product_attention(q.astype(f32), k.astype(f32), v.astype(f32), mask=mask,
                                        implementation="xla").astype(q.dtype)


# attention_impl -> neighbourhood kernel; impls not listed use the block-sparse kernel
SPARSE_KERNELS: dict[str, Callable] = {"xla": masked_attention, "masked": masked_attention,
                                       "blocksparse": blocksparse_attention}


def neighborhood_attention(q, k, v, nb: Neighborhood, impl: str = "blocksparse"):
    """q, k, v (B, T*H*W, heads, D) in row-major (t, h, w) token order -> (B, L, heads, D)."""
    if q.shape[1] != nb.length or k.shape[1] != nb.length:
        raise ValueError(f"neighbourhood attention over grid {nb.grid} needs {nb.length} tokens, got "
                         f"{q.shape[1]} queries and {k.shape[1]} keys")
    return SPARSE_KERNELS.get(impl, blocksparse_attention)(q, k, v, nb)


def scheduled_attention(q, k, v, *, code, grid, options: tuple[NeighborhoodParams | None, ...], impl: str,
                        dense: Callable):
    """Self-attention of one block: neighbourhood ``options[code]`` on ``grid``, ``dense`` where it is None.

    ``code`` is a Python int (unrolled blocks) or a traced int (scanned blocks: a ``lax.switch`` with one
    branch per distinct configuration). The grid was checked by :meth:`NattenSchedule.check`.
    """
    def branch(params):
        if params is None:
            return dense
        nb = adapt(params, grid, "natten_parameters")
        return lambda q, k, v: neighborhood_attention(q, k, v, nb, impl)

    branches = [branch(p) for p in options]
    if isinstance(code, (int, np.integer)):
        return branches[int(code)](q, k, v)
    return jax.lax.switch(code, branches, q, k, v)
