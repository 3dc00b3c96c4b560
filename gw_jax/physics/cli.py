"""``gw-jax sysid``: identify friction, stiffness and damping of the MuJoCo slider.

  gw-jax sysid simulate --out traj.npz [--friction F --stiffness P --damping D]   example input
  gw-jax sysid fit --trajectories traj.npz --out DIR [--surrogate CKPT]           -> params.json/.xml
  gw-jax sysid eval [--systems N] [--json PATH] [--out DIR]                       benchmark + report

Trajectory files are ``.npz`` with ``states`` ``(T + 1, 2)`` = [position m, velocity m/s] and
``actions`` ``(T,)`` = motor force N applied during each step of ``dt`` = 0.01 s (optional key,
checked); a leading batch axis ``(N, T + 1, 2)`` / ``(N, T)`` fits one parameter set to several.
"""

from __future__ import annotations

import argparse
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from gw_jax.errors import UserInputError
from gw_jax.physics import system as sysmod

SURROGATE_FILE = "surrogate_{kind}.msgpack"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="{simulate,fit,eval}")
    train = argparse.ArgumentParser(add_help=False)
    train.add_argument("--train-rollouts", type=int, default=512, help="simulated rollouts to train a surrogate")
    train.add_argument("--train-steps", type=int, default=6000, help="Adam steps to train a surrogate")
    train.add_argument("--restarts", type=int, default=8, help="vmapped random restarts of the identification")
    train.add_argument("--iterations", type=int, default=300, help="Adam steps of the identification")
    train.add_argument("--horizon", type=int, default=1, help="surrogate rollout steps per loss term (1: one-step)")
    train.add_argument("--seed", type=int, default=0)

    sim = sub.add_parser("simulate", help="write an example trajectory file with known parameters")
    sim.add_argument("--out", required=True, help="output .npz")
    sim.add_argument("--steps", type=int, default=200)
    for name, default in zip(sysmod.PARAM_NAMES, (1.0, 20.0, 1.0)):
        sim.add_argument(f"--{name}", type=float, default=default)
    sim.add_argument("--seed", type=int, default=0)

    fit = sub.add_parser("fit", parents=[train], help="identify parameters from a trajectory file")
    fit.add_argument("--trajectories", required=True, help=".npz with states (T+1, 2) and actions (T,)")
    fit.add_argument("--out", required=True, help="folder for params.json, params.xml (and a cached surrogate)")
    fit.add_argument("--surrogate", help="trained PINN surrogate checkpoint (default: train one, cached in --out)")

    ev = sub.add_parser("eval", parents=[train], help="benchmark on held-out systems with known parameters")
    ev.add_argument("--systems", type=int, default=16, help="held-out systems")
    ev.add_argument("--json", help="write the metrics here")
    ev.add_argument("--out", help="folder for the markdown report and convergence plot")


def run(args) -> int:
    return {"simulate": _simulate, "fit": _fit, "eval": _eval}[args.action](args)


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


def _simulate(args) -> int:
    params = np.array([args.friction, args.stiffness, args.damping])
    if np.any(params <= 0):
        raise UserInputError("--friction, --stiffness, --damping must be positive")
    actions = sysmod.excitation(np.random.default_rng(args.seed), 1, args.steps)[0]
    states = sysmod.SliderSystem().simulate(params, actions)
    np.savez(args.out, states=states, actions=actions, dt=sysmod.DT, params=params)
    print(f"wrote {args.out}: {args.steps} steps with friction/stiffness/damping = {params.tolist()}")
    return 0


def _trained_surrogates(args, kinds, cache_dir=None) -> dict:
    """Surrogates of each kind, loaded from ``cache_dir`` when there, else trained (and cached)."""
    from gw_jax.physics.surrogate import Surrogate, train_surrogate

    out, dataset = {}, None
    for kind in kinds:
        cached = Path(cache_dir) / SURROGATE_FILE.format(kind=kind) if cache_dir else None
        if cached is not None and cached.is_file():
            out[kind] = (Surrogate.load(cached), 0.0)
            continue
        if dataset is None:
            dataset = sysmod.make_dataset(args.seed, args.train_rollouts)
        start = time.perf_counter()
        surrogate, losses = train_surrogate(kind, dataset, steps=args.train_steps, seed=args.seed)
        out[kind] = (surrogate, time.perf_counter() - start)
        print(f"trained {kind} surrogate in {out[kind][1]:.1f}s (final loss {losses[-100:].mean():.2e})")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            surrogate.save(cached)
    return out


