"""Episodes in the seed's layout (``i.mp4`` + ``i.txt``) -> training clips in memory, with text embeddings.

    clips = load_clips(Path("episodes"), count=32, clip_frames=9, text_encoder=encoder)
    clips["video"]  # (B, 3, T, H, W) in [-1, 1]; also "text_emb", "fps", "prompts"

Used by `gw-jax train --config.data.raw_dir=DIR` and the demo's held-out episodes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gw_jax.data.sim import load_episode


def load_clips(directory: Path, count: int, clip_frames: int, text_encoder) -> dict:
    """Episodes -> clips (B, 3, T, H, W) in [-1, 1] by the reference's linspace frame sampling."""
    videos, prompts, fps = [], [], []
    for i in range(count):
        episode = load_episode(directory, i)
        frames = episode["frames"]
        index = np.linspace(0, len(frames) - 1, clip_frames).astype(int)
        videos.append(np.moveaxis(frames[index].astype(np.float32) / 127.5 - 1.0, -1, 0))
        prompts.append(episode["prompt"])
        fps.append(float(episode["fps"]) * (clip_frames - 1) / max(len(frames) - 1, 1))
    emb, _ = text_encoder.encode(prompts)
    return dict(video=np.stack(videos), text_emb=emb, fps=np.asarray(fps, np.float32), prompts=prompts)
