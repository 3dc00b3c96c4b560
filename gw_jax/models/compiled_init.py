"""A freshly initialised NNX module, its initialisers run as one compiled function.

    lam = compiled_init(lambda: LatentActionModel(rngs=nnx.Rngs(seed)))  # == built eagerly, bit for bit
    idm = compiled_init(lambda: IDM((64, 64), rngs=nnx.Rngs(seed)), optimise=False)  # equal to ~1 ulp, faster

Eager initialisation dispatches (and compiles) every initialiser and random split separately: seconds on an idle
CPU, tens of seconds on a busy one for the small conv nets. Here the module is traced once for its structure
(``nnx.eval_shape``) and its state comes out of one jitted call; JAX's random numbers do not depend on
compilation, so the values are those of the eager build. ``optimise=False`` compiles that call without XLA's
CPU optimisation passes: the init runs once, and for the IDM the optimising compile takes about as long as the
eager build (16 s vs 18 s on 2 busy cores) while this one takes 3 s; the truncated-normal initialisers then
round differently in the last bit (IDM: 18 of its arrays, at most 4.5e-8 apart).
"""

from __future__ import annotations

from typing import Callable, TypeVar

import jax
from flax import nnx

M = TypeVar("M", bound=nnx.Module)


# what the notebooks' smoke runs also compile with (tests/test_notebooks.py)
_NO_CPU_OPTIMISATION = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def compiled_init(build: Callable[[], M], *, optimise: bool = True) -> M:
    """``build()`` (a module built from its own ``nnx.Rngs``), with the initialisers compiled into one call;
    ``optimise=False``: without XLA's CPU optimisation passes (on the CPU; elsewhere the option does nothing)."""
    graphdef, _ = nnx.split(nnx.eval_shape(build))
    options = _NO_CPU_OPTIMISATION if not optimise and jax.default_backend() == "cpu" else None
    return nnx.merge(graphdef, jax.jit(lambda: nnx.state(build()), compiler_options=options)())
