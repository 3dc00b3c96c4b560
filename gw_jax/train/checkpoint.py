"""One Orbax CheckpointManager for everything a resumed run needs.

Items per step: ``state`` (params, optimizer, EMA, step; sharded arrays), ``data`` (the data iterator,
through Grain's own Orbax handler: one ``process_<i>-of-<n>.json`` per process, so each host resumes its
own shard of the data) and ``config`` (JSON). Saves are asynchronous; ``max_to_keep`` old steps are kept.
Restoring takes an abstract state whose leaves carry the *target* shardings, so a checkpoint written
on one mesh restores onto another. The directory is a local folder or a ``gs://`` URI (Orbax writes arrays
through tensorstore's gcs driver, the rest through epath).
"""

from __future__ import annotations

import json
from pathlib import Path

import grain
import jax
import orbax.checkpoint as ocp

from gw_jax.storage import absolute


class _JsonStateIterator:
    """Grain's handler stores a non-Grain iterator's ``get_state()`` as bytes: adapts one whose state is a
    JSON-able value (``ArrayBatches``)."""

    def __init__(self, iterator):
        self.iterator = iterator

    def get_state(self) -> bytes:
        return json.dumps(self.iterator.get_state()).encode()

    def set_state(self, state: bytes) -> None:
        self.iterator.set_state(json.loads(state))

    def start_prefetch(self) -> None:
        pass


def _grain_item(iterator):
    return iterator if isinstance(iterator, grain.DatasetIterator) else _JsonStateIterator(iterator)


class Checkpointer:
    def __init__(self, directory: str | Path, *, max_to_keep: int = 3, save_interval_steps: int = 1,
                 async_save: bool = True):
        self.directory = absolute(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
            enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data", "config"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, *, data=None, config: dict | None = None, force: bool = False) -> bool:
        """``data``: the data iterator (``get_state``/``set_state``); each process writes its own state."""
        items = dict(state=ocp.args.StandardSave(state),
                     config=ocp.args.JsonSave(json.loads(json.dumps(config or {}, default=str))))
        if data is not None:
            items["data"] = grain.checkpoint.CheckpointSave(_grain_item(data))
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def reached_preemption(self, step: int) -> bool:
        """True on every process at the same step once any of them got SIGTERM (multi-process runs)."""
        return self.manager.reached_preemption(step)

    def has_data_state(self, step: int) -> bool:
        """Whether ``step`` holds this process's data-iterator state (not when the process count changed)."""
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        return (self.directory / str(step) / "data" / name).is_file()

    def restore(self, abstract_state, step: int | None = None, *, data=None):
        """Returns (state, config) of ``step`` (default: latest), or None if there is none. ``data`` (the
        data iterator) is moved to its saved position in place, when this step saved one for this process."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        items = dict(state=ocp.args.StandardRestore(abstract_state), config=ocp.args.JsonRestore())
        if data is not None:
            if self.has_data_state(step):
                items["data"] = grain.checkpoint.CheckpointRestore(_grain_item(data))
            else:
                print(f"note: checkpoint {step} has no data-iterator state for process {jax.process_index()} of "
                      f"{jax.process_count()}; the data starts from its beginning", flush=True)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored.state, restored.config

    def restore_config(self, step: int | None = None) -> dict | None:
        """Only the config saved with ``step`` (default: latest): enough to rebuild the model."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_with_shardings(tree, shardings):
    """ShapeDtypeStructs carrying shardings: the restore target for a (possibly new) mesh."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
