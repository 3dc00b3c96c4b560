"""The train state as plain pytrees, so train steps are pure functions and Orbax saves it as is.

Parameters are kept as *pure dicts* of arrays (``nnx.split`` -> ``to_pure_dict``); the module's graph
definition and its non-trainable buffers stay outside the state and are merged back inside the step.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer updates done
    params: Any  # pure dict, float32 master weights
    opt_state: Any
    ema_params: Any  # pure dict, same structure as params


@flax.struct.dataclass
class ModelDef:
    """What a pure function needs to rebuild the module from ``params`` (static + constants)."""
    graphdef: Any = flax.struct.field(pytree_node=False)
    buffers: Any  # non-Param variables (e.g. RoPE tables), as an nnx.State

    def merge(self, params, frozen=None) -> nnx.Module:
        """The module from trainable ``params`` (+ the ``frozen`` part, e.g. the base under LoRA adapters)."""
        if frozen is None:
            return nnx.merge(self.graphdef, params, self.buffers)
        return nnx.merge(self.graphdef, params, frozen, self.buffers)


def create_train_state(params, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema_params=jax.tree.map(jnp.copy, params))

