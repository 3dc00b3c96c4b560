"""The reference clip transform: frame sampling, resize to cover, random crop, scale to [-1, 1]."""

from __future__ import annotations

import numpy as np
from PIL import Image

from gw_jax.data.video import decode_video_bytes
from gw_jax.diffusion.masks import max_ref_latents_of
from gw_jax.errors import UserInputError


def sample_frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """``linspace(0, F - 1, T)`` rounded down, as the reference samples a clip from an episode."""
    return np.linspace(0, num_available - 1, num_frames).astype(np.int64)


def resize_cover_and_crop(frames: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (T, h, w, 3) -> (T, height, width, 3): bilinear resize so both sides cover, then a random crop."""
    h, w = frames.shape[1:3]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))  # PIL sizes are (w, h)
    if size != (w, h):
        frames = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames])
    top = int(rng.integers(0, frames.shape[1] - height + 1))
    left = int(rng.integers(0, frames.shape[2] - width + 1))
    return frames[:, top:top + height, left:left + width]


def reference_frame_mask(num_frames: int, rng: np.random.Generator, *, max_ref_frames: int = 1, start: int = 1,
                         factor: int = 4) -> np.ndarray:
    """The seed's MaskGenerator for one clip: n ~ U{start..max_ref_latents} reference latents, i.e. the first
    1 + (n-1)*factor frames set to 1 (none when n = 0); (T,) float32."""
    n = int(rng.integers(start, max_ref_latents_of(max_ref_frames, factor, start) + 1))
    return (np.arange(num_frames) < (1 + (n - 1) * factor if n else 0)).astype(np.float32)


def clip_actions(actions_fa: np.ndarray, index: np.ndarray, stats: dict) -> np.ndarray:
    """The normalised action behind each sampled frame: frame e shows the result of the command issued at frame
    e - 1 (the simulator records a frame's command as the frame is captured), frame 0 takes its own; (T, A)."""
    source = np.clip(np.asarray(index) - 1, 0, len(actions_fa) - 1)
    return normalise_actions(np.asarray(actions_fa)[source], stats)


def normalise_actions(actions_fa: np.ndarray, stats) -> np.ndarray:
    """(actions - mean) / std per action dimension, with the training data's statistics (``index["actions"]``)."""
    mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
    return ((np.asarray(actions_fa, np.float32) - mean) / std).astype(np.float32)


def clip_from_record(features: dict, rng: np.random.Generator, *, num_frames: int, height: int, width: int,
                     max_text_length: int, text_width: int, max_ref_frames: int = 1, ref_start: int = 1,
                     action_stats: dict | None = None) -> dict:
    """A decoded Example -> training example: video (3, T, H, W) float32 in [-1, 1], text, fps, reference-frame
    mask (T,), ids; with ``action_stats`` (the pack's, ``index["actions"]``) also ``actions`` (T, A) normalised."""
    name = features["name"][0].decode("utf-8")
    frames, _ = decode_video_bytes(features["video"][0], where=f"episode {name}")
    if len(frames) < 2 and num_frames > 1:
        raise UserInputError(f"episode {name}: {len(frames)} frame(s), cannot sample a {num_frames}-frame clip")
    index = sample_frame_indices(len(frames), num_frames)
    clip = resize_cover_and_crop(frames[index], height, width, rng)
    video = np.moveaxis(clip.astype(np.float32) / 127.5 - 1.0, -1, 0)
    text_len = int(features["text_len"][0])
    text_emb = np.zeros((max_text_length, text_width), np.float32)  # zeros past the prompt, as the reference
    text_emb[:text_len] = np.frombuffer(features["text_emb"][0], np.float16).reshape(text_len, text_width)
    fps = float(features["fps"][0]) * (num_frames - 1) / max(len(frames) - 1, 1)  # frames were subsampled
    out = dict(video=video, text_emb=text_emb, text_mask=np.arange(max_text_length) < text_len,
               fps=np.float32(fps), episode=np.int32(features["episode"][0]),
               ref_mask=reference_frame_mask(num_frames, rng, max_ref_frames=max_ref_frames, start=ref_start))
    if "joints" in features:
        joints = np.frombuffer(features["joints"][0], np.float32).reshape(features["joints_shape"])
        out["joints"] = joints[np.minimum(index, len(joints) - 1)]
    if action_stats is not None:
        if "actions" not in features:
            raise UserInputError(f"episode {name}: no actions in its record, and the config conditions on actions")
        actions = np.frombuffer(features["actions"][0], np.float32).reshape(features["actions_shape"])
        out["actions"] = clip_actions(actions, index, action_stats)
    return out
