"""gw_jax: GigaWorld-0 video world model in JAX/Flax NNX.

Folders, one per concern: ``models`` (DiT, VAE, text encoders, IDM, physics surrogate),
``diffusion`` (objective, samplers, rollouts), ``data`` (sim, pack, records, loader),
``parallel`` (mesh, logical axis rules, context-parallel attention), ``train``, ``geometry``,
``convert`` (PyTorch/safetensors <-> JAX), ``bench`` and ``cli``.
"""

__version__ = "0.1.0"

import flax as _flax

# Parameters carry *logical* axis names as metadata and are placed explicitly by the training code
# (gw_jax.parallel), so models build anywhere without a mesh in scope: turn off Flax's eager sharding.
_flax.config.update("flax_always_shard_variable", False)
