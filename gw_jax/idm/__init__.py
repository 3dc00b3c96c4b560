"""Inverse dynamics: recover joint trajectories from (generated) video, with arm masking.

``models`` (U-Net segmenter, IDM), ``data`` (episodes -> arrays), ``train`` (training, metrics,
checkpoints), ``cli`` (``gw-jax idm``) and ``report`` (masked-vs-unmasked comparison).
"""
