"""Quality gates: one score per clip and gate, higher = worse; a clip is kept when every score is at most
its gate's threshold. Each gate comes with the corruption it is meant to catch, so its ROC AUC can be
measured on corrupted vs clean simulated clips (``gate_auc``).

    score = blur_score(frames_thwc_uint8)                      # visual: blur, exposure, flicker, frozen
    score = reprojection_score(frames_b, source, camera_b)     # geometric: consistency with the source view
    score = limit_score(joints_td, limits_d2)                  # physical: from IDM-predicted joints
    score = velocity_score(joints_td, fps); acceleration_score(joints_td, fps)
    score = replay_score(joints_td, masks_thw, arm, K, E)      # IDM joints re-rendered vs the video's arm
    bad = corrupt("blur", frames, rng)                          # the matching corruption
    auc = roc_auc(clean_scores, corrupted_scores)

Visual gates work on luminance (Rec. 601 weights) in [0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from gw_jax.geometry import warp

VISUAL = ("blur", "exposure", "flicker", "frozen")
PHYSICAL = ("joint_limits", "velocity", "acceleration", "replay")
GATES = VISUAL + ("reprojection",) + PHYSICAL
# The simulated robot's rated joint speed and acceleration for the physical gates (rad/s, rad/s^2; the
# gripper opening in m/s, m/s^2): 1.5x the fastest that 40 scripted episodes (33 frames at 8 fps) reach
# (measured maxima [1.9 3.5 6.7 3.9 2.5 2.8 0.67] rad/s and [13 34 82 43 10 20 7.8] rad/s^2).
VELOCITY_LIMITS = np.array([3.0, 5.0, 10.0, 6.0, 4.0, 4.0, 1.0])
ACCELERATION_LIMITS = np.array([20.0, 50.0, 120.0, 65.0, 15.0, 30.0, 12.0])


def luminance(frames) -> np.ndarray:
    f = np.asarray(frames, np.float32) / 255.0
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


# ---- visual ---------------------------------------------------------------------------------------
def blur_score(frames) -> float:
    """Lack of fine detail: -log of the median over frames of the Laplacian's variance."""
    lum = luminance(frames)
    energy = [ndimage.laplace(frame).var() for frame in lum]
    return float(-np.log(np.median(energy) + 1e-12))


def exposure_score(frames) -> float:
    """Mass of the luminance histogram in the crushed (< 0.08) or blown (> 0.92) ends, plus how far the
    mean sits from mid-grey: both grow under over- or under-exposure."""
    lum = luminance(frames)
    clipped = np.maximum((lum < 0.08).mean(), (lum > 0.92).mean())
    return float(clipped + np.abs(np.log(lum.mean() / 0.45 + 1e-6)))


def flicker_score(frames) -> float:
    """Frame-to-frame brightness jumps that motion does not explain: the largest deviation of a frame's
    mean luminance from the mean of its neighbours, relative to the clip's mean."""
    means = luminance(frames).mean(axis=(1, 2))
    if len(means) < 3:
        return 0.0
    residual = means[1:-1] - 0.5 * (means[:-2] + means[2:])
    return float(np.abs(residual).max() / (means.mean() + 1e-6))


def frozen_score(frames, still: float = 1e-4) -> float:
    """Motion that stops dead and resumes: for each run of (nearly) identical consecutive frames, the
    smaller of the motions just before and just after it; the largest over runs (0 when none). A scene that
    comes to rest at the end, or never moves, scores 0."""
    f = np.asarray(frames, np.float32) / 255.0
    motion = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))
    score, t = 0.0, 0
    while t < len(motion):
        if motion[t] > still:
            t += 1
            continue
        end = t
        while end < len(motion) and motion[end] <= still:
            end += 1
        if t > 0 and end < len(motion):
            score = max(score, float(min(motion[t - 1], motion[end])))
        t = end
    return score * 100.0


