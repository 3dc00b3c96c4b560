"""Scoring episodes with every gate, and keep/drop (``gw-jax filter``; the engine gates its variants so).

    idm = gw_jax.idm.pipeline.load(workdir)
    scores = score_episode(episode, idm, arm)            # {gate: score}; reprojection only with source_* fields
    result = filter_folder(folder, idm_workdir, thresholds)   # writes FOLDER/gates.json

An episode is the simulator's layout (``load_episode``): frames, fps, intrinsics, extrinsics, and for a
generated view its source: ``source_frames``, ``source_depth``, ``source_arm_mask``, ``source_intrinsics``,
``source_extrinsics`` (what the geometric gate compares against).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gw_jax.data.sim import load_episode
from gw_jax.data.sim_arm import ArmModel
from gw_jax.engine import gates as G
from gw_jax.errors import UserInputError, load_json
from gw_jax.idm import pipeline as idm_pipeline

PHYSICAL_THRESHOLDS = {"joint_limits": 0.0, "velocity": 1.0, "acceleration": 1.0}  # the robot's ratings


def visual_scores(frames) -> dict:
    return {g: getattr(G, f"{g}_score")(frames) for g in G.VISUAL}


def physical_scores(joints, masks, fps: float, arm: ArmModel, intrinsics, extrinsics) -> dict:
    return {"joint_limits": G.limit_score(joints, arm.limits), "velocity": G.velocity_score(joints, fps),
            "acceleration": G.acceleration_score(joints, fps),
            "replay": G.replay_score(joints, masks, arm, intrinsics, extrinsics)}


def score_episode(episode: dict, idm, arm: ArmModel, labels=None) -> tuple[dict, np.ndarray]:
    """({gate: score}, IDM joints (T, D)). ``labels``: (joints, masks) already predicted for this clip."""
    frames = episode["frames"]
    joints, masks = labels if labels is not None else (x[0] for x in idm_pipeline.predict(idm, frames[None]))
    scores = visual_scores(frames)
    scores.update(physical_scores(joints, masks, float(episode["fps"]), arm, episode["intrinsics"],
                                  episode["extrinsics"]))
    if "source_frames" in episode:
        source = {k: episode[f"source_{k}"] for k in ("frames", "depth", "arm_mask", "intrinsics", "extrinsics")}
        scores["reprojection"] = G.reprojection_score(frames, source, episode["intrinsics"], episode["extrinsics"],
                                                      masks)
    return scores, joints


def decide(scores: dict, thresholds: dict) -> tuple[bool, list[str]]:
    """(keep, the gates it fails): a gate fails when its score is above its threshold."""
    failed = [g for g, s in scores.items() if g in thresholds and s > thresholds[g]]
    return not failed, failed


def filter_folder(folder: str | Path, idm_workdir: str | Path, thresholds_path: str | Path,
                  progress: bool = True) -> dict:
    """Scores every episode (i.mp4 + i.npz) in ``folder``; writes FOLDER/gates.json with each episode's
    scores, keep/drop and failed gates, and returns it."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    if not folder.is_dir():
        raise UserInputError(f"{folder}: no such folder")
    indices = sorted(int(p.stem) for p in folder.glob("*.mp4") if p.stem.isdigit() and p.with_suffix(".npz").is_file())
    if not indices:
        raise UserInputError(f"{folder}: no episodes (i.mp4 + i.npz)")
    thresholds = load_json(thresholds_path, what="gate thresholds (the engine's gates.json)")
    thresholds = thresholds.get("thresholds", thresholds)
    if not isinstance(thresholds, dict) or not all(isinstance(v, (int, float)) for v in thresholds.values()):
        raise UserInputError(f"{thresholds_path}: 'thresholds' must map gate names to numbers")
    idm, arm = idm_pipeline.load(idm_workdir), ArmModel()
    episodes = {}
    for i in tqdm(indices, desc="filter", disable=not progress):
        episode = load_episode(folder, i)
        for key in ("intrinsics", "extrinsics"):
            if key not in episode:
                raise UserInputError(f"{folder / f'{i}.npz'}: missing '{key}' (the camera the replay gate renders)")
        scores, _ = score_episode(episode, idm, arm)
        keep, failed = decide(scores, thresholds)
        episodes[str(i)] = dict(scores=scores, keep=keep, failed=failed)
    result = dict(thresholds=thresholds, episodes=episodes, kept=sum(e["keep"] for e in episodes.values()),
                  total=len(episodes))
    (folder / "gates.json").write_text(json.dumps(result, indent=1))
    return result
