"""Episodes in the seed's layout (``i.mp4`` + ``i.txt``) -> training clips in memory, with text embeddings.

    clips = load_clips(Path("episodes"), count=32, clip_frames=9, text_encoder=encoder)
    clips["video"]  # (B, 3, T, H, W) in [-1, 1]; also "text_emb", "fps", "prompts"
    clips = load_clips(..., action_stats=stats)   # also "actions" (B, T, A), normalised (``stats``: ``action_stats``)
    video = episode_frames(Path("episodes"), [0, 1])  # every frame, (B, 3, F, H, W) in [-1, 1]

Used by `gw-jax train --config.data.raw_dir=DIR` and the demo's held-out episodes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gw_jax.data.pack import episodes_action_stats
from gw_jax.data.sim import load_episode
from gw_jax.data.transforms import clip_actions
from gw_jax.errors import UserInputError


def load_clips(directory: Path, count: int, clip_frames: int, text_encoder, *,
               action_stats: dict | str | None = None) -> dict:
    """Episodes -> clips (B, 3, T, H, W) in [-1, 1] by the reference's linspace frame sampling.

    ``action_stats``: normalise each clip's actions (``transforms.clip_actions``) with these statistics (the
    pack's ``index["actions"]``), or ``"own"``: with statistics of these episodes (returned as "action_stats")."""
    videos, prompts, fps, actions, indices = [], [], [], [], []
    for i in range(count):
        episode = load_episode(directory, i)
        frames = episode["frames"]
        index = np.linspace(0, len(frames) - 1, clip_frames).astype(int)
        videos.append(np.moveaxis(frames[index].astype(np.float32) / 127.5 - 1.0, -1, 0))
        prompts.append(episode["prompt"])
        fps.append(float(episode["fps"]) * (clip_frames - 1) / max(len(frames) - 1, 1))
        if action_stats is not None:
            if "actions" not in episode:
                raise UserInputError(f"{directory}/{i}.npz: no actions, and the config conditions on actions")
            actions.append(np.asarray(episode["actions"], np.float32))
            indices.append(index)
    emb, _ = text_encoder.encode(prompts)
    out = dict(video=np.stack(videos), text_emb=emb, fps=np.asarray(fps, np.float32), prompts=prompts)
    if action_stats is not None:
        if action_stats == "own":
            action_stats = episodes_action_stats(actions, [f"{directory}/{i}" for i in range(len(actions))])
        out["actions"] = np.stack([clip_actions(a, index, action_stats) for a, index in zip(actions, indices,
                                                                                             strict=True)])
        out["action_stats"] = action_stats
    return out


def episode_frames(directory: Path, episodes) -> np.ndarray:
    """Every frame of the given episodes, (B, 3, F, H, W) in [-1, 1] (the demos' codecs train on all of them)."""
    return np.stack([np.moveaxis(load_episode(directory, int(i))["frames"], -1, 0) for i in episodes]
                    ).astype(np.float32) / 127.5 - 1.0
