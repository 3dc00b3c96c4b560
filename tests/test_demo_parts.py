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


def _scene(frames=3, size=16):
    """An orange table with a red 2x2 cube at (row 8, column 4 + 2 f) in frame f."""
    video = np.empty((1, frames, size, size, 3), np.uint8)
    video[:] = (200, 140, 90)
    centres = np.array([[[8, 4 + 2 * f] for f in range(frames)]])
    for f in range(frames):
        video[0, f, 8:10, 4 + 2 * f:6 + 2 * f] = (180, 35, 30)
    return video, centres


def test_cube_visible_finds_the_cube_and_not_shadow_or_noise():
    from gw_jax.demo import cube_visible

    video, centres = _scene()
    assert cube_visible(video, centres).all()
    blank = video.copy()
    blank[0, 1:] = (200, 140, 90)  # the cube gone from frames 1, 2 ...
    blank[0, 2, 6:12, 6:12] = (90, 63, 40)  # ... and a shadow (the table's hue, darker) over frame 2's place
    assert cube_visible(blank, centres).tolist() == [[True, False, False]]
    moved = video.copy()
    moved[0, 2] = video[0, 0]  # the cube left where it was, but the simulator says it moved
    assert cube_visible(moved, centres).tolist() == [[True, True, False]]
    noise = video.copy()
    noise[0, 1:] = np.random.default_rng(0).integers(0, 256, noise[0, 1:].shape)
    assert not cube_visible(noise, centres)[0, 1:].any()


def test_cube_contrast_measures_faint_and_off_colour_cubes():
    from gw_jax.demo import cube_contrast

    video, centres = _scene()
    video[0, 1, 8:10, 6:8] = (190, 88, 60)  # frame 1: half-way between the cube's colour and the table's
    video[0, 2, 8:10, 8:10] = (60, 160, 60)  # frame 2: a green cube
    contrast = cube_contrast(video, centres)[0]
    np.testing.assert_allclose(contrast[0], [1.0, 1.0], atol=1e-6)
    assert 0.3 < contrast[1, 0] < 0.6 and contrast[1, 1] > 0.99  # half-way in RGB is 0.37 in chromaticity
    assert contrast[2, 0] > 0.5 and contrast[2, 1] < 0.5
    video[0, 1:] = (200, 140, 90)  # bare table
    np.testing.assert_allclose(cube_contrast(video, centres)[0, 1:, 0], 0.0, atol=1e-6)


def test_cube_moved_tells_a_carried_cube_from_one_left_behind():
    from gw_jax.demo import cube_moved

    video, centres = _scene(frames=4)  # shifted 0, 2, 4, 6 pixels: frames 2 and 3 count as moved
    assert cube_moved(video, centres) == (1.0, 0.0, 2)
    left = video.copy()
    left[0, 2:] = video[0, 0]  # the cube stays where it was
    assert cube_moved(left, centres) == (0.0, 1.0, 2)
    both = video.copy()
    both[0, 2:, 8:10, 4:6] = (180, 35, 30)  # drawn at the gripper and left behind as well
    assert cube_moved(both, centres) == (1.0, 1.0, 2)
    at_rest = np.repeat(centres[:, :1], 4, axis=1)
    at_place, left_behind, frames = cube_moved(video, at_rest)
    assert (at_place, left_behind, frames) == (None, None, 0)  # null in report.json, not NaN


@pytest.mark.parametrize("moved_frames,action", [(0, False), (51, False), (51, True)])
def test_demo_summary_prints_the_moved_cube_or_says_none_moved(monkeypatch, capsys, tmp_path, moved_frames, action):
    import argparse
    import json

    from gw_jax import demo
    from gw_jax.demo import cube_moved

    video, centres = _scene(frames=4)
    share = cube_moved(video, centres if moved_frames else np.repeat(centres[:, :1], 4, axis=1))[0]
    names = ("trained", "untrained", "copy_first_frame", "codec") + (("action", "action_swapped") if action else ())
    report = dict(heldout_episodes=16, total_s=1.0, cpu_s=1.0, cube_moved_frames=moved_frames,
                  **{f"{metric}_{name}": 0.5 for metric in ("psnr", "ssim", "fvd", "cube_visible") for name in names},
                  **{f"cube_{kind}_{name}": share for kind in ("moved_at_place", "left_behind") for name in names})
    json.dumps(report, allow_nan=False)  # report.json stays strict JSON either way
    monkeypatch.setattr(demo, "run_demo", lambda *args, **kwargs: report)
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert demo.run(parser.parse_args(["--out", str(tmp_path)])) == 0
    printed = capsys.readouterr().out
    driven = ", action 0.50" if action else ""
    assert f"cube visible (share of generated frames): trained 0.50{driven}  (codec 0.50" in printed
    assert ("driven by the episode's actions: PSNR 0.50 dB" in printed) == action
    if moved_frames:
        driven = ", action 1.00" if action else ""  # every moved-cube score is `share` here
        assert (f"the moved cube (51 generated frames where the simulator moved it): at its place trained 1.00"
                f"{driven} (codec 1.00); left where it was trained 1.00{driven}\n") in printed
    else:
        assert "the simulator moved no held-out cube" in printed


