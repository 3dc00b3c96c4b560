"""Masked-vs-unmasked IDM comparison: trains both on the same episodes, evaluates on the same held-out
ones and writes a markdown report with a plot (``gw-jax idm compare --out DIR``)."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from gw_jax.data.sim import simulate_dataset
from gw_jax.idm import data as idm_data
from gw_jax.idm.pipeline import evaluate, fit, load, plot_joints, predict


def compare(out: str | Path, *, data=None, episodes: int = 400, steps: int = 2000, seg_steps: int = 300,
            seed: int = 0, report=None) -> Path:
    """Trains masked and unmasked IDMs on ``data`` (simulated into OUT/data if None); returns the report path."""
    out = Path(out)
    if data is None:
        data = simulate_dataset(out / "data", episodes, seed=seed, frames=17, height=64, width=64, fps=8.0,
                                random_background=True, distractors=2, workers=2)
    for name, masked in (("masked", True), ("unmasked", False)):
        fit(data, out / name, steps=steps, seg_steps=seg_steps, masked=masked, seed=seed)
    return write_report(out, data, report)


def write_report(out: str | Path, data, report=None) -> Path:
    """Evaluates OUT/masked and OUT/unmasked on the same held-out episodes; writes compare.json, the
    markdown report (default OUT/idm.md) and idm_joints.png next to it."""
    out, arrays = Path(out), idm_data.load_episodes(data)
    results, curves = {}, {}
    for name in ("masked", "unmasked"):
        trained = load(out / name)
        results[name] = dict(summary=trained.meta["summary"], steps=trained.meta["steps"],
                             metrics=evaluate(out / name, data))
        first = results[name]["metrics"]["episodes"][0]  # both runs share the split: the same held-out episode
        row = int(np.flatnonzero(arrays["indices"] == first)[0])
        curves[name] = predict(trained, arrays["frames"][row:row + 1])[0][0]
    report = Path(report) if report else out / "idm.md"
    plot = report.parent / "idm_joints.png"
    names = arrays["joint_names"].tolist()
    plot_joints(plot, curves, arrays["joints"][row], names, title=f"held-out episode {first}")
    (out / "compare.json").write_text(json.dumps(results, indent=1))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(_markdown(results, names, data, plot.name))
    return report


def _markdown(results: dict, names: list[str], data, plot_name: str) -> str:
    m, u = results["masked"]["metrics"], results["unmasked"]["metrics"]
    ms, us = results["masked"]["summary"], results["unmasked"]["summary"]
    rows = [f"| {n} | {m['joints'][n]['std']:.4f} | {m['joints'][n]['r2']:.3f} | {u['joints'][n]['r2']:.3f} | "
            f"{m['joints'][n]['mae']:.4f} | {u['joints'][n]['mae']:.4f} |" for n in names]
    flat = [n for n in names if n not in m["varying_joints"]]
    return "\n".join([
        "# Inverse dynamics (IDM): masked vs unmasked",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} CPU by `gw-jax idm compare` "
        f"(`gw_jax/idm/report.py`). Data: `{data}` — {ms['train_episodes']} training and "
        f"{ms['heldout_episodes']} held-out episodes of simulated frames with random backgrounds and 2 "
        "distractors; both IDMs use the same split and the same held-out episodes.",
        "",
        "| joint | held-out std | R² masked | R² unmasked | MAE masked | MAE unmasked |",
        "|---|---|---|---|---|---|",
        *rows,
        f"| **mean over all 7 (`r2_mean`, `mae_mean_rad`)** | | **{m['r2_mean']:.3f}** | **{u['r2_mean']:.3f}** | "
        f"**{m['mae_mean_rad']:.4f}** | **{u['mae_mean_rad']:.4f}** |",
        f"| mean over moving joints (`r2_mean_varying`) | | {m['r2_mean_varying']:.3f} | "
        f"{u['r2_mean_varying']:.3f} | | |",
        "",
        f"Target (`r2_mean` >= 0.95 over all 7 joints): **{'met' if m['r2_mean'] >= 0.95 else 'not met'}** "
        f"({m['r2_mean']:.3f} masked); over the moving joints {m['r2_mean_varying']:.3f}. "
        "MAE is in radians for the six arm joints and in metres (finger opening) for the gripper.",
        f"Training loss (normalised MSE, last 20 steps): masked {ms['loss_last']:.4f}, unmasked "
        f"{us['loss_last']:.4f}; where unmasked trains lower yet tests worse, it is fitting the backgrounds and "
        "distractors of its training episodes.",
        *([f"Near-constant joints (held-out std below 0.01 rad): {', '.join(flat)}. What varies there is "
           "servo deflection far below one pixel at this resolution; such joints cap the plain mean `r2_mean`, "
           "while `r2_mean_varying` averages only the moving joints."] if flat else []),
        "",
        "The simulator's wrist is spherical (`gw_jax/data/sim_scene.py`): pitch, then roll about the forearm, "
        "then a yaw perpendicular to the roll. The scripted policy turns the fingers to the cube's (random) "
        "yaw, turns the cube while carrying it and tilts the empty gripper in transit, so every arm joint "
        "moves and each is visible in the image.",
        "",
        "Method: a U-Net segmenter trained on the simulator's per-frame arm masks; the masked IDM sees frames "
        "times the segmenter's *predicted* soft mask in training and at label time (no train/label gap); the "
        "unmasked IDM sees raw frames. IDM: per-frame CNN encoder + residual temporal 1D convolutions "
        "(`gw_jax/idm/models.py`), MSE on per-joint normalised angles.",
        "",
        f"Arm segmenter (U-Net) IoU on the held-out frames: **{m['segmenter_iou']:.3f}** "
        f"(trained {ms['segmenter_seconds']:.0f} s).",
        f"IDM training ({results['masked']['steps']} steps, batch 4 clips of {ms['frames']} frames): "
        f"masked {ms['idm_seconds']:.0f} s, unmasked {us['idm_seconds']:.0f} s (2 CPU cores shared with other "
        "jobs; the masked time includes that contention).",
        "",
        f"![predicted vs true joints on a held-out episode]({plot_name})",
        "",
        f"Reproduce: `gw-jax idm compare --out /tmp/idm --episodes {ms['train_episodes'] + ms['heldout_episodes']} "
        f"--steps {results['masked']['steps']} --report docs/idm.md` (simulates the data first), or "
        "`gw-jax idm train/eval` on a folder from `gw-jax sim --frames 17 --fps 8 --size 64 --random-background "
        "--distractors 2`.",
        "",
    ])
