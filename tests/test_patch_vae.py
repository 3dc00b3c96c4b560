"""The demo's learned latent codec: PCA start, training, normalisation, files."""

import jax.numpy as jnp
import numpy as np
import pytest

from gw_jax.models.patch_vae import PatchVAE
from gw_jax.train.codec import principal_directions, train_codec


def _video(seed=0, b=3, t=3, size=16):
    """Smooth random colour fields: low-rank enough that a few principal directions carry them."""
    rng = np.random.default_rng(seed)
    ys, xs = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    basis = np.stack([np.ones_like(xs), xs, ys, xs * ys])  # (4, H, W)
    coeffs = rng.normal(scale=0.3, size=(b, 3, t, 4))
    return np.clip(np.einsum("bctk,khw->bcthw", coeffs, basis), -1, 1).astype(np.float32)


def test_untrained_codec_is_the_principal_component_autoencoder():
    video = _video()
    codec, _ = train_codec(video, channels=5, pool=1, fold=4, width=8, steps=0, progress=False)
    patches = np.asarray(codec.patches(jnp.asarray(video))).reshape(-1, 48)
    mean, comps, _ = principal_directions(patches, 5)
    expected = (patches - mean) @ comps.T @ comps + mean  # PCA reconstruction of every patch
    got = np.asarray(codec.patches(codec.decode(codec.encode(jnp.asarray(video))))).reshape(-1, 48)
    np.testing.assert_allclose(got, np.clip(expected, -1, 1), atol=1e-4)
    z = np.asarray(codec.encode(jnp.asarray(video)))
    assert z.shape == (3, 5, 3, 4, 4)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3, 4)), 0, atol=1e-4)  # per-channel mean removed
    assert np.sqrt(np.mean(z ** 2)) == pytest.approx(1.0, rel=1e-3)  # one shared scale


def test_training_lowers_the_noisy_reconstruction_error_and_files_round_trip(tmp_path):
    video = _video(seed=1, b=4, t=4)
    codec, losses = train_codec(video, channels=3, pool=1, fold=4, width=8, steps=60, batch_frames=8,
                                learning_rate=3e-3, progress=False)
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])
    codec.save(tmp_path / "codec")
    again = PatchVAE.load(tmp_path / "codec")
    z = codec.encode(jnp.asarray(video))
    np.testing.assert_allclose(again.encode(jnp.asarray(video)), z, atol=1e-6)
    np.testing.assert_allclose(again.decode(z), codec.decode(z), atol=1e-6)


def test_load_names_a_missing_folder(tmp_path):
    from gw_jax.errors import UserInputError

    with pytest.raises(UserInputError, match="not a PatchVAE folder"):
        PatchVAE.load(tmp_path / "nope")
