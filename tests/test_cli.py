"""The console script end to end at tiny sizes: sim -> train (from raw episodes) -> resume -> sample."""

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mujoco")


def gw_jax(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "gw_jax.cli", *map(str, args)], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def _demo_codec(episodes, out):
    """configs/demo.py diffuses in a trained PatchVAE's latents: the untrained one (its PCA start) will do."""
    from gw_jax.data.sim import load_episode
    from gw_jax.train.codec import train_codec

    video = np.stack([np.moveaxis(load_episode(episodes, i)["frames"][:5], -1, 0) for i in range(2)])
    codec, _ = train_codec(video.astype(np.float32) / 127.5 - 1, channels=16, steps=0, progress=False)
    codec.save(out)
    return "--config.codec.path=" + str(out)


def test_sim_train_resume_sample(tmp_path):
    episodes, workdir = tmp_path / "episodes", tmp_path / "run"
    gw_jax("sim", "--out", episodes, "--episodes", 4, "--frames", 9, "--size", 32)
    overrides = [_demo_codec(episodes, tmp_path / "codec"),
                 "--config.data.raw_dir=" + str(episodes), "--config.data.height=32", "--config.data.width=32",
                 "--config.data.num_frames=5", "--config.train.global_batch_size=8", "--config.train.num_steps=4",
                 "--config.train.log_every=1", "--config.train.checkpoint_every=2", "--config.model.num_blocks=1"]
    gw_jax("train", "--config", "configs/demo.py", "--workdir", workdir, "--max-steps", 2, "--no-progress", *overrides)
    second = gw_jax("train", "--config", "configs/demo.py", "--workdir", workdir, "--no-progress", *overrides)
    assert "done: step 4" in second.stdout
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]

    from PIL import Image

    Image.fromarray(np.full((40, 50, 3), 120, np.uint8)).save(tmp_path / "first.png")
    out = tmp_path / "video.mp4"
    # configs/demo.py conditions on actions: the simulator's, one row of 7 per generated frame
    np.save(tmp_path / "actions.npy", np.load(episodes / "0.npz")["actions"][:5])
    sample = ["sample", "--workdir", workdir, "--image", tmp_path / "first.png", "--prompt", "push the red cube",
              "--frames", 5, "--steps", 3, "--out", out]
    gw_jax(*sample, "--actions", tmp_path / "actions.npy", "--action-guidance", 1.0)
    from gw_jax.data.video import read_video

    frames, _ = read_video(out)
    assert frames.shape == (5, 16, 16, 3)
    np.save(tmp_path / "short.npy", np.zeros((4, 7), np.float32))
    bad = gw_jax(*sample, "--actions", tmp_path / "short.npy", check=False)
    assert bad.returncode == 2 and "--actions: shape (4, 7), expected (5, 7)" in bad.stderr.strip().splitlines()[-1]


def test_sim_pack_verify_train_from_packed_records(tmp_path):
    """The data engine path: episodes -> TFRecords -> Grain loader -> codec inside the train step."""
    episodes, packed, workdir = tmp_path / "episodes", tmp_path / "packed", tmp_path / "run"
    gw_jax("sim", "--out", episodes, "--episodes", 8, "--frames", 9, "--size", 32)
    gw_jax("pack", episodes, packed, "--text-encoder", "hash", "--shards", 2)
    assert "intact" in gw_jax("verify", packed).stdout
    overrides = [_demo_codec(episodes, tmp_path / "codec"), "--config.data.packed_dir=" + str(packed),
                 "--config.latents=vae", "--config.data.height=32", "--config.data.width=32",
                 "--config.data.num_frames=5", "--config.train.global_batch_size=8",
                 "--config.train.num_steps=4", "--config.train.checkpoint_every=2", "--config.model.num_blocks=1"]
    gw_jax("train", "--config", "configs/demo.py", "--workdir", workdir, "--max-steps", 2, "--no-progress", *overrides)
    resumed = gw_jax("train", "--config", "configs/demo.py", "--workdir", workdir, "--no-progress", *overrides)
    assert "done: step 4" in resumed.stdout


def test_cli_errors_are_one_line_and_exit_2(tmp_path):
    bad = gw_jax("train", "--config", tmp_path / "nope.py", "--workdir", tmp_path, check=False)
    assert bad.returncode == 2 and "config file not found" in bad.stderr
    override = gw_jax("train", "--config", "configs/tiny.py", "--workdir", tmp_path, "--config.model.nope=1",
                      check=False)
    assert override.returncode == 2 and "model.nope" in override.stderr
    sample = gw_jax("sample", "--workdir", tmp_path / "empty", "--image", "x.png", "--prompt", "p", "--out", "o.mp4",
                    check=False)
    assert sample.returncode == 2 and "no checkpoints" in sample.stderr
    assert gw_jax("nonsense", check=False).returncode == 2
    for command in ("demo", "sim", "pack", "verify", "train", "sample", "generate", "export", "bench", "compile", "idm",
                    "sysid"):
        assert gw_jax(command, "--help").stdout.startswith(f"usage: gw-jax {command}")
    batch = gw_jax("train", "--config", "configs/demo.py", "--workdir", tmp_path / "w", "--config.data.raw_dir=/nope",
                   "--config.train.global_batch_size=3", check=False)
    assert batch.returncode == 2 and "global_batch_size=3" in batch.stderr
