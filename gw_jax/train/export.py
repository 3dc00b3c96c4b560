"""A training workdir -> the release's formats (what its pipeline and ``load_lora`` read).

    export_workdir("runs/gr1", "out")              # full: out/config.json + safetensors; LoRA: the adapter file
    export_workdir("runs/gr1", "out", ema=True)    # the EMA weights instead of the raw ones
    export_workdir("runs/gr1", "out", fuse=True)   # LoRA merged into the base: a transformer folder

Full training writes a ``transformer/``-style folder (``GigaWorld0DiT.from_pretrained`` and the reference read
it); LoRA training writes ``out/diffusion_pytorch_model.safetensors`` with peft keys, the adapter alone (the
base stays the released one); a LoRA run that also trained action layers (``model.action_dim``) exports with
``fuse`` only.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections

from gw_jax.errors import UserInputError
from gw_jax.models import lora
from gw_jax.storage import as_path
from gw_jax.train.checkpoint import Checkpointer, abstract_with_shardings
from gw_jax.train.loop import build_setup
from gw_jax.train.pretrained import export_release


def restore_workdir(workdir: str | Path, step: int | None = None):
    """(config, setup, state) of a workdir's newest (or ``step``) checkpoint, on this host's devices."""
    directory = as_path(workdir, flag="--workdir") / "checkpoints"
    if not directory.is_dir():
        raise UserInputError(f"--workdir {workdir}: no checkpoints/ folder (train first)")
    checkpointer = Checkpointer(directory, async_save=False)
    saved = checkpointer.restore_config(step)
    if saved is None:
        raise UserInputError(f"--workdir {workdir}: no checkpoint found (train first)")
    config = ml_collections.ConfigDict(saved)
    config.mesh.axes = ml_collections.ConfigDict(dict(data=-1, fsdp=1, context=1, tensor=1))
    setup = build_setup(config)
    state, _ = checkpointer.restore(abstract_with_shardings(setup.abstract_state, setup.state_sharding), step)
    checkpointer.close()
    return config, setup, state


def export_workdir(workdir: str | Path, out: str | Path, *, ema: bool = False, step: int | None = None,
                   fuse: bool = False) -> Path:
    """Writes the checkpoint in the release's format; ``fuse`` (LoRA): the base with the adapters merged in,
    as a transformer folder."""
    _, setup, state = restore_workdir(workdir, step)
    params = state.ema_params if ema else state.params
    model = setup.model_def.merge(params, setup.init_frozen())  # LoRA: the released base under the adapters
    if fuse and setup.mode == "lora":
        lora.fuse_lora(model)
        return export_release(model, "full", out)
    return export_release(model, setup.mode, out)
