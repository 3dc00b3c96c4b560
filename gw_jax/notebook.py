"""What the ``colab/`` notebooks share: smoke mode, the runtime, sizes per runtime, and small plots.

    from gw_jax import notebook
    notebook.runtime()        # "smoke" (GW_JAX_SMOKE=1: CI's headless run), "tpu", "gpu" or "cpu"
    sizes = notebook.pick(smoke=dict(steps=3), cpu=dict(steps=300), gpu=dict(steps=3000))   # tpu: gpu's if not given
    notebook.loss_figure("runs/quickstart/train")

Smoke mode is for CI: tiny sizes, no network (a release-layout folder from :func:`gw_jax.testing.release_folder`
instead of the hub). Notebooks keep their logic in the library; this module only picks sizes and draws.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from gw_jax.data.video import mediapy_with_ffmpeg

SMOKE_ENV = "GW_JAX_SMOKE"
mediapy_with_ffmpeg()  # mediapy.show_video(s) in the notebooks encodes with the ffmpeg that pip installed


def smoke() -> bool:
    return os.environ.get(SMOKE_ENV, "") not in ("", "0")


def runtime() -> str:
    """"smoke" under GW_JAX_SMOKE=1, else the accelerator JAX sees: "tpu", "gpu" or "cpu"."""
    if smoke():
        return "smoke"
    backend = jax.default_backend()
    return {"cuda": "gpu", "rocm": "gpu"}.get(backend, backend if backend in ("tpu", "gpu") else "cpu")


def pick(*, smoke: dict, cpu: dict, gpu: dict | None = None, tpu: dict | None = None) -> dict:
    """The sizes for this runtime (a GPU without its own entry uses cpu's; a TPU uses gpu's when not given)."""
    gpu = cpu if gpu is None else gpu
    choice = {"smoke": smoke, "cpu": cpu, "gpu": gpu, "tpu": gpu if tpu is None else tpu}[runtime()]
    print(f"runtime: {runtime()} ({len(jax.devices())} x {jax.devices()[0].device_kind}); sizes: {choice}")
    return dict(choice)


def loss_figure(workdir: str | Path, key: str = "loss", title: str | None = None):
    """A matplotlib figure of ``key`` over steps from a training workdir's metrics (log scale)."""
    import matplotlib.pyplot as plt

    from gw_jax.train.metrics import read_metrics

    rows = [m for m in read_metrics(workdir) if key in m]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot([m["step"] for m in rows], [m[key] for m in rows], marker="." if len(rows) < 30 else None)
    ax.set(xlabel="step", ylabel=key, yscale="log", title=title or f"{key} ({Path(workdir).name})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def to_uint8(video_cthw) -> np.ndarray:
    """float (3, T, H, W) in [-1, 1] (what the pipelines return) -> uint8 (T, H, W, 3) for mediapy."""
    return np.clip((np.moveaxis(np.asarray(video_cthw), 0, -1) + 1) * 127.5, 0, 255).round().astype(np.uint8)


def bench_figure(report: dict):
    """Bars of forward and train-step seconds per implementation from a ``gw-jax bench dit --json`` report."""
    import matplotlib.pyplot as plt

    rows = {name: r for name, r in report["rows"].items() if "forward_s" in r}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, key, label in zip(axes, ("forward_s", "train_step_s"), ("forward", "train step (fwd + bwd + AdamW)"),
                              strict=True):
        names = [f"{n}\n({r.get('device', '?')})" for n, r in rows.items()]
        bars = ax.bar(names, [r[key] for r in rows.values()], color=["tab:blue"] + ["tab:orange"] * (len(rows) - 1))
        ax.bar_label(bars, fmt="%.4f")
        ax.set(ylabel="seconds (median)", title=f"{label}, preset {report['preset']}")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


from gw_jax.play import Player  # noqa: E402  (the notebooks' play loop: actions in, next frames out)

__all__ = ["Player", "bench_figure", "loss_figure", "pick", "runtime", "smoke", "to_uint8"]
