"""Reading and writing mp4 clips with mediapy (which the notebooks also use to show videos).

mediapy runs an ffmpeg binary: the one imageio-ffmpeg ships (so a pip-only install works), unless
``GW_JAX_FFMPEG`` names another. imageio-ffmpeg stays below 0.8: its ffmpeg 9 removed ``-vsync``, which
mediapy 1.2.7 passes when reading (google/mediapy#88); 0.7 ships ffmpeg 7.0.
Errors are one line naming the file: ffmpeg's banner is dropped, its own error lines kept
(``undecodable video (moov atom not found; Invalid data found when processing input)``).
``to_uint8`` turns the models' (B, 3, T, H, W) video in [-1, 1] into the uint8 frames written and shown.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from gw_jax.errors import UserInputError
from gw_jax.storage import LocalCopy, as_path, is_remote

QP = 12  # H.264 constant quantiser: ~38 dB PSNR on the simulator's clips, high enough for training


@functools.cache
def mediapy_with_ffmpeg():
    """mediapy set to our ffmpeg, imported on first use: it imports matplotlib (which writes a font cache under
    ~/.cache), a cost commands that never touch a video need not pay. Notebooks call it before showing videos."""
    import mediapy

    mediapy.set_ffmpeg(os.environ.get("GW_JAX_FFMPEG") or imageio_ffmpeg.get_ffmpeg_exe())
    return mediapy

_BANNER = re.compile(r"^\s*(ffmpeg version|built with|configuration:|lib\w+\s+\d|=== stderr ===|Error opening input"
                     r" file /tmp)")


def ffmpeg_reason(error: Exception) -> str:
    """One line from a mediapy/ffmpeg exception: its first line plus ffmpeg's own error lines, no banner."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    first = lines[0].split("ffmpeg version")[0].rstrip(": ") or "ffmpeg failed"  # "...header: ffmpeg version 7.0"
    # "[in#0 @ 0x55...] Error opening input: moov atom not found" -> "moov atom not found"
    details = [re.sub(r"^(\[[^\]]*\]\s*)?(Error opening input:\s*)?", "", line) for line in lines[1:]
               if not _BANNER.match(line)]
    details = [d for d in details if d and not d.startswith(("Error opening input files", "Format "))]
    unique = list(dict.fromkeys(details))[-2:]
    return f"{type(error).__name__}: {first}" + (f" ({'; '.join(unique)})" if unique else "")


def _checked(frames, where) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[-1] != 3:
        raise UserInputError(f"{where}: expected RGB frames (F, H, W, 3), got shape {frames.shape}")
    return frames.astype(np.uint8)


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Returns (frames uint8 (F, H, W, 3), fps). Raises UserInputError naming the file if unreadable."""
    path = as_path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such video file")
    if is_remote(path):
        return decode_video_bytes(path.read_bytes(), where=str(path))
    try:
        video = mediapy_with_ffmpeg().read_video(os.fspath(path))
    except Exception as e:
        raise UserInputError(f"{path}: unreadable video ({ffmpeg_reason(e)})") from e
    return _checked(video, path), float(video.metadata.fps or 0.0)


def video_files(folder: str | Path) -> list[Path]:
    """The sorted ``*.mp4`` files of a local folder to label; UserInputError if the folder or the videos are missing."""
    folder = as_path(folder)
    if not folder.is_dir():
        raise UserInputError(f"{folder}: no such video folder")
    paths = sorted(folder.glob("*.mp4"))
    if not paths:
        raise UserInputError(f"{folder}: no .mp4 videos")
    return paths


def decode_video_bytes(data: bytes, *, where: str = "video") -> tuple[np.ndarray, float]:
    """An mp4 file's bytes -> (frames uint8 (F, H, W, 3), fps); ``where`` names it in errors."""
    try:
        video = mediapy_with_ffmpeg().decompress_video(data)
    except Exception as e:
        raise UserInputError(f"{where}: undecodable video ({ffmpeg_reason(e)})") from e
    return _checked(video, where), float(video.metadata.fps or 0.0)


def to_uint8(video_bcthw) -> np.ndarray:
    """(B, 3, T, H, W) in [-1, 1] (numpy or jax) -> (B, T, H, W, 3) uint8, for writing and showing."""
    return np.clip((np.moveaxis(np.asarray(video_bcthw), 1, -1) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 16.0) -> None:
    """Writes uint8 (F, H, W, 3) frames as H.264 mp4 (yuv420p for even sizes, else yuv444p); to a
    ``gs://`` path through a local file that is uploaded once complete."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"write_video expects uint8 frames, got {frames.dtype}")
    with LocalCopy(path, suffix=".mp4") as local:
        _write_local_video(local, frames, fps)


def _write_local_video(path, frames: np.ndarray, fps: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    try:
        mediapy_with_ffmpeg().write_video(tmp, frames, fps=fps, qp=QP)
    except BaseException:  # interrupted or failed: no half-written file left behind either
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)  # never leave a half-written video under the real name
