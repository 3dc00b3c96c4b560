"""Checks of a train config made before anything is built, so nonsense fails in one line, not in XLA.

    check_train_config(config)                          # --config.train.num_steps=-5 -> UserInputError
    check_resume_config(saved_config, config, where)    # resuming with another model -> names the fields

Each message names the ``--config.a.b`` field at fault.
"""

from __future__ import annotations

import json
import math

from gw_jax.errors import UserInputError

# Model options that change how the model runs, not its parameters: a resumed run may change them.
RUNTIME_ONLY_MODEL_KEYS = ("scan_blocks", "remat_policy", "dtype", "attention_impl")
# Train fields that decide what the checkpointed state is (adapters or full weights; optimizer state layout).
STATE_TRAIN_KEYS = ("mode", "lora_rank", "lora_alpha", "lora_targets", "optimizer")


def _int_at_least(low):
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low), f"an int >= {low}"


def _number(low, high=math.inf, *, low_open=False, high_open=False):
    def ok(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
    return ok, f"a number in {left}{low}, {high}{right}"


RULES = {
    "seed": _int_at_least(0),
    "train.num_steps": _int_at_least(1),
    "train.global_batch_size": _int_at_least(1),
    "train.accum_steps": _int_at_least(1),
    "train.warmup_steps": _int_at_least(0),
    "train.log_every": _int_at_least(1),
    "train.checkpoint_every": _int_at_least(1),
    "train.max_checkpoints": _int_at_least(1),
    "train.learning_rate": _number(0, low_open=True),
    "train.final_lr_fraction": _number(0),
    "train.adam_b1": _number(0, 1, high_open=True),
    "train.adam_b2": _number(0, 1, high_open=True),
    "train.adam_eps": _number(0, low_open=True),
    "train.weight_decay": _number(0),
    "train.grad_clip_norm": _number(0, low_open=True),
    "train.ema_max_decay": _number(0, 1),
    "data.num_frames": _int_at_least(1),
    "data.height": _int_at_least(1),
    "data.width": _int_at_least(1),
    "data.fps": _number(0, low_open=True),
    "data.worker_count": _int_at_least(0),
    "loss.frame_sigmas": ((lambda v: v in ("shared", "independent")), "'shared' or 'independent'"),
    "loss.ref_factor": _int_at_least(1),
}


def _lookup(config, dotted: str):
    node = config
    for name in dotted.split("."):
        if name not in node:
            return None, False
        node = node[name]
    return node, True


def check_train_config(config) -> None:
    """One line naming the first field whose value makes no sense for training (fields a config lacks pass)."""
    for dotted, (ok, expected) in RULES.items():
        value, present = _lookup(config, dotted)
        if present and not ok(value):
            raise UserInputError(f"--config.{dotted}={value!r}: must be {expected}")


def _plain(tree) -> dict:
    """As the checkpoint stores it: JSON types (tuples -> lists), non-JSON values as strings."""
    return json.loads(json.dumps(tree.to_dict() if hasattr(tree, "to_dict") else tree, default=str))


def check_resume_config(saved: dict | None, config, *, where) -> None:
    """Resuming ``where`` (a checkpoint folder) with another model is an error naming every field that differs."""
    if not saved or "model" not in saved:
        return
    old, new = saved["model"], _plain(config.model)
    missing = object()
    differ = [f"model.{k}" for k in sorted(set(old) | set(new))
              if k not in RUNTIME_ONLY_MODEL_KEYS and old.get(k, missing) != new.get(k, missing)]
    # what the train state holds: full weights or LoRA adapters, and the optimizer's state layout
    old_train, new_train = saved.get("train", {}), _plain(config.train)
    differ += [f"train.{k}" for k in STATE_TRAIN_KEYS if k in old_train and old_train[k] != new_train.get(k, missing)]
    if differ:
        value = lambda tree, k: tree.get(k.split(".", 1)[1], "(unset)")  # noqa: E731
        changes = ", ".join(f"{k} {value(old if k.startswith('model.') else old_train, k)!r} -> "
                            f"{value(new if k.startswith('model.') else new_train, k)!r}" for k in differ)
        raise UserInputError(f"{where}: its checkpoints hold another model ({changes}); resume with the saved "
                             f"values or train in a new --workdir")