def _fit(args) -> int:
    from gw_jax.physics.identify import identify_gradient
    from gw_jax.physics.surrogate import Surrogate

    states, actions = load_trajectories(args.trajectories)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    surrogate = Surrogate.load(args.surrogate) if args.surrogate else _trained_surrogates(args, ["pinn"], out)["pinn"][0]
    result = identify_gradient(surrogate, states, actions, restarts=args.restarts, steps=args.iterations,
                               horizon=args.horizon, seed=args.seed)
    params = dict(zip(sysmod.PARAM_NAMES, map(float, result["params"])))
    report = {**params, "final_loss": float(result["loss_history"][-1]), "trajectories": str(args.trajectories),
              "ranges": {n: [float(lo), float(hi)] for n, lo, hi in
                         zip(sysmod.PARAM_NAMES, sysmod.PARAM_LOW, sysmod.PARAM_HIGH)}}
    (out / "params.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "params.xml").write_text(sysmod.mjcf_snippet(result["params"]))
    print(sysmod.mjcf_snippet(result["params"]), end="")
    print(f"wrote {out / 'params.json'} and {out / 'params.xml'}")
    return 0


def _eval(args) -> int:
    from gw_jax.physics.identify import benchmark

    if args.systems < 1:
        raise UserInputError("--systems must be at least 1")
    surrogates = _trained_surrogates(args, ["pinn", "mlp"])
    metrics, histories = benchmark(surrogates, args.systems, restarts=args.restarts, iterations=args.iterations,
                                   horizon=args.horizon, seed=args.seed)
    print(json.dumps({k: v for k, v in metrics.items() if k.startswith("rel_err")}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_plot(histories, out / "physics_convergence.png")
        (out / "sysid_report.md").write_text(write_report(metrics))
        print(f"wrote {out / 'sysid_report.md'} and {out / 'physics_convergence.png'}")
    return 0


def write_plot(histories: dict, path) -> None:
    """Convergence: surrogate loss vs Adam iteration, and mean parameter error vs wall time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gw_jax.physics.identify import METHOD_LABELS

    colors = {"pinn": "tab:blue", "mlp": "tab:orange", "cmaes": "tab:green"}
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
    # Runs differ in length and speed: read each error curve (a step function) on one time grid.
    ends = [r[0][[0, -1]] for runs in histories.values() for r in runs]
    grid = np.geomspace(min(e[0] for e in ends), max(e[1] for e in ends), 200)
    for method, runs in histories.items():
        err = np.array([r[1][np.clip(np.searchsorted(r[0], grid, side="right") - 1, 0, None)] for r in runs])
        if method != "cmaes":
            loss = np.array([r[2] for r in runs])
            ax_loss.semilogy(np.median(loss, 0), color=colors[method], label=METHOD_LABELS[method])
            ax_loss.fill_between(np.arange(loss.shape[1]), *np.percentile(loss, [25, 75], 0), color=colors[method],
                                 alpha=0.2)
        ax_err.loglog(grid, np.median(err, 0), color=colors[method], label=METHOD_LABELS[method])
        ax_err.fill_between(grid, *np.percentile(err, [25, 75], 0), color=colors[method], alpha=0.2)
    ax_loss.set(xlabel="Adam iteration", ylabel="surrogate loss (best restart)",
                title="identification loss (median, IQR over systems)")
    ax_err.axhline(0.05, color="gray", ls="--", lw=1, label="5% target")
    ax_err.set(xlabel="wall time (s)", ylabel="mean relative parameter error",
               title="parameter error vs wall time (median, IQR)")
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(metrics: dict) -> str:
    """Markdown tables of the benchmark metrics."""
    names = sysmod.PARAM_NAMES
    lines = [f"Held-out systems: {metrics['systems']}; target median relative error "
             + ", ".join(f"{n} <= {metrics['target'][n]:.0%}" for n in names)
             + f"; target met (PINN accuracy and faster than CMA-ES): **{metrics['target_met']}**", "",
             "| method | " + " | ".join(f"median rel. err {n}" for n in names)
             + " | max rel. err (f/p/d) | within target | median wall (s) | median time to target (s) |",
             "|---" * (len(names) + 5) + "|"]
    for m in metrics["methods"].values():
        med = " | ".join(f"{m['median_rel_err'][n]:.2%}" for n in names)
        worst = "/".join(f"{m['max_rel_err'][n]:.1%}" for n in names)
        lines.append(f"| {m['label']} | {med} | {worst} | {m['fraction_within_target']:.0%} | "
                     f"{m['median_wall_s']:.3f} | {m['median_time_to_target_s']:.3f} |")
    lines += ["", "| surrogate | train (s) | held-out one-step loss | held-out rollout NRMSE | identify compile (s) |",
              "|---|---|---|---|---|"]
    for kind in ("pinn", "mlp"):
        m = metrics["methods"][kind]
        lines.append(f"| {m['label']} | {m['train_s']:.1f} | {m['heldout_one_step_loss']:.2e} | "
                     f"{m['heldout_rollout_nrmse']:.3f} | {m['compile_s']:.1f} |")
    lines.append(f"\nCMA-ES median simulator rollouts per system: {metrics['methods']['cmaes']['median_evaluations']:.0f}")
    return "\n".join(lines) + "\n"