# ---- geometric ------------------------------------------------------------------------------------
def reprojection_score(frames_b, source: dict, intrinsics_b, extrinsics_b, arm_masks_b=None) -> float:
    """1 - normalised cross-correlation (luminance) between the clip and the source view warped into its
    camera, over the pixels the warp covers (arm pixels of either view excluded), averaged over frames:
    0 when the structure lines up, whatever the brightness. ``source``: frames (T,H,W,3),
    depth (T,H,W), arm_mask (T,H,W), intrinsics, extrinsics."""
    errors = []
    for t, frame in enumerate(np.asarray(frames_b)):
        out = warp.forward_warp(source["frames"][t], source["depth"][t], source["intrinsics"],
                                source["extrinsics"], intrinsics_b, extrinsics_b,
                                valid=~ndimage.binary_dilation(source["arm_mask"][t] > 0), out_hw=frame.shape[:2])
        keep = out["valid"]
        if arm_masks_b is not None:
            keep &= ~ndimage.binary_dilation(np.asarray(arm_masks_b[t]) >= 0.5)
        if keep.sum() < 16:
            errors.append(1.0)
            continue
        a, b = luminance(out["image"])[keep], luminance(frame)[keep]
        a, b = a - a.mean(), b - b.mean()
        errors.append(float(1.0 - (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-12)))
    return float(np.mean(errors))


# ---- physical -------------------------------------------------------------------------------------
def limit_score(joints, limits) -> float:
    """The largest excursion (rad) of an arm joint past its limit; negative = the closest any joint came."""
    q = np.asarray(joints, np.float64)[:, :len(limits)]
    lo, hi = np.asarray(limits)[:, 0], np.asarray(limits)[:, 1]
    return float(np.maximum(q - hi, lo - q).max())


def velocity_score(joints, fps: float, limits=VELOCITY_LIMITS) -> float:
    """Peak joint speed as a fraction of its rating (> 1: beyond what the robot can do)."""
    q = np.asarray(joints, np.float64)
    return float((np.abs(np.diff(q, axis=0)) * fps / limits[: q.shape[1]]).max())


def acceleration_score(joints, fps: float, limits=ACCELERATION_LIMITS) -> float:
    """Peak joint acceleration as a fraction of its rating."""
    q = np.asarray(joints, np.float64)
    if len(q) < 3:
        return 0.0
    return float((np.abs(np.diff(q, n=2, axis=0)) * fps ** 2 / limits[: q.shape[1]]).max())


def replay_score(joints, arm_masks, arm, intrinsics, extrinsics) -> float:
    """1 - IoU between the arm rendered at ``joints`` (MuJoCo, ``ArmModel``) from the clip's camera and the
    arm seen in the video (``arm_masks``: the segmenter's soft masks or ground truth), over the clip."""
    masks = np.asarray(arm_masks) >= 0.5
    _, rendered = arm.render(joints, intrinsics, extrinsics, masks.shape[1], masks.shape[2])
    rendered = rendered.astype(bool)
    return float(1.0 - (rendered & masks).sum() / max((rendered | masks).sum(), 1))


# ---- corruptions ----------------------------------------------------------------------------------
def corrupt(kind: str, frames, rng: np.random.Generator) -> np.ndarray:
    """The visual corruption a gate is meant to catch, applied to uint8 frames (T, H, W, 3)."""
    f = np.asarray(frames, np.float32)
    if kind == "blur":
        sigma = rng.uniform(0.8, 1.6)
        out = np.stack([ndimage.gaussian_filter(x, (sigma, sigma, 0)) for x in f])
    elif kind == "exposure":
        gain = rng.uniform(1.8, 2.6) if rng.random() < 0.5 else rng.uniform(0.25, 0.5)
        out = f * gain
    elif kind == "flicker":
        gains = 1.0 + rng.choice([-1, 1], len(f)) * rng.uniform(0.06, 0.2, len(f))
        out = f * gains[:, None, None, None]
    elif kind == "frozen":
        out = f.copy()
        start = int(rng.integers(1, max(len(f) - 4, 2)))
        hold = int(rng.integers(2, 4))
        out[start:start + hold] = f[start]
    else:
        raise ValueError(f"no visual corruption {kind!r}")
    return np.clip(out, 0, 255).round().astype(np.uint8)


