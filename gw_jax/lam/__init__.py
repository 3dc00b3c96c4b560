"""Latent actions: a Genie-style latent action model (LAM) learnt from unlabelled video, and its probes.

Library: ``models`` (encoder + next-frame decoder; Flax NNX), ``train`` (episodes -> arrays, training,
labelling, Orbax checkpoints), ``probe`` (linear probes and their baselines), ``pipeline`` (fit / load /
latent_actions / probe / label). App on top: ``cli`` (``gw-jax lam``). Results: docs/lam.md.
"""
