"""``gw-jax idm {train,eval,label,compare}``: inverse dynamics from video, with arm masking.

  gw-jax idm train --data DIR --workdir W [--steps N] [--no-mask]   segmenter + IDM -> W/*.msgpack
  gw-jax idm eval --workdir W --data DIR [--json PATH]              held-out R² / MAE + a plot
  gw-jax idm label VIDEOS OUT --workdir W                           OUT/<name>.joints.npz (+ .csv)
  gw-jax idm compare --out DIR [--data DIR]                         masked vs unmasked report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gw_jax.errors import UserInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="train the arm segmenter and the IDM on `gw-jax sim` episodes")
    p.add_argument("--data", required=True, help="folder of i.mp4 + i.npz episodes (gw-jax sim)")
    p.add_argument("--workdir", required=True, help="where checkpoints and meta.json go")
    _training_flags(p)
    p.add_argument("--no-mask", action="store_true", help="feed raw frames (no arm masking, no segmenter)")
    p = sub.add_parser("eval", help="per-joint R² and MAE on held-out episodes, plus a plot")
    p.add_argument("--workdir", required=True)
    p.add_argument("--data", required=True, help="the training folder (its held-out split is used) or a new one")
    p.add_argument("--json", help="write the metrics here as JSON")
    p.add_argument("--plot", help="PNG of predicted vs true joints (default WORKDIR/eval_joints.png)")
    p = sub.add_parser("label", help="predict joint trajectories for every mp4 in a folder")
    p.add_argument("videos", help="folder of .mp4 videos (same frame size as the training data)")
    p.add_argument("out", help="output folder for <name>.joints.npz and <name>.joints.csv")
    p.add_argument("--workdir", required=True)
    p = sub.add_parser("compare", help="train masked and unmasked IDMs on the same data; write a report")
    p.add_argument("--out", required=True, help="work folder (data/, masked/, unmasked/, idm.md, idm_joints.png)")
    p.add_argument("--data", help="episodes to use (default: simulate OUT/data with random backgrounds)")
    p.add_argument("--episodes", type=int, default=400,
                   help="episodes to simulate when --data is not given (default 400: docs/idm.md's setting)")
    p.add_argument("--report", help="markdown report path (default OUT/idm.md; the plot goes next to it)")
    _training_flags(p)


def _training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=2000, help="IDM training steps (default 2000)")
    p.add_argument("--seg-steps", type=int, default=300, help="segmenter training steps (default 300)")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    if args.action == "train":
        summary = fit(args.data, args.workdir, steps=args.steps, seg_steps=args.seg_steps,
                      masked=not args.no_mask, seed=args.seed)
        print(json.dumps(summary, indent=1))
    elif args.action == "eval":
        metrics = evaluate(args.workdir, args.data, plot=args.plot or Path(args.workdir) / "eval_joints.png")
        text = json.dumps(metrics, indent=1)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(text + "\n")
        print(text)
    elif args.action == "label":
        written = label(args.videos, args.out, args.workdir)
        print(f"labelled {len(written)} videos into {args.out}")
    else:
        from gw_jax.idm.report import compare

        report = compare(args.out, data=args.data, episodes=args.episodes, steps=args.steps,
                         seg_steps=args.seg_steps, seed=args.seed, report=args.report)
        print(f"wrote {report}")
    return 0


def _need_steps(steps: int, flag: str) -> None:
    if steps < 1:
        raise UserInputError(f"{flag} must be at least 1")


def fit(data: str | Path, workdir: str | Path, *, steps: int = 2000, seg_steps: int = 300, masked: bool = True,
        seed: int = 0, progress: bool = True) -> dict:
    """Trains (segmenter +) IDM on ``data``'s training split and saves them into ``workdir``."""
    from gw_jax.idm import data as idm_data
    from gw_jax.idm import train

    _need_steps(steps, "--steps")
    arrays = idm_data.load_episodes(data)
    if len(arrays["frames"]) < 2:
        raise UserInputError(f"{data}: need at least 2 episodes (one is held out), found {len(arrays['frames'])}")
    tr, va = idm_data.split(len(arrays["frames"]), seed=seed)
    summary = dict(train_episodes=len(tr), heldout_episodes=len(va), frames=arrays["frames"].shape[1])
    seg_params, masks = None, None
    if masked:
        _need_steps(seg_steps, "--seg-steps")
        start = time.time()
        seg_params, _ = train.train_segmenter(arrays["frames"][tr], arrays["masks"][tr], seg_steps, seed=seed,
                                              progress=progress)
        masks = train.predict_masks(seg_params, arrays["frames"])
        summary.update(segmenter_seconds=round(time.time() - start, 1),
                       segmenter_iou_heldout=train.iou(masks[va], arrays["masks"][va]))
    start = time.time()
    inputs = train.idm_inputs(arrays["frames"][tr], None if masks is None else masks[tr])
    params, norm, losses = train.train_idm(inputs, arrays["joints"][tr], steps, seed=seed, progress=progress)
    summary.update(idm_seconds=round(time.time() - start, 1), loss_first=losses[0],
                   loss_last=float(np.mean(losses[-20:])))
    meta = dict(masked=masked, data=str(Path(data).resolve()), frame_shape=list(arrays["frames"].shape[2:]),
                joint_names=arrays["joint_names"].tolist(), heldout_episodes=arrays["indices"][va].tolist(),
                steps=steps, seg_steps=seg_steps if masked else 0, seed=seed, summary=summary)
    train.save(workdir, meta, params, norm, seg_params)
    return summary


