"""One Orbax CheckpointManager for everything a resumed run needs.

Items per step: ``state`` (params, optimizer, EMA, step; sharded arrays), ``data`` (the Grain iterator
state, JSON) and ``config`` (JSON). Saves are asynchronous; ``max_to_keep`` old steps are kept.
Restoring takes an abstract state whose leaves carry the *target* shardings, so a checkpoint written
on one mesh restores onto another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


def _to_json(data_state: Any) -> Any:
    if isinstance(data_state, (bytes, bytearray)):
        return {"__bytes__": data_state.decode("utf-8")}
    return data_state


def _from_json(data_state: Any) -> Any:
    if isinstance(data_state, dict) and set(data_state) == {"__bytes__"}:
        return data_state["__bytes__"].encode("utf-8")
    return data_state


class Checkpointer:
    def __init__(self, directory: str | Path, *, max_to_keep: int = 3, save_interval_steps: int = 1,
                 async_save: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
            enable_async_checkpointing=async_save, create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data", "config"))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, *, data_state: Any = None, config: dict | None = None,
             force: bool = False) -> bool:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(_to_json(data_state)),
            config=ocp.args.JsonSave(json.loads(json.dumps(config or {}, default=str))),
        )
        return self.manager.save(step, args=args, force=force)

    def restore(self, abstract_state, step: int | None = None):
        """Returns (state, data_state, config) of ``step`` (default: latest); None if there is none."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        ))
        return restored.state, _from_json(restored.data), restored.config

    def restore_config(self, step: int | None = None) -> dict | None:
        """Only the config saved with ``step`` (default: latest): enough to rebuild the model."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_with_shardings(tree, shardings):
    """ShapeDtypeStructs carrying shardings: the restore target for a (possibly new) mesh."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
