"""Action faithfulness bookkeeping (``gw_jax.idm.faithfulness``) with a stand-in predictor, the rollouts file
(``gw_jax.data.rollouts``) and the IDM's generator-like frames (``gw_jax.idm.data.match_frames``)."""

import numpy as np
import pytest

from gw_jax.cli import main
from gw_jax.data.rollouts import ROLLOUTS_FILE, load_rollouts, save_rollouts
from gw_jax.errors import UserInputError
from gw_jax.idm.data import match_frames
from gw_jax.idm.faithfulness import faithfulness

B, T, D = 6, 5, 3
NAMES = ["a", "b", "c"]


def encode(joints_btd: np.ndarray) -> np.ndarray:
    """Videos whose pixel (0, 0, j) is joint j (joints in [0, 1]): the stand-in IDM below reads them back."""
    video = np.zeros((*joints_btd.shape[:2], 4, 4, 3), np.uint8)
    video[:, :, 0, 0, :D] = np.round(joints_btd * 255)
    return video


def read(video: np.ndarray) -> np.ndarray:
    return video[:, :, 0, 0, :D] / 255.0


def rollouts_file(path, follow_actions: bool = True):
    rng = np.random.default_rng(0)
    joints = rng.uniform(size=(B, T, D))
    joints[:, 0] = 0.5  # every episode starts from the same pose, like the simulator's
    rows = np.arange(B)
    swapped = np.roll(rows, 1)
    shown = joints[swapped] if follow_actions else joints  # what the swapped rollouts show

    def given_first(video):  # frame 0 is the given reference: here deliberately far from any joint value
        video = video.copy()
        video[:, 0, 0, 0, :D] = 255
        return video

    videos = dict(truth=given_first(encode(joints)), action=given_first(encode(joints if follow_actions else
                                                                                joints[::-1])),
                  action_swapped=given_first(encode(shown)), copy_first_frame=encode(np.repeat(joints[:, :1], T, 1)))
    save_rollouts(path, videos, joints, NAMES, dict(action=rows, action_swapped=swapped), fps=4.0)
    return load_rollouts(path), joints


def test_faithful_rollouts_score_one_and_swaps_map_to_their_driver(tmp_path):
    rollouts, _ = rollouts_file(tmp_path / ROLLOUTS_FILE)
    result = faithfulness(rollouts, read)
    r2 = result["r2"]
    assert r2["truth"] > 0.999 and r2["action"] > 0.999
    assert r2["action_swapped"] > 0.999  # scored against the episode whose actions drove it
    assert r2["action_swapped_vs_own"] < 0.5  # ... not against its own episode's joints
    assert r2["copy_first_frame"] < 0.05
    assert result["sets"]["action_swapped"]["target"] == "commanded"
    assert result["sets"]["copy_first_frame"]["target"] == "own"
    assert result["met"] is True and result["frames_scored"] == T - 1 and result["episodes"] == B
    # frame 0 (given, here set far off) is left out: scoring it would pull R² down
    assert faithfulness(rollouts, read, skip_frames=0)["r2"]["action"] < 0.9


def test_unfaithful_rollouts_fail(tmp_path):
    rollouts, _ = rollouts_file(tmp_path / ROLLOUTS_FILE, follow_actions=False)
    result = faithfulness(rollouts, read)
    assert result["r2"]["action"] < 0.5 and result["met"] is False
    assert result["r2"]["action_swapped"] < result["r2"]["action_swapped_vs_own"]


def test_bad_rollouts_files(tmp_path):
    with pytest.raises(UserInputError, match="missing"):
        load_rollouts(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserInputError, match="not a readable"):
        load_rollouts(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(UserInputError, match="not a rollouts file"):
        load_rollouts(tmp_path / "other.npz")
    joints = np.zeros((2, 3, D))
    save_rollouts(tmp_path / "short.npz", dict(action=np.zeros((2, 4, 4, 4, 3))), joints, NAMES)
    with pytest.raises(UserInputError, match="video_action is"):
        load_rollouts(tmp_path / "short.npz")
    save_rollouts(tmp_path / "driver.npz", dict(action=np.zeros((2, 3, 4, 4, 3))), joints, NAMES,
                  dict(action=np.array([0, 2])))
    with pytest.raises(UserInputError, match="driver_action"):
        load_rollouts(tmp_path / "driver.npz")


def test_cli_faithfulness_bad_run_folder_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["idm", "faithfulness", "--demo", str(missing), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no such run folder" in err and len(err.splitlines()) == 1, err
    (tmp_path / "run").mkdir()  # a folder without rollouts.npz (e.g. a demo from before it wrote them)
    assert main(["idm", "faithfulness", "--demo", str(tmp_path / "run"), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert ROLLOUTS_FILE in err and len(err.splitlines()) == 1, err


def test_match_frames_pools_and_samples_like_the_demo():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 17, 8, 8, 3), dtype=np.uint8)
    masks = rng.integers(0, 2, (2, 17, 8, 8), dtype=np.uint8)
    joints = rng.normal(size=(2, 17, D)).astype(np.float32)
    out = match_frames(dict(frames=frames, masks=masks, joints=joints, indices=np.arange(2)), pool=2, clip_frames=9)
    keep = np.arange(0, 17, 2)  # the demo's linspace(0, 16, 9)
    assert out["frames"].shape == (2, 9, 4, 4, 3) and out["frames"].dtype == np.uint8
    block = frames[1, keep[3], 2:4, 6:8].astype(np.float32).mean(axis=(0, 1))
    np.testing.assert_array_equal(out["frames"][1, 3, 1, 3], np.round(block).astype(np.uint8))
    assert out["masks"][0, 2, 0, 0] == (masks[0, keep[2], :2, :2].mean() >= 0.5)
    np.testing.assert_array_equal(out["joints"], joints[:, keep])
    with pytest.raises(UserInputError, match="--pool 3"):
        match_frames(dict(frames=frames, masks=masks, joints=joints), pool=3)
    with pytest.raises(UserInputError, match="--clip-frames 18"):
        match_frames(dict(frames=frames, masks=masks, joints=joints), clip_frames=18)
