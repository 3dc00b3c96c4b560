"""diffusers ``AutoencoderKLWan`` safetensors <-> gw_jax :class:`~gw_jax.models.vae.WanVAE` parameters.

gw_jax mirrors diffusers' module names, so a parameter path joined with dots is the diffusers key,
except that a resampler's convolution (``resample_conv``) is diffusers' ``resample.1`` (index 0 of that
``nn.Sequential`` is the parameter-free upsample / pad). Layouts: torch Conv3d (out, in, t, h, w) and
Conv2d (out, in, h, w) become (t, h, w, in, out) with t = 1 for 2D; RMS-norm gammas (C, 1, 1[, 1]) become (C,).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from gw_jax.convert.safetensors_io import load_flat, save_flat
from gw_jax.errors import UserInputError

WEIGHTS_STEM = "diffusion_pytorch_model"


def diffusers_key(path: tuple) -> str:
    return ".".join("resample.1" if p == "resample_conv" else str(p) for p in path)


def to_gw_layout(key: str, value: np.ndarray) -> np.ndarray:
    if key.endswith(".gamma"):
        return value.reshape(-1)
    if key.endswith(".weight") and value.ndim == 5:
        return value.transpose(2, 3, 4, 1, 0)
    if key.endswith(".weight") and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)[None]
    return value


def to_diffusers_layout(key: str, value: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_gw_layout`. diffusers' 2D parts: the resamplers' convolution (``resample.1``) and
    the attention blocks (Conv2d ``to_qkv`` / ``proj``, their norm's gamma (C, 1, 1)); every other gamma is
    (C, 1, 1, 1) and every other convolution a Conv3d."""
    two_d = ".resample.1." in key or ".attentions." in key
    if key.endswith(".gamma"):
        return value.reshape(-1, 1, 1) if two_d else value.reshape(-1, 1, 1, 1)
    if key.endswith(".weight") and value.ndim == 5:
        return value[0].transpose(3, 2, 0, 1) if two_d else value.transpose(4, 3, 0, 1, 2)
    return value


def save_diffusers_weights(model: nnx.Module, directory: Path) -> None:
    """Writes ``model``'s parameters under diffusers' names and layouts (``diffusion_pytorch_model.safetensors``)."""
    tensors = {}
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        key = diffusers_key(path)
        tensors[key] = to_diffusers_layout(key, np.asarray(variable[...], np.float32))
    save_flat(tensors, directory, WEIGHTS_STEM)


def load_diffusers_weights(model: nnx.Module, directory: Path) -> None:
    """Fills ``model`` (possibly abstract, from ``nnx.eval_shape``) in place; every key must match."""
    tensors, origin = load_flat(directory, WEIGHTS_STEM)
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    updated = []
    for path, variable in flat:
        key = diffusers_key(path)
        if key not in tensors:
            raise UserInputError(f"missing key {key} in the checkpoint {sorted(set(map(str, origin.values())))[0]}"
                                 f" (does config.json match the weights?)")
        value = to_gw_layout(key, np.asarray(tensors.pop(key)))
        if tuple(value.shape) != tuple(variable.shape):
            raise UserInputError(f"{origin[key]}: key {key} has a shape that gives {value.shape} here, the "
                                 f"config expects {tuple(variable.shape)}")
        updated.append((path, variable.replace(jnp.asarray(value, dtype=variable.dtype))))
    if tensors:
        extra = sorted(tensors)
        raise UserInputError(f"unexpected keys in {origin[extra[0]]}: {extra[:5]}{' ...' if len(extra) > 5 else ''}"
                             f" (does config.json match the weights?)")
    nnx.update(model, nnx.from_flat_state(updated))
