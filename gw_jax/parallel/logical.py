"""Logical axis names -> mesh axes.

Model code names *logical* axes only (``embed``, ``heads``, ``mlp``, ``act_batch``...). Parameters carry
them as NNX sharding metadata (``nnx.with_partitioning(init, ("embed", "mlp"))``); activations go
through :func:`constrain`. A config maps logical names to mesh axes (``data``, ``fsdp``, ``context``,
``tensor``); outside a :func:`use_mesh_rules` context :func:`constrain` does nothing, so the same model
runs unsharded on a laptop.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "context", "tensor")

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]

# Default rules (MaxText style): weights are sharded over fsdp on their embed dim and over tensor on
# heads/mlp; activations are split over batch (data+fsdp), tokens (context) and heads/mlp (tensor).
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("act_batch", ("data", "fsdp")),
    ("act_length", "context"),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("experts", None),
    ("adaln", None),
    ("modulation", "tensor"),
    ("patch", None),
    ("out", None),
    ("text_embed", None),
    ("layers", None),
    ("norm", None),
)


class _State(threading.local):
    mesh: Mesh | None = None
    rules: LogicalRules = DEFAULT_RULES


_state = _State()


@contextlib.contextmanager
def use_mesh_rules(mesh: Mesh | None, rules: LogicalRules = DEFAULT_RULES):
    """Within this context :func:`constrain` shards activations on ``mesh`` by ``rules``."""
    old = (_state.mesh, _state.rules)
    _state.mesh, _state.rules = mesh, tuple(rules)
    try:
        yield
    finally:
        _state.mesh, _state.rules = old


def current_mesh() -> Mesh | None:
    return _state.mesh


def compute_platform() -> str:
    """The platform the traced computation runs on: the active mesh's devices' (an ahead-of-time TPU compile
    on a CPU host sees TPU devices), else the default backend's ("cpu", "gpu", "tpu")."""
    mesh = _state.mesh
    return mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()


def logical_to_spec(names: Sequence[str | None], rules: LogicalRules | None = None,
                    mesh: Mesh | None = None) -> PartitionSpec:
    """Maps logical names to a PartitionSpec; a mesh axis is used at most once, size-1 axes dropped."""
    table = dict(_state.rules if rules is None else rules)
    mesh = mesh if mesh is not None else _state.mesh
    used: set[str] = set()
    spec = []
    for name in names:
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        keep = tuple(a for a in axes if a not in used and (mesh is None or mesh.shape.get(a, 1) > 1))
        used.update(keep)
        spec.append(None if not keep else keep[0] if len(keep) == 1 else keep)
    return PartitionSpec(*spec)


def axis_shards(name: str) -> int:
    """How many shards the logical axis ``name`` has on the active mesh (1 without a mesh)."""
    mesh = _state.mesh
    if mesh is None:
        return 1
    target = logical_to_spec((name,), mesh=mesh)[0]
    axes = (target,) if isinstance(target, str) else tuple(target or ())
    return math.prod(mesh.shape[a] for a in axes)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Sharding constraint by logical names; a no-op without an active mesh."""
    mesh = _state.mesh
    if mesh is None:
        return x
    if len(names) != x.ndim:
        raise ValueError(f"constrain: {len(names)} names {tuple(names)} for an array of rank {x.ndim}")
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, logical_to_spec(names, mesh=mesh)))