def test_cube_pixels_project_the_simulators_cube(tmp_path):
    from gw_jax.demo import cube_pixels

    positions = np.array([[[0.0, 0.0, 1.0]], [[0.1, 0.0, 1.0]], [[0.1, -0.2, 1.0]]])  # camera frame = world here
    np.savez(tmp_path / "0.npz", joints=np.zeros((3, 7)), object_positions=positions, extrinsics=np.eye(4),
             intrinsics=np.array([[64.0, 0, 32], [0, 64, 32], [0, 0, 1]]))  # a 64x64 camera
    # u = 64 x + 32, v = 64 y + 32 at 64x64: halved for 32x32 frames, (row, column), clipped 1 from the edge
    assert cube_pixels(tmp_path, [0], 3, 32).tolist() == [[[16, 16], [16, 19], [9, 19]]]



def _cube_pixel_count(frame: np.ndarray, colour) -> int:
    """Pixels of ``frame`` (H, W, 3) whose chromaticity is the cube's (shading changes brightness, not hue)."""
    chroma = frame / (frame.sum(-1, keepdims=True) + 1e-6)
    return int((np.linalg.norm(chroma - np.asarray(colour) / sum(colour), axis=-1) < 0.08).sum())


def test_demo_camera_reaches_the_simulator_and_cube_pixels_follow_it(tmp_path):
    pytest.importorskip("mujoco")
    from gw_jax.data.sim import load_episode
    from gw_jax.data.sim_scene import COLOURS
    from gw_jax.demo import cube_pixels
    from gw_jax.demo_steps import simulate_episodes
    from gw_jax.train.defaults import DEMO_CAMERAS, QUICK

    workspace = dict(QUICK, camera=DEMO_CAMERAS["workspace"])  # `gw-jax demo --camera workspace`

    def episode(settings, name):
        train_dir, _ = simulate_episodes(tmp_path / name, dict(settings, train_episodes=1, heldout_episodes=1,
                                                               sim_frames=5), seed=0, progress=False)
        return train_dir, load_episode(train_dir, 0)

    framed_dir, framed = episode(workspace, "framed")
    _, default = episode(dict(QUICK, camera=DEMO_CAMERAS["default"]), "default")
    focal = 0.5 * QUICK["size"] / np.tan(np.deg2rad(workspace["camera"]["fovy"]) / 2)
    assert framed["intrinsics"][1, 1] == pytest.approx(focal)  # the demo's fovy, not the default camera's 50
    assert default["intrinsics"][1, 1] == pytest.approx(0.5 * QUICK["size"] / np.tan(np.deg2rad(25.0)))
    np.testing.assert_array_equal(framed["object_positions"], default["object_positions"])  # the same episode
    colour = next(c for name, c in COLOURS.items() if name in framed["prompt"])
    # at 64x64 the cube covers ~4x as many pixels (~4-5 px wide at the demo's 32x32 instead of ~2)
    assert _cube_pixel_count(framed["frames"][0], colour) > 3 * _cube_pixel_count(default["frames"][0], colour)
    # cube_pixels reads the recorded camera: the cube's colour at its projected centre in the (pooled) frames
    pooled = framed["frames"].reshape(5, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    centres = cube_pixels(framed_dir, [0], 5, 32)[0]
    counts = [_cube_pixel_count(pooled[f, r - 1:r + 2, c - 1:c + 2], colour) for f, (r, c) in enumerate(centres)]
    assert sum(n >= 4 for n in counts) >= 4, counts  # (the closing fingers may hide the grasped cube in one)
