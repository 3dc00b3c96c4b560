"""The steps ``gw-jax demo`` and ``gw-jax causal-demo`` share: simulate, train the latent codec, account the run.

    t0, cpu0 = time.perf_counter(), cpu_seconds()
    train_dir, heldout_dir = simulate_episodes(out, settings, seed=seed, progress=progress)
    codec, losses = train_demo_codec(episode_frames(train_dir, ids), settings, out / "codec", seed=seed)
    report.update(run_accounting(timings, t0, cpu0))   # timings_s, total_s, cpu_s, load_average, devices

``settings``: the demos' sizes (``train.defaults.QUICK`` / ``FULL``, or the causal demo's ``CAUSAL``).
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import jax
import numpy as np

from gw_jax.data.sim import simulate_dataset
from gw_jax.train.codec import train_codec
from gw_jax.train.defaults import CODEC_FOLD, CODEC_POOL


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (simulation workers): load-independent cost."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def simulate_episodes(out: Path, settings: dict, *, seed: int, progress: bool) -> tuple[Path, Path]:
    """``train_episodes`` (seed ``seed``) and ``heldout_episodes`` (seed ``seed + 1``) simulated episodes of
    ``sim_frames`` frames, ``size``² pixels at ``sim_fps``, in out/episodes/train and out/episodes/heldout, seen by
    the camera ``settings["camera"]`` (``sim_scene.default_camera``'s keyword arguments; None: the simulator's own)."""
    sim = dict(frames=settings["sim_frames"], height=settings["size"], width=settings["size"],
               fps=settings["sim_fps"], progress=progress, workers=2)
    if settings.get("camera"):  # `gw-jax demo --camera workspace`; `gw-jax sim` keeps the default camera
        sim["camera"] = dict(settings["camera"])
    train_dir, heldout_dir = out / "episodes" / "train", out / "episodes" / "heldout"
    simulate_dataset(train_dir, settings["train_episodes"], seed=seed, **sim)
    simulate_dataset(heldout_dir, settings["heldout_episodes"], seed=seed + 1, **sim)
    return train_dir, heldout_dir


def train_demo_codec(frames: np.ndarray, settings: dict, directory: Path, *, seed: int, progress: bool):
    """(codec, losses): the demos' PatchVAE trained on ``frames`` (B, 3, F, H, W) in [-1, 1], saved to
    ``directory`` (the train config's ``codec_path`` loads it back)."""
    codec, losses = train_codec(frames, channels=settings["codec_channels"], pool=CODEC_POOL, fold=CODEC_FOLD,
                                steps=settings["codec_steps"], latent_noise=settings["latent_noise"],
                                error_focus=settings["error_focus"], seed=seed, progress=progress)
    codec.save(directory)
    return codec, losses


def run_accounting(timings: dict, t0: float, cpu0: float) -> dict:
    """The report's cost fields: per-stage and total wall seconds, CPU seconds, the machine's load (other work
    inflates wall time) and the devices."""
    return dict(timings_s={k: round(v, 1) for k, v in timings.items()}, total_s=round(time.perf_counter() - t0, 1),
                cpu_s=round(cpu_seconds() - cpu0, 1), load_average=[round(x, 2) for x in os.getloadavg()],
                devices=[str(d) for d in jax.devices()])
