"""Shardings for the train state: parameters from their logical names, optimizer state to match."""

from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jax.tree_util import DictKey

from gw_jax.parallel.logical import LogicalRules
from gw_jax.parallel.mesh import logical_tree_shardings
from gw_jax.train.state import TrainState


def _dict_suffix(path) -> tuple:
    """The trailing run of dict keys of a key path: the parameter's own path inside its container."""
    suffix = []
    for entry in reversed(path):
        if not isinstance(entry, DictKey):
            break
        suffix.append(entry.key)
    return tuple(reversed(suffix))


def state_shardings(abstract_state: TrainState, logical_specs, mesh: Mesh, rules: LogicalRules) -> TrainState:
    """NamedShardings for every leaf of the train state.

    Params and EMA follow the logical specs; optimizer moments (same tree as params inside optax
    containers) follow the parameter with the same path; everything else (counts) is replicated.
    """
    param_shardings = logical_tree_shardings(logical_specs, mesh, rules)
    by_path = {_dict_suffix(p): s for p, s in jax.tree_util.tree_flatten_with_path(param_shardings)[0]}
    replicated = NamedSharding(mesh, PartitionSpec())

    def for_leaf(path, leaf):
        sharding = by_path.get(_dict_suffix(path))
        if sharding is None or getattr(leaf, "ndim", 0) < len(sharding.spec):
            return replicated
        return sharding

    opt_shardings = jax.tree_util.tree_map_with_path(for_leaf, abstract_state.opt_state)
    return TrainState(step=replicated, params=param_shardings, opt_state=opt_shardings,
                      ema_params=param_shardings)

