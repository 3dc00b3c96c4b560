"""Camera geometry (gw_jax.geometry) against the simulator's own renders, and action re-targeting.

Warping the main camera's frame into an extra camera must reproduce that camera's ground-truth render on
the pixels both see; a camera 3 cm off must not. K_t must keep the end effector's world pose.
"""

from __future__ import annotations

import numpy as np
import pytest

from gw_jax.data.sim import camera_extrinsics, mujoco_camera, simulate_episode
from gw_jax.data.sim_scene import TABLE_TOP
from gw_jax.geometry import camera, se3, warp
from gw_jax.video_metrics import psnr

pytest.importorskip("mujoco")


@pytest.fixture(scope="module")
def multiview():
    return simulate_episode(11, frames=3, height=64, width=64, fps=8.0, views=3)


def _views(e):
    for v in range(e["view_frames"].shape[0]):
        for f in range(e["frames"].shape[0]):
            yield v, f, dict(image=e["frames"][f], depth=e["depth"][f].astype(np.float64), K=e["intrinsics"],
                             E=e["extrinsics"]), dict(image=e["view_frames"][v, f],
                                                      depth=e["view_depth"][v, f].astype(np.float64),
                                                      K=e["view_intrinsics"][v], E=e["view_extrinsics"][v])


def _masked_psnr(a, b, mask) -> float:
    return psnr(a[mask][None, :, None] / 255.0, b[mask][None, :, None] / 255.0)


def test_se3_and_projection_algebra():
    rng = np.random.default_rng(0)
    pose = se3.make(se3.rotation_about(rng.normal(size=3), 0.7), rng.normal(size=3))
    np.testing.assert_allclose(se3.invert(pose) @ pose, np.eye(4), atol=1e-12)
    k = np.array([[70.0, 0, 32], [0, 70.0, 32], [0, 0, 1]])
    extrinsics = camera_extrinsics([0.42, 0.55, 0.85], np.concatenate([[1.0, 0, 0], [0, 0.6, 0.8]]))
    depth = rng.uniform(0.5, 2.0, (16, 24))
    uv, z = camera.project(camera.unproject(depth, k, extrinsics), k, extrinsics)
    np.testing.assert_allclose(uv, camera.pixel_centres(16, 24), atol=1e-5)  # float32 extrinsics
    np.testing.assert_allclose(z, depth, rtol=1e-6)
    # MuJoCo's (pos, xyaxes) back from the extrinsics; an orbit keeps looking at its pivot, without roll
    cam = mujoco_camera(extrinsics, 50.0)
    np.testing.assert_allclose(camera_extrinsics(cam["pos"], cam["xyaxes"]), extrinsics, atol=1e-6)
    pivot = camera.axis_hit(extrinsics, TABLE_TOP)
    moved = camera.orbit(extrinsics, pivot, np.deg2rad(25), np.deg2rad(-8))
    np.testing.assert_allclose(camera.project(pivot, k, moved)[0], k[:2, 2], atol=1e-6)
    assert abs(se3.invert(moved)[2, 0]) < 1e-9  # the image x axis stays horizontal
    assert np.linalg.norm(camera.centre(moved) - pivot) == pytest.approx(np.linalg.norm(camera.centre(extrinsics)
                                                                                       - pivot))


def test_forward_warp_matches_renders_on_covisible_pixels(multiview):
    """Main camera -> each extra camera, every frame: PSNR on co-visible pixels and coverage, vs a 3 cm
    camera error (measured: 22-27 dB correct, coverage ~0.999; the wrong camera loses > 4 dB)."""
    scores, wrong, coverage, depth_err = [], [], [], []
    for _, _, a, b in _views(multiview):
        seen = warp.covisible(a["depth"], a["K"], a["E"], b["depth"], b["K"], b["E"])
        assert seen.mean() > 0.4
        out = warp.forward_warp(a["image"], a["depth"], a["K"], a["E"], b["K"], b["E"])
        hit = seen & out["valid"]
        coverage.append(hit.sum() / seen.sum())
        scores.append(_masked_psnr(out["image"], b["image"], hit))
        depth_err.append(np.median(np.abs(out["depth"][hit] - b["depth"][hit]) / b["depth"][hit]))
        off = se3.make(np.eye(3), [0.03, 0.0, 0.0]) @ b["E"]
        bad = warp.forward_warp(a["image"], a["depth"], a["K"], a["E"], b["K"], off)
        wrong.append(_masked_psnr(bad["image"], b["image"], seen & bad["valid"]))
    print(f"warp PSNR {np.round(scores, 2)}, coverage {np.round(coverage, 4)}, 3 cm off {np.round(wrong, 2)}")
    assert min(scores) > 21.0 and np.mean(scores) > 23.0
    assert min(coverage) > 0.97
    assert max(depth_err) < 0.01  # warped depth = the render's depth
    assert np.mean(scores) - np.mean(wrong) > 4.0


def test_double_projection(multiview):
    e = multiview
    image, depth = e["frames"][0], e["depth"][0].astype(np.float64)
    k, extrinsics = e["intrinsics"], e["extrinsics"]
    same = warp.double_projection(image, depth, k, extrinsics, extrinsics, footprint="nearest")
    assert same["valid"].all() and np.array_equal(same["image"], image)  # identity round trip
    virtual = e["view_extrinsics"][0]
    pair = warp.double_projection(image, depth, k, extrinsics, virtual)
    holes = ~pair["valid"]
    # the holes are what the virtual camera does not see of A: those pixels are not co-visible
    seen = warp.covisible(e["view_depth"][0, 0].astype(np.float64), e["view_intrinsics"][0], virtual, depth, k,
                          extrinsics)
    assert 0.05 < holes.mean() < 0.6
    assert (holes & seen).sum() < 0.05 * holes.sum()
    assert _masked_psnr(pair["image"], image, pair["valid"]) > 25.0
    filled = warp.nearest_fill(pair["image"], pair["valid"])
    assert np.array_equal(filled[pair["valid"]], pair["image"][pair["valid"]]) and filled[holes].any()


def test_retargeting_keeps_the_end_effector_world_pose():
    from gw_jax.data.sim_arm import ArmModel

    e = simulate_episode(5, frames=9, height=16, width=16, fps=8.0, render_scale=1)
    arm = ArmModel()
    joints = e["joints"].astype(np.float64)
    world_from_ee = arm.ee_poses(joints)
    base_a = arm.world_from_base()
    base_b = se3.make(se3.rotation_about([0, 0, 1], np.deg2rad(6)), base_a[:3, 3] + [0.02, 0.03, 0.0])
    k_t = se3.retarget_ee_poses(se3.invert(base_a)[None] @ world_from_ee, base_a, base_b)
    np.testing.assert_allclose(base_b[None] @ k_t, world_from_ee, atol=1e-9)  # the algebra (issue: 1e-6)
    moved = arm.retarget(joints, base_b)
    dist, angle = se3.pose_error(arm.ee_poses(moved), world_from_ee)  # IK at the moved base, then FK
    assert dist.max() < 1e-6 and angle.max() < 1e-6
    assert np.abs(moved - joints).max() > 0.05  # the joints did have to change
    arm.set_base(base_a)
    _, masks = arm.render(joints, e["intrinsics"], e["extrinsics"], 16, 16, scale=1)
    union = (masks.astype(bool) | e["arm_mask"].astype(bool)).sum()
    assert (masks.astype(bool) & e["arm_mask"].astype(bool)).sum() / union > 0.9  # replay = the episode's arm
