"""IDM workflows as library calls (the ``gw-jax idm`` commands, the compare report and notebooks use them).

  summary = fit(data_dir, workdir, steps=2000, masked=True)         segmenter + IDM -> workdir (Orbax)
  metrics = evaluate(workdir, data_dir, plot="joints.png")          held-out R² / MAE (+ a plot)
  joints_ntd, masks = predict(load(workdir), frames_nthwc_uint8)    joint trajectories from frames
  written = label(videos_dir, out_dir, workdir)                     OUT/<name>.joints.npz (+ .csv)
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gw_jax.data.video import read_video, video_files
from gw_jax.errors import UserInputError
from gw_jax.idm import data as idm_data
from gw_jax.idm import train
from gw_jax.idm.train import Trained, load

__all__ = ["fit", "evaluate", "predict", "label", "load", "plot_joints"]


def _need_steps(steps: int, flag: str) -> None:
    if steps < 1:
        raise UserInputError(f"{flag} must be at least 1")


def fit(data: str | Path, workdir: str | Path, *, steps: int = 2000, seg_steps: int = 300, masked: bool = True,
        seed: int = 0, pool: int = 1, clip_frames: int | None = None, progress: bool = True) -> dict:
    """Trains (segmenter +) IDM on ``data``'s training split and saves them into ``workdir``.

    ``pool`` / ``clip_frames``: train on frames as a generator shows them (``data.match_frames``: e.g. the demo's
    codec pools 2x2 and its clips keep 9 of 17 frames); ``evaluate`` then treats episodes the same way."""
    _need_steps(steps, "--steps")
    arrays = idm_data.match_frames(idm_data.load_episodes(data), pool, clip_frames)
    if len(arrays["frames"]) < 2:
        raise UserInputError(f"{data}: need at least 2 episodes (one is held out), found {len(arrays['frames'])}")
    tr, va = idm_data.split(len(arrays["frames"]), seed=seed)
    summary = dict(train_episodes=len(tr), heldout_episodes=len(va), frames=arrays["frames"].shape[1])
    segmenter, masks = None, None
    if masked:
        _need_steps(seg_steps, "--seg-steps")
        start = time.time()
        segmenter, _ = train.train_segmenter(arrays["frames"][tr], arrays["masks"][tr], seg_steps, seed=seed,
                                             progress=progress)
        masks = train.predict_masks(segmenter, arrays["frames"])
        summary.update(segmenter_seconds=round(time.time() - start, 1),
                       segmenter_iou_heldout=train.iou(masks[va], arrays["masks"][va]))
    start = time.time()
    inputs = train.idm_inputs(arrays["frames"][tr], None if masks is None else masks[tr])
    idm, norm, losses = train.train_idm(inputs, arrays["joints"][tr], steps, seed=seed, progress=progress)
    summary.update(idm_seconds=round(time.time() - start, 1), loss_first=losses[0],
                   loss_last=float(np.mean(losses[-20:])))
    meta = dict(masked=masked, data=str(Path(data).resolve()), frame_shape=list(arrays["frames"].shape[2:]),
                joint_names=arrays["joint_names"].tolist(), heldout_episodes=arrays["indices"][va].tolist(),
                steps=steps, seg_steps=seg_steps if masked else 0, seed=seed, pool=pool, clip_frames=clip_frames,
                summary=summary)
    train.save(workdir, meta, idm, norm, segmenter)
    return summary


def _check_frames(frames: np.ndarray, meta: dict, path) -> None:
    if list(frames.shape[-3:]) != meta["frame_shape"]:
        h, w, _ = meta["frame_shape"]
        raise UserInputError(f"{path}: frames are {frames.shape[-3]}x{frames.shape[-2]}, the IDM was trained "
                             f"on {h}x{w}")


def predict(trained: Trained, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(joints (N,T,D), soft arm masks (N,T,H,W) or None) for uint8 frames (N,T,H,W,3)."""
    masks = train.predict_masks(trained.segmenter, frames) if trained.meta["masked"] else None
    return train.predict_joints(trained.idm, trained.norm, train.idm_inputs(frames, masks)), masks


def evaluate(workdir: str | Path, data: str | Path, plot: str | Path | None = None) -> dict:
    """Metrics on the held-out split when ``data`` is the training folder, else on every episode."""
    trained = load(workdir)
    meta = trained.meta
    arrays = idm_data.match_frames(idm_data.load_episodes(data), meta.get("pool", 1), meta.get("clip_frames"))
    _check_frames(arrays["frames"], meta, data)
    same = str(Path(data).resolve()) == meta["data"]
    keep = np.isin(arrays["indices"], meta["heldout_episodes"]) if same else np.ones(len(arrays["indices"]), bool)
    frames, joints = arrays["frames"][keep], arrays["joints"][keep]
    pred, masks = predict(trained, frames)
    metrics = train.joint_metrics(pred, joints, meta["joint_names"])
    metrics.update(masked=meta["masked"], episodes=arrays["indices"][keep].tolist(),
                   split="heldout" if same else "all")
    if masks is not None:
        metrics["segmenter_iou"] = train.iou(masks, arrays["masks"][keep])
    if plot:
        plot_joints(plot, {"predicted": pred[0]}, joints[0], meta["joint_names"],
                    title=f"episode {metrics['episodes'][0]} (held out)" if same else None)
        metrics["plot"] = str(plot)
    return metrics


def label(videos: str | Path, out: str | Path, workdir: str | Path) -> list[Path]:
    """Writes OUT/<name>.joints.npz (joints (T,D), joint_names, fps) and .csv for every VIDEOS/*.mp4."""
    paths, out = video_files(videos), Path(out)
    trained = load(workdir)
    names = trained.meta["joint_names"]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        frames, fps = read_video(path)
        _check_frames(frames, trained.meta, path)
        joints = predict(trained, frames[None])[0][0]
        target = out / f"{path.stem}.joints.npz"
        np.savez(target, joints=joints.astype(np.float32), joint_names=np.asarray(names), fps=fps)
        np.savetxt(out / f"{path.stem}.joints.csv", joints, delimiter=",", fmt="%.6f", header=",".join(names),
                   comments="")
        written.append(target)
    return written


def plot_joints(path: str | Path, predictions: dict[str, np.ndarray], true: np.ndarray, names, title=None) -> None:
    """One panel per joint: the true curve and each named prediction (T, D) over frames."""
    import matplotlib  # only for plots: keeps importing the package light

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.6), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
        ax.plot(true[:, j], "k-", lw=2, label="true")
        for label_, pred in predictions.items():
            ax.plot(pred[:, j], "--", lw=1.5, label=label_)
        ax.set_title(str(name), fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