def _check_frames(frames: np.ndarray, meta: dict, path) -> None:
    if list(frames.shape[-3:]) != meta["frame_shape"]:
        h, w, _ = meta["frame_shape"]
        raise UserInputError(f"{path}: frames are {frames.shape[-3]}x{frames.shape[-2]}, the IDM was trained "
                             f"on {h}x{w}")


def _predict(meta, params, norm, seg, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(joints (N,T,D), soft masks or None) for uint8 frames (N,T,H,W,3)."""
    from gw_jax.idm import train

    masks = train.predict_masks(seg, frames) if meta["masked"] else None
    return train.predict_joints(params, norm, train.idm_inputs(frames, masks)), masks


def evaluate(workdir: str | Path, data: str | Path, plot: str | Path | None = None) -> dict:
    """Metrics on the held-out split when ``data`` is the training folder, else on every episode."""
    from gw_jax.idm import data as idm_data
    from gw_jax.idm import train

    meta, params, norm, seg = train.load(workdir)
    arrays = idm_data.load_episodes(data)
    _check_frames(arrays["frames"], meta, data)
    same = str(Path(data).resolve()) == meta["data"]
    keep = np.isin(arrays["indices"], meta["heldout_episodes"]) if same else np.ones(len(arrays["indices"]), bool)
    frames, joints = arrays["frames"][keep], arrays["joints"][keep]
    pred, masks = _predict(meta, params, norm, seg, frames)
    metrics = train.joint_metrics(pred, joints, meta["joint_names"])
    metrics.update(masked=meta["masked"], episodes=arrays["indices"][keep].tolist(),
                   split="heldout" if same else "all")
    if masks is not None:
        metrics["segmenter_iou"] = train.iou(masks, arrays["masks"][keep])
    if plot:
        from gw_jax.idm.report import plot_joints

        plot_joints(plot, {"predicted": pred[0]}, joints[0], meta["joint_names"],
                    title=f"episode {metrics['episodes'][0]} (held out)" if same else None)
        metrics["plot"] = str(plot)
    return metrics


def label(videos: str | Path, out: str | Path, workdir: str | Path) -> list[Path]:
    """Writes OUT/<name>.joints.npz (joints (T,D), joint_names, fps) and .csv for every VIDEOS/*.mp4."""
    from gw_jax.data.video import read_video
    from gw_jax.idm import train

    videos, out = Path(videos), Path(out)
    if not videos.is_dir():
        raise UserInputError(f"{videos}: no such video folder")
    paths = sorted(videos.glob("*.mp4"))
    if not paths:
        raise UserInputError(f"{videos}: no .mp4 videos")
    meta, params, norm, seg = train.load(workdir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        frames, fps = read_video(path)
        _check_frames(frames, meta, path)
        joints = _predict(meta, params, norm, seg, frames[None])[0][0]
        target = out / f"{path.stem}.joints.npz"
        np.savez(target, joints=joints.astype(np.float32), joint_names=np.asarray(meta["joint_names"]), fps=fps)
        np.savetxt(out / f"{path.stem}.joints.csv", joints, delimiter=",", fmt="%.6f",
                   header=",".join(meta["joint_names"]), comments="")
        written.append(target)
    return written