def corrupt_view(frames, rng: np.random.Generator) -> np.ndarray:
    """A geometric corruption (the frames stop matching their camera): mirrored left-right, or shifted
    3-6 pixels sideways (edge pixels repeated)."""
    f = np.asarray(frames)
    if rng.random() < 0.5:
        return f[:, :, ::-1].copy()
    shift = int(rng.choice([-1, 1]) * rng.integers(3, 7))
    cols = np.clip(np.arange(f.shape[2]) - shift, 0, f.shape[2] - 1)
    return f[:, :, cols].copy()


def corrupt_arm(frames, masks, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An arm no joint configuration explains: its pixels moved 4-7 pixels (base and all), the hole
    filled from the nearest background. Returns (frames, masks) both shifted."""
    dy, dx = (rng.choice([-1, 1], 2) * rng.integers(4, 8, 2)).astype(int)
    out, out_masks = [], []
    for frame, mask in zip(np.asarray(frames), np.asarray(masks) > 0, strict=True):
        background = warp.nearest_fill(frame, ~ndimage.binary_dilation(mask))
        moved_mask = np.roll(mask, (dy, dx), axis=(0, 1))
        moved = np.roll(frame, (dy, dx), axis=(0, 1))
        out.append(np.where(moved_mask[..., None], moved, background))
        out_masks.append(moved_mask.astype(np.uint8))
    return np.stack(out), np.stack(out_masks)


def push_past_limit(joints, limits, rng: np.random.Generator, joint: int = 3) -> np.ndarray:
    """Joints driven past a limit: a smooth bump that takes ``joint`` (default the wrist pitch, the joint
    the scripted policy brings nearest its limit) 0.3-0.7 rad beyond its nearer limit mid-clip."""
    q = np.array(joints, np.float64)
    lo, hi = limits[joint]
    t = np.arange(len(q))
    centre, width = rng.uniform(0.3, 0.7) * len(q), len(q) / 4
    bump = np.exp(-0.5 * ((t - centre) / width) ** 2)
    at = q[int(np.clip(round(centre), 0, len(q) - 1)), joint]
    excess = rng.uniform(0.3, 0.7)
    if hi - at < at - lo:
        q[:, joint] += bump * (hi + excess - at)
    else:
        q[:, joint] -= bump * (at - lo + excess)
    return q


def retime(frames_or_joints, kind: str, rng: np.random.Generator, length: int) -> np.ndarray:
    """Temporal corruptions for the velocity / acceleration gates on a long clip (T >= 3 * length):
    "fast" plays it 3x too fast (every third frame); "jitter" swaps frames t and t + 2, twice, at places
    drawn in proportion to how much changes there (the motion goes back and forth); "clean" is a plain
    window of ``length`` frames at a random start."""
    x = np.asarray(frames_or_joints)
    if kind == "fast":
        start = int(rng.integers(0, len(x) - 3 * (length - 1)))
        return x[start:start + 3 * (length - 1) + 1:3]
    start = int(rng.integers(0, len(x) - length + 1))
    window = np.arange(start, start + length)
    if kind == "jitter":  # frames t and t + 2 swapped, twice, where things move: back and forth
        clip = x[window].astype(np.float64).reshape(length, -1)
        motion = np.abs(clip[3:-1] - clip[1:-3]).mean(axis=1) + 1e-12  # change over t .. t + 2, t in 1..L-4
        for t in 1 + rng.choice(len(motion), 2, replace=False, p=motion / motion.sum()):
            window[t], window[t + 2] = window[t + 2], window[t]
    elif kind != "clean":
        raise ValueError(f"no temporal corruption {kind!r}")
    return x[window]


def roc_auc(clean, corrupted) -> float:
    """P(score of a corrupted clip > score of a clean one), ties counting half (Mann-Whitney U)."""
    clean, corrupted = np.asarray(clean, np.float64), np.asarray(corrupted, np.float64)
    greater = (corrupted[:, None] > clean[None, :]).sum()
    ties = (corrupted[:, None] == clean[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(clean) * len(corrupted)))


def threshold_for(clean_scores, keep: float = 0.95, margin: float = 1.1) -> float:
    """Keep/drop threshold from clean calibration clips: ``margin`` x their ``keep`` quantile (positive
    scores; for signed ones the quantile plus ``margin - 1`` of its magnitude)."""
    q = float(np.quantile(np.asarray(clean_scores, np.float64), keep))
    return q + (margin - 1.0) * abs(q)
