"""Data: simulated episodes, packed TFRecords, the Grain loader.

``gw_jax.data.make_loader`` is imported on first use, so that importing a sibling (``gw_jax.data.sim`` in
MuJoCo worker processes, ``gw_jax.data.records``) does not pull in Grain.
"""


def __getattr__(name):
    if name == "make_loader":
        from gw_jax.data.loader import make_loader

        return make_loader
    raise AttributeError(name)
