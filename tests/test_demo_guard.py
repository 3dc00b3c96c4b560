"""Regression guard for the demo's world model: a tiny model trained for a fixed budget on a few simulated
episodes must sample them back from their first frame, cleanly (`-m slow`, a few minutes on 2 cores).

It runs the demo's own pieces (codec training, demo_config, the train loop, the reference sampler with
the demo's settings), so a change anywhere in them that turns samples into noise fails here. The same
run checks that the thresholds do fail: the untrained model (training skipped), and the trained model
with a sampler that stops after 10 of its 20 steps (noise of sigma ~2 left in the latents), must both
score below them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("mujoco")

EPISODES, CODEC_STEPS, STEPS = 8, 300, 400  # 8: the batch splits over the 8 test devices
# Measured at this budget (docs/demo.md "Regression guard"): the trained model samples its 8 training
# episodes back at copy + 1.9 dB, SSIM 0.56; the untrained model at copy - 7.5 dB, SSIM 0.02. With the
# reference options of QUICK (session 28): copy + 4.4 dB, SSIM 0.72; untrained copy - 2.5 dB, SSIM 0.20. With
# QUICK's guidance on the reference frame (session 32, 1.5 at sigma >= 1): copy + 2.7 dB, SSIM 0.67; untrained
# copy - 2.7 dB, SSIM 0.23. With QUICK's log sigma ~ N(1.5, 1) (session 39): copy + 4.0 dB, SSIM 0.71.
PSNR_OVER_COPY_DB, MIN_SSIM = 1.0, 0.5


@pytest.mark.slow
def test_tiny_world_model_samples_its_training_episodes_back(tmp_path):
    from gw_jax.data.episodes import load_clips
    from gw_jax.data.sim import simulate_dataset
    from gw_jax.data.video import to_uint8
    from gw_jax.demo import rollout_from_first_frame
    from gw_jax.diffusion import sample_reference
    from gw_jax.models.text_hash import HashTextEncoder
    from gw_jax.train.codec import train_codec
    from gw_jax.train.data import ArrayBatches
    from gw_jax.train.defaults import CODEC_FOLD, CODEC_POOL, QUICK, demo_config
    from gw_jax.train.loop import build_setup, train
    from gw_jax.video_metrics import psnr, ssim

    settings = dict(QUICK, train_episodes=EPISODES, steps=STEPS, batch_size=EPISODES)
    simulate_dataset(tmp_path / "episodes", EPISODES, seed=3, frames=settings["sim_frames"],
                     height=settings["size"], width=settings["size"], fps=settings["sim_fps"], progress=False)
    text = HashTextEncoder(width=32, max_length=16)
    clips = load_clips(tmp_path / "episodes", EPISODES, settings["clip_frames"], text)
    codec, _ = train_codec(clips["video"], channels=settings["codec_channels"], pool=CODEC_POOL, fold=CODEC_FOLD,
                           steps=CODEC_STEPS, latent_noise=settings["latent_noise"],
                           error_focus=settings["error_focus"], progress=False)
    latents = np.asarray(codec.encode(jnp.asarray(clips["video"])))
    config = demo_config(settings)
    result = train(config, tmp_path / "train", progress=False,
                   batches=ArrayBatches(dict(latents=latents, text_emb=clips["text_emb"], fps=clips["fps"]), EPISODES))
    truth = to_uint8(np.asarray(codec.pooled(jnp.asarray(clips["video"])))) / 255

    def scores(params, stop_after=None):
        model = result.model_def.merge(params)
        if stop_after is None:
            sampled = rollout_from_first_frame(model, latents, clips["text_emb"], clips["fps"], jax.random.key(0),
                                               config.sample)
        else:  # a broken sampler loop: the latents after `stop_after` steps, with their noise still in them
            mask = jnp.zeros((1, 1, latents.shape[2], 1, 1)).at[:, :, 0].set(1.0)
            _, trajectory = sample_reference(
                model, jax.random.normal(jax.random.key(0), latents.shape) * config.sample.sigma_max,
                context=jnp.asarray(clips["text_emb"]), cond_latents=jnp.asarray(latents), cond_mask=mask,
                fps=jnp.asarray(clips["fps"][:1]), steps=config.sample.steps, guidance=config.sample.guidance,
                sigma_max=config.sample.sigma_max, augment_sigma=config.sample.augment_sigma)
            sampled = trajectory[stop_after - 1]
        video = to_uint8(np.asarray(codec.decode(jnp.asarray(sampled)))) / 255
        pairs = list(zip(truth, video, strict=True))
        return np.mean([psnr(t[1:], v[1:]) for t, v in pairs]), np.mean([ssim(t[1:], v[1:]) for t, v in pairs])

    copy_psnr = np.mean([psnr(t[1:], np.repeat(t[:1], len(t) - 1, axis=0)) for t in truth])
    got = scores(result.state.ema_params)
    untrained = scores(build_setup(config).init_state().params)
    half = scores(result.state.ema_params, stop_after=config.sample.steps // 2)
    for name, (p, s) in (("trained", got), ("untrained", untrained), ("trained, sampler stopped half-way", half)):
        print(f"{name}: PSNR {p:.2f} dB ({p - copy_psnr:+.2f} vs copying the first frame), SSIM {s:.3f}")

    def passes(p, s):
        return p > copy_psnr + PSNR_OVER_COPY_DB and s > MIN_SSIM

    assert passes(*got)
    assert not passes(*untrained) and not passes(*half)  # the guard can fail
