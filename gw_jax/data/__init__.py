"""Data: simulated episodes, packed TFRecords, the Grain loader. ``make_loader`` is imported lazily."""


def __getattr__(name):
    if name == "make_loader":
        from gw_jax.data.loader import make_loader

        return make_loader
    raise AttributeError(name)
