"""``gw-jax causal-demo`` end to end at toy sizes (slow tier: it simulates, trains a codec and a DiT)."""

import json

import numpy as np
import pytest

from gw_jax.data.sim import load_episode
from gw_jax.demo_causal import run_causal_demo
from gw_jax.play import Player


@pytest.mark.slow
def test_causal_demo_runs_end_to_end_at_toy_sizes(tmp_path):
    report = run_causal_demo(tmp_path, seed=0, steps=3, progress=False, train_episodes=2, heldout_episodes=2,
                             sim_frames=25, codec_steps=5, sample_steps=2, batch_size=8)  # 8 test devices
    assert report["rollout_latent_frames"] == 13 and len(report["per_frame"]["copy first frame"]["psnr"]) == 13
    assert report["train_clips"] == 2 * (25 - 17 + 1)  # every offset of a 17-frame (9 at stride 2) window
    assert json.loads((tmp_path / "report.json").read_text())["window"] == 8
    assert (tmp_path / "psnr_per_frame.png").exists() and (tmp_path / "rollouts.png").exists()

    # the play loop on the trained run: everything it needs comes from the workdir's saved config
    episode = load_episode(tmp_path / "episodes" / "heldout", 0)
    player = Player.from_workdir(tmp_path / "train", episode["frames"][0], episode["prompt"], window=4)
    assert player.stats is not None and player.action_dim == 7
    frames = player.step(episode["actions"][1:3])
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.uint8
    assert player.step({0: 0.5}).shape == (1, 32, 32, 3)
