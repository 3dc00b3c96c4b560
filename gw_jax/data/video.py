"""Reading and writing mp4 clips (imageio + the ffmpeg binary shipped by imageio-ffmpeg).

Errors are one line naming the file: ffmpeg's banner is dropped, its own error lines kept
(``undecodable video (moov atom not found; Invalid data found when processing input)``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np

from gw_jax.errors import UserInputError
from gw_jax.storage import LocalCopy, as_path, is_remote

# imageio-ffmpeg starts ffmpeg with preexec_fn=os.setpgrp (to keep Ctrl-C from it): Python code run between
# fork and exec in a process with JAX's threads can deadlock, and JAX warns "os.fork() was called" on every
# clip. Without preexec_fn the fork + exec happens in C; ffmpeg then shares our Ctrl-C, which is what we want.
os.environ.setdefault("IMAGEIO_FFMPEG_NO_PREVENT_SIGINT", "1")

_BANNER = re.compile(r"^\s*(ffmpeg version|built with|configuration:|lib\w+\s+\d|=== stderr ===|Error opening input"
                     r" file /tmp)")


def ffmpeg_reason(error: Exception) -> str:
    """One line from an imageio/ffmpeg exception: its first line plus ffmpeg's own error lines, no banner."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    # "[in#0 @ 0x55...] moov atom not found" -> "moov atom not found"
    details = [re.sub(r"^\[[^\]]*\]\s*", "", line) for line in lines[1:] if not _BANNER.match(line)]
    details = [d for d in details if d and not d.startswith(("Error opening input files", "Format "))]
    unique = list(dict.fromkeys(details))[-2:]
    return f"{type(error).__name__}: {lines[0]}" + (f" ({'; '.join(unique)})" if unique else "")


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Returns (frames uint8 (F, H, W, 3), fps). Raises UserInputError naming the file if unreadable."""
    path = as_path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such video file")
    if is_remote(path):
        return decode_video_bytes(path.read_bytes(), where=str(path))
    try:
        file = os.fspath(path)
        frames = iio.imread(file, plugin="pyav") if _has_pyav() else iio.imread(file, extension=".mp4")
        meta = iio.immeta(file, extension=".mp4") if not _has_pyav() else iio.immeta(file, plugin="pyav")
    except Exception as e:
        raise UserInputError(f"{path}: unreadable video ({ffmpeg_reason(e)})") from e
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[-1] != 3:
        raise UserInputError(f"{path}: expected RGB frames (F, H, W, 3), got shape {frames.shape}")
    return frames.astype(np.uint8), float(meta.get("fps", 0.0) or 0.0)


def decode_video_bytes(data: bytes, *, where: str = "video") -> tuple[np.ndarray, float]:
    """An mp4 file's bytes -> (frames uint8 (F, H, W, 3), fps); ``where`` names it in errors."""
    try:
        frames = np.asarray(iio.imread(data, extension=".mp4"))
        fps = float(iio.immeta(data, extension=".mp4").get("fps", 0.0) or 0.0)
    except Exception as e:
        raise UserInputError(f"{where}: undecodable video ({ffmpeg_reason(e)})") from e
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[-1] != 3:
        raise UserInputError(f"{where}: expected RGB frames (F, H, W, 3), got shape {frames.shape}")
    return frames.astype(np.uint8), fps


def write_video(path: str | Path, frames: np.ndarray, fps: float = 16.0) -> None:
    """Writes uint8 (F, H, W, 3) frames as H.264 mp4 (even sizes; quality high enough for training); to a
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
        with imageio.get_writer(os.fspath(tmp), fps=fps, codec="libx264", quality=9, macro_block_size=1,
                                ffmpeg_log_level="error", pixelformat="yuv420p") as writer:
            for frame in frames:
                writer.append_data(frame)
    except BaseException:  # interrupted or failed: no half-written file left behind either
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)  # never leave a half-written video under the real name


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True
