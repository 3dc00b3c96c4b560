"""The text-encoder interface (:class:`TextEncoder`: tokenizer + jitted NNX module) and what the MiniLM and T5
ports share: masked attention and loading a flat Hugging Face state dict into an NNX module."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gw_jax.errors import UserInputError
from gw_jax.models.layers import matmul_precision


def masked_attention(q, k, v, mask, bias=None):
    """Softmax attention over the unpadded keys: q, k, v (N, L, H, D), mask (N, L), bias (H, L, L) or None.

    No 1/sqrt(D) scale here (T5 has none; BERT scales q first). Scores and softmax in float32; masked
    scores get a large finite negative value, so fully padded rows stay finite (no NaN).
    """
    return jax.nn.dot_product_attention(q, k, v, bias=None if bias is None else bias[None],
                                        mask=mask[:, None, None, :], scale=1.0, implementation="xla")


def _forward(graphdef, state, ids, mask):
    with matmul_precision(jax.tree.leaves(state)[0].dtype):  # the encoders compute in their weights' dtype
        emb = nnx.merge(graphdef, state)(ids, mask)
    return jnp.where(mask[..., None], emb, 0).astype(jnp.float32)  # exact zeros past the prompt


class TextEncoder:
    """A tokenizer plus an NNX encoder module ``module(ids, mask) -> (N, L, C)``, jitted and batched."""

    def __init__(self, module: nnx.Module, tokenizer, *, name: str, width: int, batch_size: int = 32):
        self.tokenizer, self.name, self.width, self.batch_size = tokenizer, name, width, batch_size
        self.max_length = tokenizer.max_length
        graphdef, self._state = nnx.split(module)
        self._forward = jax.jit(partial(_forward, graphdef))

    def encode(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Returns (emb float32 (N, max_length, width), mask bool (N, max_length))."""
        if isinstance(prompts, str):
            raise UserInputError("TextEncoder.encode takes a list of prompts, not one string")
        ids, mask = self.tokenizer(prompts)
        emb = np.zeros((len(prompts), self.max_length, self.width), np.float32)
        for start in range(0, len(prompts), self.batch_size):
            chunk_ids, chunk_mask = ids[start:start + self.batch_size], mask[start:start + self.batch_size]
            # Pad the chunk to a power of two: few distinct shapes, so few compiles.
            rows = 1 << (len(chunk_ids) - 1).bit_length()
            pad = ((0, rows - len(chunk_ids)), (0, 0))
            out = self._forward(self._state, np.pad(chunk_ids, pad), np.pad(chunk_mask, pad))
            emb[start:start + len(chunk_ids)] = np.asarray(out)[:len(chunk_ids)]
        return emb, mask


def hf_state_dict(model: nnx.Module, key_of: Callable[[tuple], str]) -> dict[str, np.ndarray]:
    """The inverse of :func:`load_params`: a flat Hugging Face state dict (float32, linear kernels transposed)."""
    tensors = {}
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        value = np.asarray(variable[...], np.float32)
        tensors[key_of(path)] = np.ascontiguousarray(value.T if path[-1] == "kernel" else value)
    return tensors


def load_params(model: nnx.Module, tensors: dict[str, np.ndarray], origin: dict[str, Path],
                key_of: Callable[[tuple], str], *, ignore: Iterable[str] = ()) -> None:
    """Fills ``model`` (possibly abstract, from nnx.eval_shape) from a flat Hugging Face state dict.

    ``key_of(path)`` names the checkpoint key of each nnx.Param path; ``nnx.Linear`` kernels are
    stored transposed (torch ``(out, in)``). Keys starting with an ``ignore`` prefix may be left over.
    """
    where = sorted({str(f) for f in origin.values()})[:1] or ["the checkpoint"]
    tensors = dict(tensors)
    updated = []
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        key = key_of(path)
        if key not in tensors:
            raise UserInputError(f"missing key {key} in {where[0]} (does config.json match the weights?)")
        value = np.asarray(tensors.pop(key), np.float32)
        if path[-1] == "kernel":
            value = value.T
        if value.shape != tuple(variable.shape):
            raise UserInputError(f"{origin.get(key, where[0])}: key {key} has shape {value.shape} (after "
                                 f"transposing linear weights), config.json implies {tuple(variable.shape)}")
        updated.append((path, variable.replace(jnp.asarray(value, dtype=variable.dtype))))
    extra = sorted(k for k in tensors if not k.startswith(tuple(ignore)))
    if extra:
        raise UserInputError(f"unexpected keys in {origin.get(extra[0], where[0])}: {extra[:5]}"
                             f"{' ...' if len(extra) > 5 else ''} (does config.json match the weights?)")
    nnx.update(model, nnx.from_flat_state(updated))
