"""Shardings for the train state: parameters from their logical names, optimizer state to match.

Which optimizer-state leaves belong to a parameter (Adam moments, CAME's statistics) is the optimizer's own
knowledge: ``optax.tree_map_params`` walks the state with it, so a leaf of its parameter's shape takes the
parameter's sharding and everything else (step counts, schedule state, CAME's factored row/column vectors
and 8-bit block scales, all small) is replicated, whatever the chain of transformations.
"""

from __future__ import annotations

import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gw_jax.parallel.logical import LogicalRules
from gw_jax.parallel.mesh import logical_tree_shardings
from gw_jax.train.state import TrainState


def state_shardings(abstract_state: TrainState, logical_specs, mesh: Mesh, rules: LogicalRules,
                    tx: optax.GradientTransformation) -> TrainState:
    """NamedShardings for every leaf of the train state (``tx``: the optimizer that made ``opt_state``)."""
    param_shardings = logical_tree_shardings(logical_specs, mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_shardings = optax.tree_map_params(
        tx, lambda leaf, sharding, param: sharding if tuple(leaf.shape) == tuple(param.shape) else replicated,
        abstract_state.opt_state, param_shardings, abstract_state.params,
        transform_non_params=lambda _leaf: replicated)
    return TrainState(step=replicated, params=param_shardings, opt_state=opt_shardings,
                      ema_params=param_shardings)
