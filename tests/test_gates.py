"""Data-engine gates: each scored on corrupted vs clean simulated clips (ROC AUC), on ground truth here;
the engine (`gw-jax engine`) measures the physical ones through the IDM."""

from __future__ import annotations

import numpy as np
import pytest

from gw_jax.engine import gates as G

pytest.importorskip("mujoco")
from gw_jax.data.sim import simulate_episode  # noqa: E402
from gw_jax.data.sim_arm import ArmModel  # noqa: E402

LENGTH = 10


@pytest.fixture(scope="module")
def episodes():
    return [simulate_episode(200 + i, frames=31, height=64, width=64, fps=8.0, views=1) for i in range(4)]


def _auc(clean, bad):
    auc = G.roc_auc(clean, bad)
    print(f"AUC {auc:.3f}: clean {np.round(clean, 3)} corrupted {np.round(bad, 3)}")
    return auc


def test_roc_auc():
    assert G.roc_auc([0, 1], [2, 3]) == 1.0 and G.roc_auc([2, 3], [0, 1]) == 0.0
    assert G.roc_auc([1, 1], [1, 1]) == 0.5 and G.roc_auc([0, 2], [1, 3]) == 0.75


@pytest.mark.parametrize("gate", G.VISUAL)
def test_visual_gates_separate_corrupted_clips(episodes, gate):
    score = getattr(G, f"{gate}_score")
    rng = np.random.default_rng(0)
    clean, bad = [], []
    for e in episodes:
        for video in (e["frames"], e["view_frames"][0]):
            for start in (0, 10, 20):
                clip = video[start:start + LENGTH]
                clean.append(score(clip))
                bad.append(score(G.corrupt(gate, clip, rng)))
    assert _auc(clean, bad) >= 0.95


def test_reprojection_gate(episodes):
    rng = np.random.default_rng(1)
    clean, bad = [], []
    for e in episodes:
        source = dict(frames=e["frames"], depth=e["depth"].astype(np.float32), arm_mask=e["arm_mask"],
                      intrinsics=e["intrinsics"], extrinsics=e["extrinsics"])
        for start in (0, 12):
            part = {k: (v[start:start + 6] if np.ndim(v) == 4 or k == "depth" or k == "arm_mask" else v)
                    for k, v in source.items()}
            frames, k_b, e_b = e["view_frames"][0, start:start + 6], e["view_intrinsics"][0], e["view_extrinsics"][0]
            arm_b = e["view_arm_mask"][0, start:start + 6]  # known: the arm is rendered at B
            clean.append(G.reprojection_score(frames, part, k_b, e_b, arm_b))
            bad.append(G.reprojection_score(G.corrupt_view(frames, rng), part, k_b, e_b, arm_b))
    assert _auc(clean, bad) >= 0.95


def test_physical_gates_on_true_joints(episodes):
    arm = ArmModel()
    rng = np.random.default_rng(2)
    clean = {g: [] for g in ("joint_limits", "velocity", "acceleration")}
    bad = {g: [] for g in clean}
    for e in episodes:
        for _ in range(3):
            clean["joint_limits"].append(G.limit_score(G.retime(e["joints"], "clean", rng, LENGTH), arm.limits))
            bad["joint_limits"].append(G.limit_score(G.push_past_limit(G.retime(e["joints"], "clean", rng, LENGTH),
                                                                       arm.limits, rng), arm.limits))
            clean["velocity"].append(G.velocity_score(G.retime(e["joints"], "clean", rng, LENGTH), 8.0))
            bad["velocity"].append(G.velocity_score(G.retime(e["joints"], "fast", rng, LENGTH), 8.0))
            clean["acceleration"].append(G.acceleration_score(G.retime(e["joints"], "clean", rng, LENGTH), 8.0))
            bad["acceleration"].append(G.acceleration_score(G.retime(e["joints"], "jitter", rng, LENGTH), 8.0))
    assert max(clean["joint_limits"]) < 0 < min(bad["joint_limits"])  # within limits vs past them
    assert max(clean["velocity"]) < 1.0 and max(clean["acceleration"]) < 1.0  # the policy keeps the ratings
    assert _auc(clean["velocity"], bad["velocity"]) >= 0.95
    assert _auc(clean["acceleration"], bad["acceleration"]) >= 0.85  # small sample; the engine uses more


def test_replay_gate(episodes):
    """The episode's joints re-rendered match its own arm; an arm moved bodily in the image does not."""
    arm = ArmModel()
    rng = np.random.default_rng(3)
    clean, bad = [], []
    for e in episodes:
        joints, frames, masks = e["joints"][:6], e["frames"][:6], e["arm_mask"][:6]
        clean.append(G.replay_score(joints, masks, arm, e["intrinsics"], e["extrinsics"]))
        _, moved = G.corrupt_arm(frames, masks, rng)
        bad.append(G.replay_score(joints, moved, arm, e["intrinsics"], e["extrinsics"]))
    assert max(clean) < 0.15
    assert _auc(clean, bad) == 1.0
