"""Post-training from released weights: ``--config.model.pretrained=DIR`` and ``--config.train.mode=lora``.

    gw-jax train --config configs/gigaworld0_2b_posttrain.py --workdir runs/gr1 \\
        --config.model.pretrained=GigaWorld-0-Video-Pretrain-2b --config.train.mode=lora

DIR is a release folder (``transformer/``, ``vae/``, ``text_encoder/``) or its ``transformer/`` folder:
``config.json`` with the reference constructor kwargs and (sharded) safetensors under reference names. Its
kwargs replace the experiment's reference kwargs (gw_jax options such as ``remat_policy`` stay the
experiment's). The weights go from the files straight onto the mesh, one device shard at a time
(``convert.dit_weights.load_reference_arrays``): no host copy of the model is ever made.

Modes (``config.train.mode``):
- ``full``: every ``nnx.Param`` trains; the state (params, optimizer, EMA) starts from the released weights.
- ``lora``: adapters (``models.lora``; rank ``lora_rank``, ``lora_alpha``, ``lora_targets``, the release's
  defaults) train, and so do the layers the released architecture lacks (the action MLPs with
  ``model.action_dim``: nothing to adapt there, and frozen they would stay at their initial values); they start
  from DIR's values where it has them (``convert.dit_weights.not_in_release``). The base weights are a frozen
  input of the step, loaded again from DIR on every (re)start and never written to checkpoints, which hold the
  trainable part (adapters, new layers) with its optimizer and EMA only.
``export_release`` writes a trained state in the release's formats: a ``transformer/`` folder (full) or the
peft adapter file that the release's ``load_lora`` reads (LoRA).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax
import ml_collections
from flax import nnx

from gw_jax.convert.dit_weights import load_reference_arrays, not_in_release
from gw_jax.errors import UserInputError, load_json
from gw_jax.models import lora
from gw_jax.models.dit import OPTION_KEYS, GigaWorld0DiT
from gw_jax.storage import is_remote

TRAIN_MODES = ("full", "lora")
# parameters of layers the release lacks (the action MLPs): trained in full next to the LoRA adapters
NEW_LAYERS = nnx.All(nnx.Param, lambda path, _: not_in_release(path))


def find_transformer_dir(path: str | Path) -> Path:
    """The folder with the DiT's config.json: DIR/transformer (release layout) or DIR itself."""
    if is_remote(path):
        raise UserInputError(f"--config.model.pretrained={path}: released weights load from a local folder "
                             "(copy them with `gcloud storage cp -r` first)")
    path = Path(path)
    for candidate in (path / "transformer", path):
        if (candidate / "config.json").is_file():
            return candidate
    raise UserInputError(f"--config.model.pretrained={path}: not a checkpoint folder (no transformer/config.json "
                         "and no config.json)")


def resolve_model_config(config) -> None:
    """Replaces the reference kwargs of ``config.model`` by those of the pretrained checkpoint, in place."""
    pretrained = config.model.get("pretrained", "")
    if not pretrained:
        return
    directory = find_transformer_dir(pretrained)
    reference = load_json(directory / "config.json", what="a reference checkpoint's config")
    reference = {k: v for k, v in reference.items() if not k.startswith("_")}
    model = config.model
    kept = {k: model[k] for k in OPTION_KEYS if k in model}
    with model.unlocked():
        for key in [k for k in model.keys() if k not in kept and k != "pretrained"]:
            del model[key]
        model.update({**reference, **kept})


def train_mode(config) -> str:
    mode = config.train.get("mode", "full")
    if mode not in TRAIN_MODES:
        raise UserInputError(f"--config.train.mode={mode!r}: choose from {TRAIN_MODES}")
    return mode


def model_kwargs(model_config) -> dict:
    kwargs = model_config.to_dict() if isinstance(model_config, ml_collections.ConfigDict) else dict(model_config)
    kwargs.pop("pretrained", None)
    return kwargs


@dataclasses.dataclass(frozen=True)
class ModelParts:
    """How the train state splits the model: ``trainable`` (in the state, optimised) and ``frozen`` (an input
    of the step) variable filters; ``build(rngs)`` makes the model with its adapters."""
    build: Callable[[nnx.Rngs], nnx.Module]
    trainable: Any
    frozen: Any
    mode: str
    pretrained: Path | None


def model_parts(config) -> ModelParts:
    resolve_model_config(config)
    mode = train_mode(config)
    kwargs = model_kwargs(config.model)
    pretrained = find_transformer_dir(config.model.pretrained) if config.model.get("pretrained") else None

    if mode == "full":
        return ModelParts(lambda rngs: GigaWorld0DiT.from_config(kwargs, rngs=rngs), nnx.Param, nnx.Nothing,
                          mode, pretrained)

    cfg = config.train

    def build(rngs: nnx.Rngs) -> nnx.Module:
        model = GigaWorld0DiT.from_config(kwargs, rngs=rngs)
        lora.add_lora(model, rank=int(cfg.lora_rank), alpha=float(cfg.lora_alpha), targets=tuple(cfg.lora_targets),
                      rngs=nnx.Rngs(jax.random.fold_in(jax.random.key(config.seed), 1)))
        return model

    return ModelParts(build, nnx.Any(lora.LoRAParam, NEW_LAYERS), nnx.Param, mode, pretrained)


def load_params(directory: Path, abstract_params: nnx.State, shardings, whole: nnx.State | None = None) -> dict:
    """The checkpoint's weights for ``abstract_params`` as a pure dict of arrays placed with ``shardings``
    (a pure dict of NamedShardings), read shard by shard; ``whole``: all the model's abstract ``nnx.Param``s
    when ``abstract_params`` is a part (LoRA: the frozen base, the new layers), for the check of the keys."""
    arrays = load_reference_arrays(abstract_params, directory, shardings, whole=whole)
    return nnx.to_pure_dict(nnx.from_flat_state(list(arrays.items())))


def export_release(model: nnx.Module, mode: str, out: str | Path) -> Path:
    """Writes ``out/`` in the release's format: the transformer (config.json + safetensors) after full
    training, the adapter (diffusion_pytorch_model.safetensors with peft keys) after LoRA."""
    out = Path(out)
    if mode == "lora":
        if jax.tree.leaves(nnx.state(model, NEW_LAYERS)):
            raise UserInputError(f"export {out}: the run trained action layers next to its LoRA adapters, and the "
                                 "release's adapter file cannot hold them: export with --fuse (a transformer folder)")
        return lora.save_lora(model, out)
    model.save_pretrained(out, max_shard_bytes=5 * 2 ** 30)
    return out
