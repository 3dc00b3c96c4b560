"""Action faithfulness (DreamGen-Bench style): does a video generated from commanded actions show the arm doing
what was commanded? An IDM trained on simulated frames that look like the generated ones (same pooling, same
frame sampling: ``fit(..., pool=, clip_frames=)``) reads the joints back, scored by R² / MAE per joint.

    result = faithfulness(load_rollouts(path), predict=lambda frames_bthwc: joints_btd)   # any predictor
    result = faithfulness_report(run_dir, idm_workdir, plot="faithfulness.png")           # a demo run + an IDM

``result["sets"]`` has one entry per comparison (frame 0 of every clip is the given reference frame: left out):
  truth, codec            real frames, and real frames through the codec, vs their joints: the ceilings
  action                  rollouts driven by their own episode's actions vs those (commanded) joints
  action_swapped          rollouts driven by another episode's actions vs *that* episode's joints (commanded)
  action_swapped_vs_own   the same rollouts vs their own episode's joints: low when the model follows the actions
  trained, untrained, copy_first_frame   image (+ text) rollouts and the repeated first frame vs own joints: floors
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from gw_jax.data.rollouts import ROLLOUTS_FILE, Rollouts, load_rollouts
from gw_jax.errors import UserInputError
from gw_jax.idm.pipeline import evaluate, predict
from gw_jax.idm.train import joint_metrics, load

GOAL_R2 = 0.8  # issue 17: the IDM recovers the commanded joints from action-driven rollouts
PLOTTED = ("copy_first_frame", "trained", "truth", "action_swapped", "action")  # drawn in this order
COLOURS = dict(copy_first_frame="tab:purple", trained="tab:red", truth="tab:gray", action_swapped="tab:green",
               action="tab:blue")


def faithfulness(rollouts: Rollouts, predict_joints: Callable[[np.ndarray], np.ndarray], skip_frames: int = 1
                 ) -> dict:
    """R² / MAE of ``predict_joints(video (B,T,H,W,3) uint8) -> (B,T,D)`` against each set's commanded joints
    (its driver's for an action-driven set, else its own), frames ``skip_frames``.. only. Adds "curves":
    name -> (predicted, target) arrays for plotting (not JSON)."""
    own = np.arange(len(rollouts.joints))
    sets, curves = {}, {}
    for name, video in rollouts.videos.items():
        pred = np.asarray(predict_joints(video))
        if pred.shape != rollouts.joints.shape:
            raise ValueError(f"predictor gave {pred.shape} for video_{name}, expected {rollouts.joints.shape}")
        driver = rollouts.drivers.get(name)
        targets = [(name, own if driver is None else driver, "own" if driver is None else "commanded")]
        if driver is not None and (driver != own).any():
            targets.append((f"{name}_vs_own", own, "own (not commanded)"))
        for key, rows, target in targets:
            true = rollouts.joints[rows][:, skip_frames:]
            sets[key] = dict(joint_metrics(pred[:, skip_frames:], true, rollouts.joint_names), target=target)
            curves[key] = (pred[:, skip_frames:], true)
    action_r2 = sets["action"]["r2_mean"] if "action" in sets else None
    return dict(goal_r2=GOAL_R2, met=None if action_r2 is None else action_r2 >= GOAL_R2,
                r2={k: v["r2_mean"] for k, v in sets.items()}, mae={k: v["mae_mean_rad"] for k, v in sets.items()},
                episodes=int(len(own)), frames_scored=int(rollouts.joints.shape[1] - skip_frames),
                skipped_frames=skip_frames, sets=sets, curves=curves)


def faithfulness_report(run_dir: str | Path, workdir: str | Path, plot: str | Path | None = None,
                        heldout: bool = True) -> dict:
    """``faithfulness`` of RUNDIR/rollouts.npz (`gw-jax demo`) read by the IDM in ``workdir``; with ``heldout``
    also the IDM's own held-out R² on simulated frames (``evaluate`` on its training folder, when that still
    exists). Writes the predicted-vs-commanded plot to ``plot``. JSON-ready (no "curves")."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserInputError(f"{run_dir}: no such run folder (give --demo a `gw-jax demo --out` folder)")
    rollouts = load_rollouts(run_dir / ROLLOUTS_FILE)
    trained = load(workdir)
    meta = trained.meta
    video = next(iter(rollouts.videos.values()))
    if list(video.shape[-3:]) != meta["frame_shape"] or video.shape[1] != meta["summary"]["frames"]:
        h, w, _ = meta["frame_shape"]
        raise UserInputError(
            f"{run_dir / ROLLOUTS_FILE}: rollouts are {video.shape[1]} frames of {video.shape[2]}x{video.shape[3]}, "
            f"the IDM in {workdir} was trained on {meta['summary']['frames']} frames of {h}x{w}; train it with "
            f"`gw-jax idm train --pool P --clip-frames T` to match")
    result = faithfulness(rollouts, lambda frames: predict(trained, frames)[0])
    curves = result.pop("curves")
    result.update(run=str(run_dir), idm=dict(workdir=str(workdir), masked=meta["masked"], steps=meta["steps"],
                                             pool=meta.get("pool", 1), clip_frames=meta.get("clip_frames"),
                                             train_episodes=meta["summary"]["train_episodes"]))
    if heldout and Path(meta["data"]).is_dir():
        held = evaluate(workdir, meta["data"])
        result["idm_heldout"] = dict(r2_mean=held["r2_mean"], mae_mean_rad=held["mae_mean_rad"],
                                     episodes=len(held["episodes"]), frames_scored="all")
    if plot:
        plot_faithfulness(plot, curves, result["r2"], rollouts.joint_names)
        result["plot"] = str(plot)
    return result


def plot_faithfulness(path: str | Path, curves: dict, r2: dict, names) -> None:
    """One panel per joint: IDM-predicted vs commanded joint, every scored frame of every clip, per set."""
    import matplotlib  # only for plots: keeps importing the package light

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    fig, axes = plt.subplots(-(-(len(names) + 1) // cols), cols, figsize=(3.0 * cols, 5.8), squeeze=False)
    axes = axes.ravel()
    for j, (ax, name) in enumerate(zip(axes, names, strict=False)):
        lo, hi = np.inf, -np.inf
        for key in (k for k in PLOTTED if k in curves):  # floors first, the action-driven sets on top
            pred, true = curves[key][0][..., j].ravel(), curves[key][1][..., j].ravel()
            ax.scatter(true, pred, s=7, alpha=0.65, color=COLOURS[key], label=f"{key} (R² {r2[key]:.2f})")
            lo, hi = min(lo, true.min(), pred.min()), max(hi, true.max(), pred.max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.set_title(str(name), fontsize=9)
        ax.set_xlabel("commanded (or true) joint", fontsize=8)
        ax.set_ylabel("IDM on the video", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names):]:
        ax.axis("off")
    axes[-1].legend(*axes[0].get_legend_handles_labels(), loc="center", fontsize=8, markerscale=2, frameon=False,
                    title="R²: mean over joints", title_fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
