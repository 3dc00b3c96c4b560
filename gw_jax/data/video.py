"""Reading and writing mp4 clips (imageio + the ffmpeg binary shipped by imageio-ffmpeg)."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np

from gw_jax.errors import UserInputError


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Returns (frames uint8 (F, H, W, 3), fps). Raises UserInputError naming the file if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such video file")
    try:
        frames = iio.imread(path, plugin="pyav") if _has_pyav() else iio.imread(path, extension=".mp4")
        meta = iio.immeta(path, extension=".mp4") if not _has_pyav() else iio.immeta(path, plugin="pyav")
    except Exception as e:
        raise UserInputError(f"{path}: unreadable video ({type(e).__name__}: {e})") from e
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
        raise UserInputError(f"{where}: undecodable video ({type(e).__name__}: {e})") from e
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[-1] != 3:
        raise UserInputError(f"{where}: expected RGB frames (F, H, W, 3), got shape {frames.shape}")
    return frames.astype(np.uint8), fps


def write_video(path: str | Path, frames: np.ndarray, fps: float = 16.0) -> None:
    """Writes uint8 (F, H, W, 3) frames as H.264 mp4 (even sizes; quality high enough for training)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"write_video expects uint8 frames, got {frames.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=9, macro_block_size=1,
                            ffmpeg_log_level="error", pixelformat="yuv420p") as writer:
        for frame in frames:
            writer.append_data(frame)
    tmp.replace(path)  # never leave a half-written video under the real name


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True
