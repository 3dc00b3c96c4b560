"""System identification workflows as library calls (``gw-jax sysid`` and notebooks use them).

  states, actions = load_trajectories("traj.npz")                 # (N, T+1, 2), (N, T), checked
  surrogates = trained_surrogates(["pinn"], cache_dir="fit/")      # {kind: (Surrogate, train seconds)}
  report = fit_trajectories("traj.npz", "fit/")                    # -> fit/params.json + fit/params.xml
"""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np

from gw_jax.errors import UserInputError
from gw_jax.physics import system as sysmod
from gw_jax.physics.identify import identify_gradient
from gw_jax.physics.surrogate import Surrogate, train_surrogate

SURROGATE_DIR = "surrogate_{kind}"  # Orbax checkpoint folder cached in a fit's output folder


def load_trajectories(path) -> tuple[np.ndarray, np.ndarray]:
    """``states (N, T + 1, 2)`` and ``actions (N, T)`` from an npz, with errors that name the key."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"trajectory file {path}: no such file")
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserInputError(f"trajectory file {path}: not a readable .npz ({e})") from None
    for key in ("states", "actions"):
        if key not in arrays:
            raise UserInputError(f"trajectory file {path}: missing key {key!r} (has {sorted(arrays)})")
    states, actions = arrays["states"].astype(np.float64), arrays["actions"].astype(np.float64)
    if states.ndim == 2:
        states, actions = states[None], actions[None]
    if states.ndim != 3 or states.shape[-1] != 2:
        raise UserInputError(f"trajectory file {path}: 'states' must be (T+1, 2) [position, velocity], "
                             f"got {arrays['states'].shape}")
    if actions.shape != (states.shape[0], states.shape[1] - 1):
        raise UserInputError(f"trajectory file {path}: 'actions' must be (T,) = one force per step of 'states' "
                             f"{arrays['states'].shape}, got {arrays['actions'].shape}")
    if actions.shape[1] < 8:
        raise UserInputError(f"trajectory file {path}: 'actions' has {actions.shape[1]} steps, need at least 8")
    if "dt" in arrays and not np.isclose(float(arrays["dt"]), sysmod.DT):
        raise UserInputError(f"trajectory file {path}: 'dt' = {float(arrays['dt'])}, the system uses {sysmod.DT}")
    if not (np.isfinite(states).all() and np.isfinite(actions).all()):
        raise UserInputError(f"trajectory file {path}: 'states'/'actions' contain NaN or inf")
    return states, actions


def trained_surrogates(kinds, *, train_rollouts: int = 512, train_steps: int = 6000, seed: int = 0,
                       cache_dir=None) -> dict:
    """``{kind: (Surrogate, train seconds)}``: loaded from ``cache_dir`` when there, else trained (and cached)."""
    out, dataset = {}, None
    for kind in kinds:
        cached = Path(cache_dir) / SURROGATE_DIR.format(kind=kind) if cache_dir else None
        if cached is not None and cached.is_dir():
            out[kind] = (Surrogate.load(cached), 0.0)
            continue
        if dataset is None:
            dataset = sysmod.make_dataset(seed, train_rollouts)
        start = time.perf_counter()
        surrogate, losses = train_surrogate(kind, dataset, steps=train_steps, seed=seed)
        out[kind] = (surrogate, time.perf_counter() - start)
        print(f"trained {kind} surrogate in {out[kind][1]:.1f}s (final loss {losses[-100:].mean():.2e})")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            surrogate.save(cached)
    return out


def fit_trajectories(trajectories, out, *, surrogate=None, restarts: int = 8, iterations: int = 300,
                     horizon: int = 1, seed: int = 0, train_rollouts: int = 512, train_steps: int = 6000) -> dict:
    """Identifies one parameter set for the trajectory file; writes OUT/params.json and OUT/params.xml (the MJCF
    joint) and returns the params.json content. ``surrogate``: a PINN checkpoint folder, else one is trained
    and cached as OUT/surrogate_pinn."""
    states, actions = load_trajectories(trajectories)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if surrogate is not None:
        model = Surrogate.load(surrogate)
    else:
        model = trained_surrogates(["pinn"], train_rollouts=train_rollouts, train_steps=train_steps, seed=seed,
                                   cache_dir=out)["pinn"][0]
    result = identify_gradient(model, states, actions, restarts=restarts, steps=iterations, horizon=horizon,
                               seed=seed)
    params = dict(zip(sysmod.PARAM_NAMES, map(float, result["params"]), strict=True))
    report = {**params, "final_loss": float(result["loss_history"][-1]), "trajectories": str(trajectories),
              "ranges": {n: [float(lo), float(hi)] for n, lo, hi in
                         zip(sysmod.PARAM_NAMES, sysmod.PARAM_LOW, sysmod.PARAM_HIGH, strict=True)}}
    (out / "params.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "params.xml").write_text(sysmod.mjcf_snippet(result["params"]))
    return report
