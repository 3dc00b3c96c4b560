"""Inverse dynamics: recover joint trajectories from (generated) video, with arm masking.

Library: ``models`` (U-Net segmenter, IDM; Flax NNX), ``data`` (episodes -> arrays), ``train`` (training,
metrics, Orbax checkpoints), ``pipeline`` (fit / evaluate / predict / label). Apps on top: ``report``
(masked-vs-unmasked comparison), ``faithfulness`` (an IDM on generated rollouts vs the commanded joints) and
``cli`` (``gw-jax idm``).
"""
