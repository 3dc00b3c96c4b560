"""Wan2.1 VAE: parity with diffusers' AutoencoderKLWan, streaming == whole clip, loading and errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gw_jax.errors import UserInputError
from gw_jax.models.vae import WanVAE

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

# Small random configurations covering the structural options of the Wan2.1 layout: temporal factor
# 4 (either order), 2 and 1, a separate decoder width, 2 residual blocks, z_dim 16 with the real stats.
CONFIGS = {
    "wan21_shape": dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                        temperal_downsample=[False, True, True]),
    "early_time_z16": dict(base_dim=6, z_dim=16, dim_mult=[1, 2, 4], num_res_blocks=2,
                           temperal_downsample=[True, True], decoder_base_dim=10),
    "time2": dict(base_dim=4, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True]),
    "no_time": dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1, temperal_downsample=[False, False]),
}
CASES = [("wan21_shape", (2, 3, 9, 32, 48)), ("early_time_z16", (1, 3, 5, 16, 24)), ("time2", (2, 3, 13, 8, 12)),
         pytest.param("wan21_shape", (1, 3, 1, 16, 16), marks=pytest.mark.slow),
         pytest.param("no_time", (1, 3, 9, 8, 12), marks=pytest.mark.slow)]


def _case_id(case) -> str:
    name, shape = case.values if hasattr(case, "values") else case
    return f"{name}-{'x'.join(map(str, shape))}"


def _reference(name: str, seed: int = 0):
    config = dict(CONFIGS[name])
    if config["z_dim"] != 16:
        config.update(latents_mean=[0.1 * i for i in range(config["z_dim"])],
                      latents_std=[1.0 + 0.1 * i for i in range(config["z_dim"])])
    torch.manual_seed(seed)
    model = diffusers.AutoencoderKLWan(**config).eval()
    with torch.no_grad():  # RMS-norm gammas start at one; perturb them so the port must place them right
        for key, param in model.named_parameters():
            if key.endswith("gamma"):
                param.mul_(1 + 0.3 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (reference model, folder saved with diffusers' save_pretrained)."""
    out = {}
    for name in CONFIGS:
        model = _reference(name)
        folder = tmp_path_factory.mktemp(name)
        model.save_pretrained(folder)
        out[name] = (model, folder)
    return out


def _rel_err(ours, ref) -> float:
    ref = ref.detach().numpy() if hasattr(ref, "detach") else np.asarray(ref)
    return float(np.abs(np.asarray(ours, np.float64) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("name,shape", CASES, ids=[_case_id(c) for c in CASES])
def test_parity_with_diffusers(saved, name, shape):
    reference, folder = saved[name]
    vae = WanVAE.from_pretrained(folder)
    video = torch.rand(*shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        posterior = reference.encode(video).latent_dist
        decoded = reference.decode(posterior.mean).sample
    ours = vae.encode(jnp.asarray(video.numpy()))
    assert ours.mean.shape == tuple(posterior.mean.shape)
    assert _rel_err(ours.mean, posterior.mean) <= 1e-4
    assert _rel_err(ours.logvar, posterior.logvar) <= 1e-4
    video_out = vae.decode(ours.mean)
    assert video_out.shape == tuple(decoded.shape)
    assert _rel_err(video_out, decoded) <= 1e-4


def test_streaming_equals_whole_clip(saved):
    vae = WanVAE.from_pretrained(saved["wan21_shape"][1])
    video = jax.random.uniform(jax.random.key(0), (1, 3, 9, 16, 16), minval=-1, maxval=1)
    streamed, whole = vae.encode(video), vae.encode(video, streaming=False)
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=0, atol=1e-5 * float(jnp.abs(whole.mean).max()))
    np.testing.assert_allclose(streamed.logvar, whole.logvar, rtol=0, atol=1e-5 * float(jnp.abs(whole.logvar).max()))
    decoded, decoded_whole = vae.decode(streamed.mean), vae.decode(streamed.mean, streaming=False)
    assert decoded.shape == (1, 3, 9, 16, 16)
    np.testing.assert_allclose(decoded, decoded_whole, rtol=0, atol=1e-5)


def test_sharded_checkpoint_and_bfloat16(saved, tmp_path):
    reference, _ = saved["wan21_shape"]
    reference.save_pretrained(tmp_path, max_shard_size="20KB")
    assert len(list(tmp_path.glob("*.safetensors"))) > 1 and list(tmp_path.glob("*.index.json"))
    video = jax.random.uniform(jax.random.key(1), (1, 3, 5, 16, 16), minval=-1, maxval=1)
    f32 = WanVAE.from_pretrained(tmp_path).encode(video).mean
    bf16 = WanVAE.from_pretrained(tmp_path, dtype=jnp.bfloat16).encode(video).mean
    # bfloat16 compute (float32 params, norms in float32) vs float32: stated tolerance 5% of the range
    assert bf16.dtype == jnp.float32 and _rel_err(bf16, f32) < 5e-2


def test_latent_normalisation_and_posterior(saved):
    vae = WanVAE.from_pretrained(saved["early_time_z16"][1])
    z = jax.random.normal(jax.random.key(2), (1, 16, 2, 2, 3))
    mean = jnp.asarray(vae.config["latents_mean"]).reshape(1, -1, 1, 1, 1)
    std = jnp.asarray(vae.config["latents_std"]).reshape(1, -1, 1, 1, 1)
    np.testing.assert_allclose(vae.normalize_latents(z), (z - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(vae.denormalize_latents(vae.normalize_latents(z)), z, rtol=1e-5, atol=1e-6)
    posterior = vae.encode(jnp.zeros((1, 3, 5, 16, 24)))
    draws = jax.vmap(posterior.sample)(jax.random.split(jax.random.key(3), 256))
    spread = jnp.std(draws, axis=0) / jnp.exp(0.5 * posterior.logvar)
    assert float(jnp.abs(jnp.mean(spread) - 1)) < 0.05
    assert posterior.mode() is posterior.mean


def test_bad_inputs(saved, tmp_path):
    vae = WanVAE.from_pretrained(saved["wan21_shape"][1])
    with pytest.raises(UserInputError, match="1 \\+ 4k"):
        vae.encode(jnp.zeros((1, 3, 6, 16, 16)))
    with pytest.raises(UserInputError, match="multiples of 8"):
        vae.encode(jnp.zeros((1, 3, 5, 12, 16)))
    with pytest.raises(UserInputError, match="latents must be"):
        vae.decode(jnp.zeros((1, 3, 2, 2, 2)))
    with pytest.raises(UserInputError, match="config.json"):
        WanVAE.from_pretrained(tmp_path)
    # config and weights that do not belong together
    folder = saved["time2"][1]
    mismatched = tmp_path / "mismatched"
    mismatched.mkdir()
    config = json.loads((folder / "config.json").read_text())
    (mismatched / "config.json").write_text(json.dumps({**config, "num_res_blocks": 2}))
    (mismatched / "diffusion_pytorch_model.safetensors").symlink_to(folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(UserInputError, match="missing key"):
        WanVAE.from_pretrained(mismatched)
    (mismatched / "config.json").write_text(json.dumps({**config, "base_dim": 8}))
    with pytest.raises(UserInputError, match="shape"):
        WanVAE.from_pretrained(mismatched)
    (mismatched / "config.json").write_text(json.dumps({**config, "is_residual": True}))
    with pytest.raises(UserInputError, match="Wan2.1"):
        WanVAE.from_pretrained(mismatched)
