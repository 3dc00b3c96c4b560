"""T5 encoder (as in Hugging Face ``T5EncoderModel``) in Flax NNX, loading HF checkpoints.

Pre-norm blocks with RMS layer norm (no mean, no bias), unscaled attention with a bucketed relative
position bias shared by all layers (from the first block), and a ReLU (original T5) or gated-GELU
(T5 v1.1) feed-forward chosen by config.json's ``feed_forward_proj``. GigaWorld-0 uses the t5-11b
encoder (width 1024, 512 tokens, zeros past the prompt).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gw_jax.convert.safetensors_io import load_flat
from gw_jax.errors import UserInputError, load_json_dataclass
from gw_jax.models.layers import RMSNorm
from gw_jax.models.text.encoder import TextEncoder, load_params, masked_attention
from gw_jax.models.text.tokenize import FixedLengthTokenizer

DEFAULT_MAX_LENGTH = 512

ACTIVATIONS = {"relu": jax.nn.relu, "gelu": partial(jax.nn.gelu, approximate=False),
               "gelu_new": partial(jax.nn.gelu, approximate=True),
               "gelu_pytorch_tanh": partial(jax.nn.gelu, approximate=True),
               "silu": jax.nn.silu, "swish": jax.nn.silu}


@dataclass(frozen=True)
class T5Config:
    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_heads: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "relu"

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        # transformers maps "gated-gelu" to the tanh approximation ("gelu_new"); other names pass through.
        name = self.feed_forward_proj.split("-")[-1]
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else name


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """(L, L) bucket of each (query, key) pair, bidirectional: half the buckets for keys after the query;
    exact buckets for small distances, log-spaced ones up to ``max_distance``. float32 math as in HF."""
    relative = np.arange(length)[None, :] - np.arange(length)[:, None]  # key - query
    half = num_buckets // 2
    exact = half // 2
    distance = np.abs(relative)
    log_ratio = np.log(np.maximum(distance, 1).astype(np.float32) / np.float32(exact))
    far = exact + (log_ratio / np.float32(math.log(max_distance / exact)) * np.float32(half - exact)).astype(np.int64)
    return (relative > 0) * half + np.where(distance < exact, distance, np.minimum(far, half - 1))


class T5Block(nnx.Module):
    """x + attention(norm(x)), then x + feed_forward(norm(x))."""

    def __init__(self, cfg: T5Config, *, dtype, rngs: nnx.Rngs):
        if cfg.activation not in ACTIVATIONS:
            raise UserInputError(f"T5 feed_forward_proj {cfg.feed_forward_proj!r} is not supported "
                                 f"(activations: {sorted(ACTIVATIONS)})")
        dense = partial(nnx.Linear, use_bias=False, dtype=dtype, param_dtype=dtype, rngs=rngs)
        inner, self.heads, self.act = cfg.num_heads * cfg.d_kv, cfg.num_heads, ACTIVATIONS[cfg.activation]
        self.attn_norm = RMSNorm(cfg.d_model, eps=cfg.layer_norm_epsilon)
        self.q, self.k, self.v = dense(cfg.d_model, inner), dense(cfg.d_model, inner), dense(cfg.d_model, inner)
        self.o = dense(inner, cfg.d_model)
        self.ff_norm = RMSNorm(cfg.d_model, eps=cfg.layer_norm_epsilon)
        if cfg.gated:
            self.wi_0, self.wi_1 = dense(cfg.d_model, cfg.d_ff), dense(cfg.d_model, cfg.d_ff)
        else:
            self.wi = dense(cfg.d_model, cfg.d_ff)
        self.wo = dense(cfg.d_ff, cfg.d_model)

    def __call__(self, x: jax.Array, mask: jax.Array, position_bias: jax.Array) -> jax.Array:
        n, length, _ = x.shape
        h = self.attn_norm(x)
        split = lambda t: t.reshape(n, length, self.heads, -1)
        attn = masked_attention(split(self.q(h)), split(self.k(h)), split(self.v(h)), mask, position_bias)
        x = x + self.o(attn.reshape(n, length, -1))
        h = self.ff_norm(x)
        hidden = self.act(self.wi_0(h)) * self.wi_1(h) if hasattr(self, "wi_0") else self.act(self.wi(h))
        return x + self.wo(hidden)


class T5Encoder(nnx.Module):
    """Token embedding, blocks sharing one relative position bias, final RMS norm."""

    def __init__(self, cfg: T5Config, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.cfg = cfg
        self.shared = nnx.Embed(cfg.vocab_size, cfg.d_model, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.relative_attention_bias = nnx.Embed(cfg.relative_attention_num_buckets, cfg.num_heads, rngs=rngs)
        self.blocks = nnx.List([T5Block(cfg, dtype=dtype, rngs=rngs) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.d_model, eps=cfg.layer_norm_epsilon)

    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        buckets = relative_position_buckets(ids.shape[1], self.cfg.relative_attention_num_buckets,
                                            self.cfg.relative_attention_max_distance)  # static: shapes are
        position_bias = self.relative_attention_bias(jnp.asarray(buckets)).transpose(2, 0, 1)  # (H, L, L)
        x = self.shared(ids)
        for block in self.blocks:
            x = block(x, mask, position_bias)
        return self.final_norm(x)


_BLOCK_KEYS = {"q": "layer.0.SelfAttention.q", "k": "layer.0.SelfAttention.k", "v": "layer.0.SelfAttention.v",
               "o": "layer.0.SelfAttention.o", "attn_norm": "layer.0.layer_norm", "ff_norm": "layer.1.layer_norm",
               "wi": "layer.1.DenseReluDense.wi", "wi_0": "layer.1.DenseReluDense.wi_0",
               "wi_1": "layer.1.DenseReluDense.wi_1", "wo": "layer.1.DenseReluDense.wo"}
_TOP_KEYS = {"shared": "shared.weight", "final_norm": "encoder.final_layer_norm.weight",
             "relative_attention_bias": "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"}


def hf_key(path: tuple) -> str:
    """Our parameter path -> the transformers T5 key (all HF T5 weights are named ``...weight``)."""
    names = [str(p) for p in path]
    if names[0] == "blocks":
        return f"encoder.block.{names[1]}.{_BLOCK_KEYS[names[2]]}.weight"
    return _TOP_KEYS[names[0]]


def load_t5_module(directory: Path, dtype=jnp.float32) -> T5Encoder:
    """A T5Encoder with the weights of a HF T5 checkpoint (encoder-only or full; decoder keys ignored)."""
    cfg = load_json_dataclass(T5Config, directory / "config.json", what="a T5 config")
    model = nnx.eval_shape(lambda: T5Encoder(cfg, dtype=dtype, rngs=nnx.Rngs(0)))
    tensors, origin = load_flat(directory, "model")
    if "shared.weight" not in tensors and "encoder.embed_tokens.weight" in tensors:  # untied save
        tensors["shared.weight"] = tensors.pop("encoder.embed_tokens.weight")
    load_params(model, tensors, origin, hf_key, ignore=("encoder.embed_tokens.", "decoder.", "lm_head."))
    return model


def find_tokenizer(directory: Path) -> Path:
    """tokenizer.json next to the weights, or in a diffusers-style sibling ``tokenizer/`` folder."""
    for candidate in (directory / "tokenizer.json", directory.parent / "tokenizer" / "tokenizer.json"):
        if candidate.is_file():
            return candidate
    hint = " (only spiece.model found)" if (directory / "spiece.model").is_file() else ""
    raise UserInputError(f"{directory}: no tokenizer.json{hint}; write one with transformers: "
                         f"T5TokenizerFast.from_pretrained(dir).save_pretrained(dir)")


def load_t5(directory: str | Path, *, max_length: int | None = None, dtype=jnp.float32,
            batch_size: int = 32) -> TextEncoder:
    """A T5 text encoder from a HF checkpoint directory, ``max_length`` tokens (default 512)."""
    directory = Path(directory)
    max_length = DEFAULT_MAX_LENGTH if max_length is None else int(max_length)
    if max_length < 1:
        raise UserInputError(f"T5 max_length must be positive, got {max_length}")
    tokenizer = FixedLengthTokenizer(find_tokenizer(directory), max_length, pad_token="<pad>")
    model = load_t5_module(directory, dtype)
    return TextEncoder(model, tokenizer, name=f"t5:{directory.resolve().name}", width=model.cfg.d_model,
                       batch_size=batch_size)
