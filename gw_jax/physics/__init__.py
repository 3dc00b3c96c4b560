"""Physics system identification (GigaWorld-0-3D-Phys): a MuJoCo slider with friction, stiffness and
damping (``system``), Flax surrogates of its dynamics (``surrogate``), gradient-based and CMA-ES
identification (``identify``) and the ``gw-jax sysid`` command (``cli``). See docs/physics.md."""
