"""ViewTransfer inputs on a simulated two-camera clip: pairs, control images, and the composition that puts
generated pixels only in the warp's holes (the engine's whole loop is in test_engine.py, slow tier)."""

from __future__ import annotations

import numpy as np
import pytest

from gw_jax.data.sim import simulate_episode
from gw_jax.data.sim_arm import ArmModel
from gw_jax.engine import viewtransfer as vt


@pytest.fixture(scope="module")
def episode():
    return simulate_episode(5, frames=4, height=32, width=32, fps=8.0, views=1)


def _novel(e):
    arm = ArmModel()
    arm_frames, arm_masks = arm.render(e["joints"], e["view_intrinsics"][0], e["view_extrinsics"][0], 32, 32)
    return vt.novel_view_pair(e["frames"], e["depth"], e["arm_mask"], e["intrinsics"], e["extrinsics"],
                              e["view_intrinsics"][0], e["view_extrinsics"][0], arm_frames, arm_masks,
                              target=e["view_frames"][0])


def test_double_projection_pair_targets_its_own_view(episode):
    e = episode
    pair = vt.double_projection_pair(e["frames"], e["depth"], e["arm_mask"], e["intrinsics"], e["extrinsics"],
                                     np.random.default_rng(0))
    assert np.array_equal(pair.target, e["frames"])
    holes = vt.holes(pair)
    assert 0.0 < holes.mean() < 0.6  # the round trip through the virtual camera leaves holes, not a blank
    control = vt.control_images(pair)
    assert control.shape == (vt.CONTROL_IMAGES, 3, 4, 32, 32) and np.abs(control).max() <= 1.0
    # where the warp covers the frame (no arm), the composite is the frame itself, up to resampling
    covered = pair.valid & ~pair.arm_mask
    err = np.abs(vt.warp_only(pair).astype(np.float64) - e["frames"])[covered]
    assert err.mean() < 12.0, err.mean()


def test_compose_fills_only_the_holes(episode):
    pair = _novel(episode)
    holes = vt.holes(pair)
    assert holes.any() and (~holes).any()
    generated = np.full((1,) + pair.background.shape, 7, np.uint8)
    out = vt.compose([pair], generated)[0]
    assert np.array_equal(out[~holes], vt.warp_only(pair)[~holes])  # warped pixels and the arm untouched
    assert (out[holes] == 7).all()
    assert np.array_equal(out[pair.arm_mask], pair.arm[pair.arm_mask])  # the arm as rendered at view B


@pytest.mark.slow  # three sampler compiles: 31-64 s on 2 cores shared with other jobs
def test_control_channels_and_generation_from_the_prior_mean():
    import jax
    from flax import nnx

    from gw_jax.diffusion import with_control
    from gw_jax.models.dit import GigaWorld0DiT

    settings = dict(size=16, clip_frames=2, sim_frames=9, sim_fps=8.0, batch_size=2, steps=1, sample_steps=1)
    config = vt.view_transfer_config(settings)
    config.model.update(dict(num_blocks=1, model_channels=32, num_heads=2))
    model = GigaWorld0DiT.from_config(config.model, rngs=nnx.Rngs(0))
    c_lat = config.model.out_channels
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, c_lat + 1, 2, 4, 4)).astype(np.float32)  # latents + reference-mask channel
    control = rng.normal(size=(2, vt.CONTROL_IMAGES * c_lat, 2, 4, 4)).astype(np.float32)
    t, emb = np.full((2, 1, 2, 1, 1), 0.5, np.float32), rng.normal(size=(2, 4, 32)).astype(np.float32)
    out = with_control(model, control)(x, t, emb, 8.0)
    np.testing.assert_array_equal(out, model(np.concatenate([x, control], axis=1), t, emb, 8.0))
    assert not np.allclose(out, with_control(model, control + 1.0)(x, t, emb, 8.0))  # the control is seen
    fps = np.full(2, 8.0, np.float32)
    first = vt.generate(model, control, emb, fps, jax.random.key(0), config.sample, chunk=2)
    again = vt.generate(model, control, emb, fps, jax.random.key(1), config.sample, chunk=2)
    np.testing.assert_array_equal(first, again)  # from the prior mean: no noise drawn
    noisy = vt.generate(model, control, emb, fps, jax.random.key(1), config.sample, chunk=2, from_noise=True)
    assert first.shape == noisy.shape == (2, c_lat, 2, 4, 4) and not np.allclose(first, noisy)
