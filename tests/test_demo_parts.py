"""Pieces the demo relies on: pixel codec, video metrics, hashed text encoder, in-memory batches."""

import jax.numpy as jnp
import numpy as np
import pytest

from gw_jax.models.pixel_codec import PixelCodec
from gw_jax.models.text_hash import HashTextEncoder
from gw_jax.train.data import ArrayBatches
from gw_jax.video_metrics import psnr, ssim


def test_pixel_codec_inverts_the_pooled_video():
    video = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 3, 5, 32, 48)).astype(np.float32))
    codec = PixelCodec(pool=2, fold=4)
    latents = codec.encode(video)
    assert latents.shape == (2, 48, 5, 4, 6)
    np.testing.assert_allclose(codec.decode(latents), codec.pooled(video), atol=1e-6)


def test_metrics_match_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(3, 24, 24, 3))
    b = np.clip(a + 0.1 * rng.normal(size=a.shape), 0, 1)
    expected_ssim = np.mean([metrics.structural_similarity(a[i], b[i], channel_axis=-1, data_range=1.0,
                                                            gaussian_weights=True, sigma=1.5,
                                                            use_sample_covariance=False) for i in range(3)])
    np.testing.assert_allclose(ssim(a, b), expected_ssim, rtol=1e-6)
    expected_psnr = np.mean([metrics.peak_signal_noise_ratio(a[i], b[i], data_range=1.0) for i in range(3)])
    np.testing.assert_allclose(psnr(a, b), expected_psnr, rtol=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)
    assert psnr(a, a) == 100.0  # identical frames: capped, not infinite


def test_hash_text_encoder_zero_past_prompt_and_deterministic():
    enc = HashTextEncoder(width=8, max_length=6)
    emb, mask = enc.encode(["push the red cube", "pick up the blue cube and place it on the left"])
    assert emb.shape == (2, 6, 8) and mask.sum(1).tolist() == [4, 6]
    assert not emb[0, 4:].any()
    np.testing.assert_array_equal(emb[0, 1], emb[1, 2])  # "the" is "the"
    again, _ = HashTextEncoder(width=8, max_length=6).encode(["push the red cube"])
    np.testing.assert_array_equal(again[0], emb[0])


def test_array_batches_cover_epochs_split_processes_and_resume():
    data = {"x": np.arange(10)}
    batches = ArrayBatches(data, 4, seed=3, process_index=0, process_count=1)
    first_epoch = np.concatenate([next(batches)["x"] for _ in range(5)])[:10]
    assert sorted(first_epoch.tolist()) == list(range(10))
    state = batches.get_state()
    expected = next(batches)["x"]
    resumed = ArrayBatches(data, 4, seed=3, process_index=0, process_count=1)
    resumed.set_state(state)
    np.testing.assert_array_equal(next(resumed)["x"], expected)
    halves = [ArrayBatches(data, 4, seed=3, process_index=p, process_count=2) for p in (0, 1)]
    whole = ArrayBatches(data, 4, seed=3, process_index=0, process_count=1)
    np.testing.assert_array_equal(np.concatenate([next(h)["x"] for h in halves]), next(whole)["x"])
