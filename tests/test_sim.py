"""MuJoCo episodes: layout, ground truth, camera matrices, determinism, errors."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mujoco")
from gw_jax.data.sim import load_episode, simulate_dataset, simulate_episode, task_success  # noqa: E402
from gw_jax.errors import UserInputError  # noqa: E402


@pytest.fixture(scope="module")
def push_episode():
    return simulate_episode(5, frames=13, height=32, width=48, task="push", fps=4)


def test_episode_ground_truth(push_episode):
    e = push_episode
    f = 13
    assert e["frames"].shape == (f, 32, 48, 3) and e["frames"].dtype == np.uint8
    assert e["joints"].shape == (f, 7) and e["actions"].shape == (f, 7) and len(e["joint_names"]) == 7
    assert e["depth"].shape == (f, 32, 48) and e["arm_mask"].shape == (f, 32, 48)
    assert np.ptp(e["joints"][:, :6], axis=0).max() > 0.3  # the arm really moves
    assert 0.01 < e["arm_mask"].mean() < 0.5
    assert np.linalg.norm(e["object_positions"][-1, 0, :2] - e["object_positions"][0, 0, :2]) > 0.02  # pushed
    assert "push" in e["prompt"]
    # arm pixels are nearer than the table behind them on average
    assert e["depth"][e["arm_mask"] == 1].mean() < e["depth"][e["arm_mask"] == 0].mean()


def test_camera_matrices_project_the_gripper_onto_the_arm_mask(push_episode):
    e = push_episode
    hits = 0
    for t in range(len(e["frames"])):
        world = np.append(e["gripper_positions"][t], 1.0)
        cam = e["extrinsics"] @ world
        assert cam[2] > 0  # in front of the camera
        u, v, _ = e["intrinsics"] @ (cam[:3] / cam[2])
        row, col = int(round(v - 0.5)), int(round(u - 0.5))
        window = e["arm_mask"][t, max(row - 2, 0):row + 3, max(col - 2, 0):col + 3]
        hits += int(window.any())
    assert hits >= len(e["frames"]) - 1


def test_dataset_layout_determinism_and_skip(tmp_path):
    out = simulate_dataset(tmp_path / "a", 2, seed=3, frames=5, height=32, width=32, progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["0.mp4", "0.npz", "0.txt", "1.mp4", "1.npz", "1.txt", "manifest.json"]
    again = simulate_episode(3 * 100003 + 1, frames=5, height=32, width=32)
    np.testing.assert_array_equal(load_episode(out, 1)["joints"], again["joints"])
    before = (out / "0.mp4").stat().st_mtime_ns
    simulate_dataset(out, 2, seed=3, frames=5, height=32, width=32, progress=False)  # complete: skipped
    assert (out / "0.mp4").stat().st_mtime_ns == before


def test_bad_size_is_a_clear_cli_error(tmp_path):
    with pytest.raises(UserInputError, match="multiples of 16"):
        simulate_dataset(tmp_path, 1, height=30, width=30)
    run = subprocess.run([sys.executable, "-m", "gw_jax.cli", "sim", "--out", str(tmp_path / "x"), "--episodes", "1",
                          "--size", "30"], capture_output=True, text=True)
    assert run.returncode == 2 and "multiples of 16" in run.stderr
    assert not (tmp_path / "x").exists()


def test_missing_gl_library_says_what_to_install(tmp_path):
    """MUJOCO_GL=osmesa without libOSMesa fails inside `import mujoco` (PyOpenGL): one line naming the packages."""
    import ctypes.util
    import os

    if ctypes.util.find_library("OSMesa"):
        pytest.skip("OSMesa is installed here")
    run = subprocess.run([sys.executable, "-m", "gw_jax.cli", "sim", "--out", str(tmp_path / "x"), "--episodes", "1",
                          "--frames", "3", "--size", "16"], capture_output=True, text=True,
                         env={**os.environ, "MUJOCO_GL": "osmesa"})
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    line = run.stderr.strip().splitlines()[-1]
    assert "apt-get install -y libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri" in line
    assert "apt-get install -y libosmesa6 and set MUJOCO_GL=osmesa" in line


def test_pick_and_place_move_the_cube_and_every_wrist_joint():
    """The scripted policy really grasps (seeded episodes; `gw-jax bench sim` gives the rates over 30 seeds),
    the success criterion tells success from failure, and the spherical wrist's roll and yaw both move."""
    pick = simulate_episode(1001, frames=33, height=32, width=32, fps=8, task="pick", render_scale=1)
    assert task_success(pick) and pick["joints"][-1, 6] > 0.01  # fingers stopped by the cube, not closed on air
    place = simulate_episode(1002, frames=33, height=32, width=32, fps=8, task="place", render_scale=1)
    assert task_success(place)
    assert not task_success(dict(place, target_xy=place["target_xy"] + 0.1))  # placed elsewhere: a failure
    dropped = place["object_positions"].copy()
    dropped[:, 0, 2] = dropped[0, 0, 2]  # never lifted: a push, not a place
    assert not task_success(dict(place, object_positions=dropped))
    for episode in (pick, place):
        assert np.ptp(episode["joints"][:, 4], axis=0) > 0.1 and np.ptp(episode["joints"][:, 5], axis=0) > 0.1


def test_default_camera_is_unchanged_and_reframes_along_its_line_of_sight():
    from gw_jax.data.sim_scene import DEFAULT_TARGET, default_camera

    camera = default_camera()  # `gw-jax sim`'s camera: docs' numbers (IDM, physics) depend on it
    np.testing.assert_array_equal(camera["pos"], [0.42, 0.55, 0.85])
    assert camera["fovy"] == 50.0
    closer = default_camera(distance=0.5, fovy=30.0)
    np.testing.assert_allclose(closer["pos"] - DEFAULT_TARGET, 0.5 * (camera["pos"] - DEFAULT_TARGET))
    np.testing.assert_allclose(closer["xyaxes"], camera["xyaxes"], atol=1e-12)  # the same direction
    moved = default_camera(target=(0.0, 0.1, 0.5))
    np.testing.assert_allclose(moved["pos"] - (0.0, 0.1, 0.5), camera["pos"] - DEFAULT_TARGET)
