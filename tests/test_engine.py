"""`gw-jax engine` and `gw-jax filter`: bad inputs (fast) and the whole loop at tiny sizes (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gw_jax.cli import main


def test_filter_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["filter", str(tmp_path / "nope"), "--idm", str(tmp_path), "--thresholds", "t.json"]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "0.mp4").write_bytes(b"")
    np.savez(tmp_path / "0.npz", joints=np.zeros((2, 7)))
    assert main(["filter", str(tmp_path), "--idm", str(tmp_path), "--thresholds", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "t.json: not found" in err[0]
    (tmp_path / "t.json").write_text(json.dumps({"thresholds": {"blur": "high"}}))
    assert main(["filter", str(tmp_path), "--idm", str(tmp_path), "--thresholds", str(tmp_path / "t.json")]) == 2
    assert "must map gate names to numbers" in capsys.readouterr().err


@pytest.mark.slow  # the whole loop, tiny: 3-7.5 min on 2 cores shared with other jobs
def test_engine_runs_end_to_end(tmp_path):
    from gw_jax.data.rlds import RldsDataset
    from gw_jax.engine import gates as G
    from gw_jax.engine.pipeline import run_engine

    report = run_engine(tmp_path, seed=1, progress=False, overrides=dict(
        train_episodes=3, heldout_episodes=2, views=1, steps=20, idm_steps=10, seg_steps=5, sample_steps=4))
    for key in ("view_psnr_model", "view_psnr_warp_only", "view_psnr_model_release_sampler", "view_ssim_model"):
        assert np.isfinite(report[key])
    assert set(report["gate_auc"]) == set(G.GATES)
    assert json.loads((tmp_path / "report.json").read_text())["rlds_dir"] == report["rlds_dir"]
    gated = json.loads((tmp_path / "variants" / "gates.json").read_text())
    assert gated["total"] == 2 and all(set(e["scores"]) == set(G.GATES) for e in gated["episodes"].values())
    dataset = RldsDataset.open(Path(report["rlds_dir"]))
    episodes = list(dataset.episodes())
    assert len(episodes) == 5 + gated["kept"]  # every seed episode and the kept variants
    decoded = dataset.decode(*episodes[0])
    assert decoded["frames"].shape[1:] == (32, 32, 3) and decoded["actions"].shape[1] == 7
    assert (tmp_path / "viewtransfer.png").is_file() and (tmp_path / "gate_scores.png").is_file()
