"""gw_jax.testing.release_folder: the release's layout and formats, read by the PyTorch libraries the release uses
(diffusers AutoencoderKLWan, transformers T5EncoderModel, the peft-format LoRA through our load_lora) with the same
numbers; the notebooks' smoke mode and tests/test_generate.py build on it."""

import json

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from gw_jax.models.dit import GigaWorld0DiT
from gw_jax.models.text import load_text_encoder
from gw_jax.models.vae import WanVAE
from gw_jax.testing import TINY_DIT, release_folder


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return release_folder(tmp_path_factory.mktemp("rel") / "release")


def rel_err(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def test_layout_and_rebuild_is_deterministic(release, tmp_path):
    for part in ("transformer", "vae", "text_encoder"):
        assert (release / part / "config.json").is_file()
    assert (release / "lora" / "diffusion_pytorch_model.safetensors").is_file()
    assert [item["image"] for item in json.loads((release / "it2v.json").read_text())] == ["0.png", "1.png", "2.png"]
    again = release_folder(tmp_path / "again")
    for f in ("transformer/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
              "text_encoder/model.safetensors", "lora/diffusion_pytorch_model.safetensors"):
        assert (again / f).read_bytes() == (release / f).read_bytes(), f


def test_models_load_and_lora_changes_the_output(release):
    model = GigaWorld0DiT.from_pretrained(release / "transformer")
    assert {k: model.config[k] for k in TINY_DIT} == TINY_DIT
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((1, 17, 2, 8, 12)), jnp.float32)  # 16 latent + mask channel
    t = jnp.full((1, 1, 2, 1, 1), 0.5)
    ctx = jnp.asarray(rng.standard_normal((1, 5, 32)), jnp.float32)
    fps = jnp.array([16.0])
    base = model(x, t, ctx, fps)
    chex.assert_shape(base, (1, 16, 2, 8, 12))
    chex.assert_tree_all_finite(base)
    assert float(jnp.std(base)) > 1e-3  # random weights everywhere: no zero-initialised path silences the output
    model.load_lora({"demo": (str(release / "lora"), 1.0)})
    adapted = model(x, t, ctx, fps)
    assert rel_err(adapted, base) > 1e-3
    model.load_lora({"demo": (str(release / "lora"), 0.0)})
    np.testing.assert_allclose(model(x, t, ctx, fps), base, atol=1e-6)


@pytest.mark.parity
def test_pytorch_libraries_read_the_folder(release):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    rng = np.random.default_rng(1)
    video = rng.uniform(-1, 1, (1, 3, 5, 32, 48)).astype(np.float32)
    ref_vae = diffusers.AutoencoderKLWan.from_pretrained(release / "vae").eval()
    with torch.no_grad():
        ref_mean = ref_vae.encode(torch.tensor(video)).latent_dist.mean.numpy()
        ref_video = ref_vae.decode(torch.tensor(ref_mean)).sample.numpy()
    vae = WanVAE.from_pretrained(release / "vae")
    mean = vae.encode(jnp.asarray(video)).mean
    assert rel_err(mean, ref_mean) <= 1e-4
    assert rel_err(vae.decode(jnp.asarray(ref_mean)), ref_video) <= 1e-4

    encoder = load_text_encoder(release / "text_encoder", max_length=8)
    emb, mask = encoder.encode(["w1 w2 w3", "w4"])
    ids, _ = encoder.tokenizer(["w1 w2 w3", "w4"])
    t5 = transformers.T5EncoderModel.from_pretrained(release / "text_encoder").eval()
    with torch.no_grad():
        ref = t5(input_ids=torch.tensor(ids, dtype=torch.long),
                 attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()
    assert rel_err(emb, ref * mask[..., None]) <= 1e-4
