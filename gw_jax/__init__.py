"""gw_jax: GigaWorld-0 video world model in JAX/Flax NNX.

Folders, one per concern: ``models`` (DiT, VAE, text encoders, IDM, physics surrogate),
``diffusion`` (objective, samplers, rollouts), ``data`` (sim, pack, records, loader),
``parallel`` (mesh, logical axis rules, context-parallel attention), ``train``, ``geometry``,
``convert`` (PyTorch/safetensors <-> JAX), ``bench`` and ``cli``.
"""

__version__ = "0.1.0"
