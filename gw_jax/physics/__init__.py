"""Physics system identification (GigaWorld-0-3D-Phys): a MuJoCo slider with friction, stiffness and
damping (``system``), Flax NNX surrogates of its dynamics with Orbax checkpoints (``surrogate``),
gradient-based and CMA-ES identification (``identify``), file-level workflows (``pipeline``) and the
``gw-jax sysid`` command (``cli``). See docs/physics.md."""
