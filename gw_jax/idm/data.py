"""Simulated episodes (``gw-jax sim`` output) as stacked arrays for IDM training, with a disk cache.

Decoding a hundred mp4s takes longer than a training step budget we care about, so the stacked arrays
are cached next to the episodes in ``idm_cache.npz`` and reused while no episode file is newer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gw_jax.data.sim import load_episode
from gw_jax.errors import UserInputError

CACHE_NAME = "idm_cache.npz"


def episode_indices(directory: str | Path) -> list[int]:
    """Sorted indices i with i.mp4 and i.npz in ``directory``; UserInputError if none or no folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserInputError(f"{directory}: no such data folder")
    indices = sorted(int(p.stem) for p in directory.glob("*.mp4")
                     if p.stem.isdigit() and (directory / f"{p.stem}.npz").is_file())
    if not indices:
        raise UserInputError(f"{directory}: no episodes (expected i.mp4 + i.npz from `gw-jax sim`)")
    return indices


def load_episodes(directory: str | Path, cache: bool = True) -> dict[str, np.ndarray]:
    """All episodes stacked: frames uint8 (N,T,H,W,3), masks uint8 (N,T,H,W), joints float32 (N,T,D),
    indices (N,), joint_names (D,). Episodes must share one length and size."""
    directory = Path(directory)
    indices = episode_indices(directory)
    cache_path = directory / CACHE_NAME
    newest = max(p.stat().st_mtime for p in directory.iterdir() if p.name != CACHE_NAME)
    if cache and cache_path.is_file() and cache_path.stat().st_mtime >= newest:
        with np.load(cache_path) as data:
            if data["indices"].tolist() == indices:
                return {k: data[k] for k in data.files}
    frames, masks, joints = [], [], []
    for i in indices:
        episode = load_episode(directory, i)
        if "joints" not in episode or "arm_mask" not in episode:
            raise UserInputError(f"{directory / f'{i}.npz'}: missing ground truth 'joints' / 'arm_mask'")
        if frames and episode["frames"].shape != frames[0].shape:
            raise UserInputError(f"{directory / f'{i}.mp4'}: shape {episode['frames'].shape} differs from "
                                 f"episode {indices[0]}'s {frames[0].shape}; use one --frames/--size")
        frames.append(episode["frames"])
        masks.append(episode["arm_mask"])
        joints.append(episode["joints"])
    arrays = dict(frames=np.stack(frames), masks=np.stack(masks).astype(np.uint8),
                  joints=np.stack(joints).astype(np.float32), indices=np.asarray(indices),
                  joint_names=np.asarray(episode["joint_names"]).astype(str))
    if cache:
        try:
            tmp = directory / "idm_cache.tmp.npz"
            np.savez(tmp, **arrays)
            tmp.replace(cache_path)
        except OSError:  # a read-only data folder just means no cache
            pass
    return arrays


def match_frames(arrays: dict[str, np.ndarray], pool: int = 1, clip_frames: int | None = None) -> dict:
    """Episodes as a generator shows them: every frame ``pool`` x ``pool`` average-pooled (rounded to uint8, as
    a codec with that pool decodes; masks: arm where at least half the pooled pixels were) and ``clip_frames``
    frames kept by linspace sampling (the demo's clips); joints at the same frames."""
    n, t, h, w, _ = arrays["frames"].shape
    if pool < 1 or h % pool or w % pool:
        raise UserInputError(f"--pool {pool}: must be at least 1 and divide the {h}x{w} frames")
    if clip_frames is not None and not 1 <= clip_frames <= t:
        raise UserInputError(f"--clip-frames {clip_frames}: must be in 1..{t} (the episodes' length)")
    if pool == 1 and clip_frames in (None, t):
        return arrays
    keep = np.linspace(0, t - 1, clip_frames or t).astype(int)

    def pooled(x):  # (N, T, H, W, ...) -> (N, T', H / pool, W / pool, ...), float
        x = np.asarray(x[:, keep], np.float32)
        return x.reshape(n, len(keep), h // pool, pool, w // pool, pool, *x.shape[4:]).mean(axis=(3, 5))

    return dict(arrays, frames=pooled(arrays["frames"]).round().astype(np.uint8),
                masks=(pooled(arrays["masks"]) >= 0.5).astype(np.uint8), joints=arrays["joints"][:, keep])


def split(n: int, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, held-out) positions; at least one held-out episode when n >= 2."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * val_fraction)))) if n >= 2 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def to_float(frames: np.ndarray) -> np.ndarray:
    """uint8 frames -> float32 in [0, 1]."""
    return np.asarray(frames, np.float32) / 255.0
