"""gw_jax: GigaWorld-0 video world model in JAX/Flax NNX.

Folders, one per concern, in layers (an import only points down; tests/test_layers.py keeps it so):
``errors``/``config`` -> ``parallel`` (mesh, logical axis rules, context-parallel attention, multi-host
start-up) -> ``models`` (DiT, Wan VAE, text encoders, pixel codec, attention kernels) + ``convert``
(safetensors <-> JAX in the reference layouts) -> ``diffusion`` (objective, samplers, rollouts) and ``data``
(sim, pack, records, Grain loader) -> ``train`` (state, step, loop, checkpoints, AOT compile report) and the
``idm`` / ``physics`` checks. Apps sit on top and nothing imports them: ``cli`` (the ``gw-jax`` command, which
loads the ``*_cli`` command modules), ``demo`` and ``bench``.
"""

__version__ = "0.1.0"

import flax as _flax

# Parameters carry *logical* axis names as metadata and are placed explicitly by the training code
# (gw_jax.parallel), so models build anywhere without a mesh in scope: turn off Flax's eager sharding.
_flax.config.update("flax_always_shard_variable", False)
