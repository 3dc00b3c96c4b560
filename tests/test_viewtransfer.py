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
