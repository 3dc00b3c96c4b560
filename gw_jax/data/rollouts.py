"""Generated rollouts with the joints they should show, on disk: `gw-jax demo` writes RUNDIR/rollouts.npz,
`gw-jax idm faithfulness` reads it.

    save_rollouts(path, videos={"truth": truth_bthwc, "action": action_bthwc, ...}, joints=joints_btd,
                  joint_names=names, drivers={"action": np.arange(b), "action_swapped": np.roll(np.arange(b), 1)})
    r = load_rollouts(path)    # Rollouts: r.videos[name] uint8 (B, T, H, W, 3), r.joints (B, T, D), r.drivers ...

Every video set has one row per held-out episode, at the frames the joints are given for (the clip frames).
``drivers[name][i]``: the row whose *actions* drove row i of an action-driven set, so its commanded joints are
``joints[drivers[name][i]]`` (own actions: ``i``; the swap control: another row). Sets without a driver (image
and text only, the real frames, copy-the-first-frame) are compared with their own row's joints.
"""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np

from gw_jax.errors import UserInputError
from gw_jax.storage import as_path

ROLLOUTS_FILE = "rollouts.npz"
_VIDEO, _DRIVER = "video_", "driver_"


@dataclasses.dataclass
class Rollouts:
    videos: dict[str, np.ndarray]  # name -> uint8 (B, T, H, W, 3)
    joints: np.ndarray  # (B, T, D): the simulator's joints of each row's own episode at the clip frames
    joint_names: list[str]
    drivers: dict[str, np.ndarray]  # action-driven set name -> (B,) row whose actions drove each rollout
    episodes: np.ndarray  # (B,) episode index of each row in its folder
    fps: float


def save_rollouts(path, videos: dict, joints: np.ndarray, joint_names, drivers: dict | None = None,
                  episodes=None, fps: float = 0.0) -> None:
    b = len(joints)
    arrays = {f"{_VIDEO}{k}": np.asarray(v, np.uint8) for k, v in videos.items()}
    arrays.update({f"{_DRIVER}{k}": np.asarray(v, np.int64) for k, v in (drivers or {}).items()})
    arrays.update(joints=np.asarray(joints, np.float32), joint_names=np.asarray(joint_names, str),
                  episodes=np.arange(b) if episodes is None else np.asarray(episodes), fps=np.float32(fps))
    path = as_path(path)
    with path.open("wb") as f:
        np.savez_compressed(f, **arrays)


def load_rollouts(path) -> Rollouts:
    """Reads and checks a rollouts file; UserInputError naming the file and what is wrong with it."""
    path = as_path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: missing (a `gw-jax demo` run folder has it)")
    try:
        with path.open("rb") as f, np.load(f) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserInputError(f"{path}: not a readable .npz ({e})") from None
    missing = [k for k in ("joints", "joint_names") if k not in arrays]
    videos = {k[len(_VIDEO):]: v for k, v in arrays.items() if k.startswith(_VIDEO)}
    if missing or not videos:
        raise UserInputError(f"{path}: not a rollouts file (missing {', '.join(missing) or 'video_* arrays'})")
    joints = arrays["joints"]
    if joints.ndim != 3 or len(arrays["joint_names"]) != joints.shape[-1]:
        raise UserInputError(f"{path}: joints {joints.shape} do not match {len(arrays['joint_names'])} joint names")
    for name, video in videos.items():
        if video.ndim != 5 or video.shape[:2] != joints.shape[:2] or video.shape[-1] != 3:
            raise UserInputError(f"{path}: video_{name} is {video.shape}, expected ({joints.shape[0]}, "
                                 f"{joints.shape[1]}, H, W, 3) like the joints")
    drivers = {k[len(_DRIVER):]: v for k, v in arrays.items() if k.startswith(_DRIVER)}
    for name, rows in drivers.items():
        if name not in videos or rows.shape != (len(joints),) or rows.min() < 0 or rows.max() >= len(joints):
            raise UserInputError(f"{path}: driver_{name} must give a row in 0..{len(joints) - 1} for each "
                                 f"rollout of video_{name}")
    return Rollouts(videos, joints, [str(n) for n in arrays["joint_names"]], drivers,
                    arrays.get("episodes", np.arange(len(joints))), float(arrays.get("fps", 0.0)))
