"""Experiment configs: one Python file per experiment with ``get_config() -> ConfigDict``.

Overrides use the ml_collections command-line form, ``--config.model.num_blocks=4``: the value is
parsed as a Python literal and must keep the type of the field it replaces (ints may become floats).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Iterable

import ml_collections

from gw_jax.errors import UserInputError
from gw_jax.storage import is_remote


class ConfigError(UserInputError):
    """A config file or override is wrong; the message names the file or the field."""


def load_config_file(path: str | Path) -> ml_collections.ConfigDict:
    if is_remote(path):  # a config is Python code run here: it lives in the checkout, next to the code
        raise ConfigError(f"--config {path}: a config is a local Python file (configs/*.py), not a URI")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"gw_jax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a broken config should name itself
        raise ConfigError(f"{path}: failed to import: {e}") from e
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: has no get_config()")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    return config


def _parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return text  # bare strings: --config.data.dir=/tmp/x


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> ml_collections.ConfigDict:
    """Applies ``a.b.c=value`` (or ``--config.a.b.c=value``) overrides in place and returns config."""
    for item in overrides:
        text = item[len("--config."):] if item.startswith("--config.") else item
        if "=" not in text:
            raise ConfigError(f"override {item!r} must look like --config.a.b=value")
        dotted, raw = text.split("=", 1)
        *parents, leaf = dotted.split(".")
        node = config
        for name in parents:
            if name not in node:
                raise ConfigError(f"unknown config field {dotted!r} (no {name!r})")
            node = node[name]
        if leaf not in node:
            raise ConfigError(f"unknown config field {dotted!r}")
        old, new = node[leaf], _parse_value(raw)
        if old is not None and new is not None:
            if isinstance(old, bool) and not isinstance(new, bool):
                raise ConfigError(f"{dotted}: expected a bool, got {raw!r}")
            if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
                new = float(new)
            if isinstance(old, (tuple, list)) and isinstance(new, (tuple, list)):
                new = type(old)(new)
            elif isinstance(old, str) and not isinstance(new, str):
                new = raw
            elif type(old) is not type(new) and not isinstance(old, ml_collections.ConfigDict):
                raise ConfigError(f"{dotted}: expected {type(old).__name__}, got {raw!r}")
        with node.unlocked() if hasattr(node, "unlocked") else _null():
            node[leaf] = new
    return config


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
    return apply_overrides(load_config_file(path), overrides)
