"""Tiny stand-ins for the released checkpoints, built offline from random weights (tests, notebooks' smoke mode).

    root = release_folder("runs/tiny_release")     # a GigaWorld-0 release layout, a few MiB, no network, no torch
    pipe = GenerationPipeline.from_release(root, lora={"demo": (root / "lora", 1.0)})

The folder has the release's layout and file formats, written by this package's exporters: ``transformer/``
(reference-layout DiT, ``save_pretrained``), ``vae/`` (diffusers ``AutoencoderKLWan``), ``text_encoder/``
(transformers T5 encoder + a word-level ``tokenizer.json``: prompts are words ``w0`` .. ``w36``), ``lora/`` (an
adapter in the release's peft format), and ``it2v.json`` with three images of different sizes. diffusers and
transformers load these files and give the same numbers (``tests/test_testing_release.py``). The weights are
random: the videos are noise, the shapes, dtypes, code paths and file formats are the release's.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

from gw_jax.convert.safetensors_io import save_flat
from gw_jax.models.dit import GigaWorld0DiT
from gw_jax.models.lora import add_lora
from gw_jax.models.text.encoder import hf_state_dict
from gw_jax.models.text.t5 import T5Config, T5Encoder, hf_key as t5_key
from gw_jax.models.vae import WanVAE

# tests/fixtures/gigaworld0_dit_tiny.json (the reference-run fixture's config): cross-attention width 32 = T5 d_model
TINY_DIT = dict(max_img_h=16, max_img_w=24, max_frames=8, in_channels=17, out_channels=16, patch_spatial=2,
                patch_temporal=1, model_channels=64, num_blocks=2, num_heads=4, crossattn_emb_channels=32,
                adaln_lora_dim=16)
TINY_VAE = dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True])
TINY_T5 = T5Config(vocab_size=40, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj="relu")
IMAGE_SIZES = ((60, 80), (90, 120), (50, 50))  # (H, W): 4:3 twice and a square one


def write_word_tokenizer(directory: str | Path, vocab_size: int) -> Path:
    """A word-level tokenizer.json with T5's special tokens (<pad>=0, </s>=1, <unk>=2) and words w0, w1, ..;
    </s> appended to every prompt."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(vocab_size - 3)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    path = Path(directory) / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def random_module(make, seed: int) -> nnx.Module:
    """``make()``'s module (traced, not run) with numpy random parameters: kernels N(0, 1/fan_in), biases and
    embeddings small, norm scales near 1 (none zero: zero-initialised gates would hide whole code paths). Eager
    JAX initialisation of a module compiles every op once: seconds to a minute on a busy CPU; this is instant."""
    model = nnx.eval_shape(make)
    rng = np.random.default_rng(seed)
    updated = []
    for path, variable in nnx.to_flat_state(nnx.state(model)):
        shape, name = tuple(variable.shape), str(path[-1])
        if name in ("scale", "gamma"):
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif len(shape) >= 2 and name != "embedding":  # Linear kernels (.., in, out); convs (kt, kh, kw, in, out)
            fan_in = shape[-2] if name == "kernel" else int(np.prod(shape[:-1]))
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
        else:
            value = 0.05 * rng.standard_normal(shape)
        updated.append((path, variable.replace(jnp.asarray(value, variable.dtype))))
    nnx.update(model, nnx.from_flat_state(updated))
    return model


def _with_lora(model: GigaWorld0DiT, rank: int) -> GigaWorld0DiT:
    add_lora(model, rank=rank, rngs=nnx.Rngs(0))
    return model


def save_t5(model: T5Encoder, directory: str | Path) -> None:
    """A transformers ``T5EncoderModel`` folder: config.json + model.safetensors (shared and embed_tokens tied)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = hf_state_dict(model, t5_key)
    tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"]
    save_flat(tensors, directory, "model")
    cfg = dataclasses.asdict(model.cfg)
    (directory / "config.json").write_text(json.dumps(
        {"architectures": ["T5EncoderModel"], "model_type": "t5", "is_encoder_decoder": False,
         "use_cache": False, **cfg}, indent=1))


def release_folder(root: str | Path, *, seed: int = 0, lora_rank: int = 4) -> Path:
    """Writes a tiny release-layout folder at ``root`` (replacing it) and returns ``root``."""
    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    dit = random_module(lambda: GigaWorld0DiT(**TINY_DIT, rngs=nnx.Rngs(seed)), seed)
    dit.save_pretrained(root / "transformer")
    # an adapter for that model (B random: a fresh adapter's B = 0 would change nothing)
    adapted = random_module(lambda: _with_lora(GigaWorld0DiT(**TINY_DIT, rngs=nnx.Rngs(seed)), lora_rank), seed + 3)
    adapted.save_lora(root / "lora")

    vae = random_module(lambda: WanVAE(rngs=nnx.Rngs(seed), **TINY_VAE), seed + 1)
    vae.save_pretrained(root / "vae")

    t5 = random_module(lambda: T5Encoder(TINY_T5, rngs=nnx.Rngs(seed)), seed + 2)
    save_t5(t5, root / "text_encoder")
    write_word_tokenizer(root / "text_encoder", TINY_T5.vocab_size)

    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(IMAGE_SIZES):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / f"{i}.png")
    items = [{"image": f"{i}.png", "prompt": f"w{i} w{i + 3} w7"} for i in range(len(IMAGE_SIZES))]
    (root / "it2v.json").write_text(json.dumps(items))
    return root
