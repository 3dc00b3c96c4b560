"""Device meshes from config: named axes ``data``, ``fsdp``, ``context``, ``tensor``.

A config gives a size per axis; one axis may be -1 ("the rest"). The mesh is laid out with
``jax.make_mesh`` so the innermost axes (tensor, context) land on the fastest interconnect.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from gw_jax.errors import UserInputError
from gw_jax.parallel.logical import MESH_AXES, LogicalRules, logical_to_spec


def resolve_axis_sizes(sizes: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Fills the one -1 axis so the product equals ``num_devices``; checks the rest."""
    unknown = set(sizes) - set(MESH_AXES)
    if unknown:
        raise UserInputError(f"mesh: unknown axis {sorted(unknown)}; axes are {MESH_AXES}")
    resolved = {axis: int(sizes.get(axis, 1)) for axis in MESH_AXES}
    free = [axis for axis, size in resolved.items() if size == -1]
    if len(free) > 1:
        raise UserInputError(f"mesh: only one axis may be -1, got {free}")
    known = math.prod(size for size in resolved.values() if size != -1)
    if free:
        if num_devices % known:
            raise UserInputError(f"mesh: {num_devices} devices do not divide by the fixed axes {resolved}")
        resolved[free[0]] = num_devices // known
    if math.prod(resolved.values()) != num_devices:
        raise UserInputError(f"mesh: axis sizes {resolved} need {math.prod(resolved.values())} devices, "
                             f"have {num_devices}")
    return resolved


def make_mesh(sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    resolved = resolve_axis_sizes(sizes, len(devices))
    shape = tuple(resolved[a] for a in MESH_AXES)
    # Auto axes: classic GSPMD propagation from the shardings we place (not explicit-sharding types).
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    try:
        return jax.make_mesh(shape, MESH_AXES, devices=devices, axis_types=axis_types)
    except Exception:  # topologies jax cannot lay out: fall back to device order
        return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=axis_types)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Leading (batch) dim over data+fsdp, everything else replicated."""
    return NamedSharding(mesh, logical_to_spec(("act_batch",) + (None,) * (ndim - 1), mesh=mesh))


def logical_tree_shardings(logical_specs, mesh: Mesh, rules: LogicalRules):
    """Maps a tree of logical PartitionSpecs (from ``nnx.get_partition_spec``) to NamedShardings."""
    def to_sharding(spec):
        names = tuple(spec) if isinstance(spec, PartitionSpec) else ()
        return NamedSharding(mesh, logical_to_spec(names, rules, mesh))
    return jax.tree.map(to_sharding, logical_specs, is_leaf=lambda x: isinstance(x, PartitionSpec))


def describe(mesh: Mesh) -> str:
    return " x ".join(f"{name}={size}" for name, size in mesh.shape.items())
