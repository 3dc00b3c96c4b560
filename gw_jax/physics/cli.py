"""``gw-jax sysid``: identify friction, stiffness and damping of the MuJoCo slider.

  gw-jax sysid simulate --out traj.npz [--friction F --stiffness P --damping D]   example input
  gw-jax sysid fit --trajectories traj.npz --out DIR [--surrogate CKPT]           -> params.json/.xml
  gw-jax sysid eval [--systems N] [--json PATH] [--out DIR]                       benchmark + report

Trajectory files are ``.npz`` with ``states`` ``(T + 1, 2)`` = [position m, velocity m/s] and
``actions`` ``(T,)`` = motor force N applied during each step of ``dt`` = 0.01 s (optional key,
checked); a leading batch axis ``(N, T + 1, 2)`` / ``(N, T)`` fits one parameter set to several.
The work lives in the library (``gw_jax.physics.pipeline``, ``identify``); this module parses flags and
renders the eval report. Files and folders are local (a gs:// URI is refused in one line); ``--json`` may be a URI.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from gw_jax.errors import UserInputError
from gw_jax.physics import system as sysmod
from gw_jax.physics.identify import METHOD_LABELS, benchmark
from gw_jax.physics.pipeline import fit_trajectories, trained_surrogates
from gw_jax.storage import as_path, check_output_file, local_args, write_text


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
    for name, default in zip(sysmod.PARAM_NAMES, (1.0, 20.0, 1.0), strict=True):
        sim.add_argument(f"--{name}", type=float, default=default)
    sim.add_argument("--seed", type=int, default=0)

    fit = sub.add_parser("fit", parents=[train], help="identify parameters from a trajectory file")
    fit.add_argument("--trajectories", required=True, help=".npz with states (T+1, 2) and actions (T,)")
    fit.add_argument("--out", required=True, help="folder for params.json, params.xml (and a cached surrogate)")
    fit.add_argument("--surrogate", help="trained PINN surrogate checkpoint folder (Orbax; default: train one, "
                     "cached as OUT/surrogate_pinn)")

    ev = sub.add_parser("eval", parents=[train], help="benchmark on held-out systems with known parameters")
    ev.add_argument("--systems", type=int, default=16, help="held-out systems")
    ev.add_argument("--json", help="write the metrics here")
    ev.add_argument("--out", help="folder for the markdown report and convergence plot")


def run(args) -> int:
    local_args(args, dict(out="--out", trajectories="--trajectories", surrogate="--surrogate"),
               command=f"sysid {args.action}")
    return {"simulate": _simulate, "fit": _fit, "eval": _eval}[args.action](args)


def _simulate(args) -> int:
    params = np.array([args.friction, args.stiffness, args.damping])
    if np.any(params <= 0):
        raise UserInputError("--friction, --stiffness, --damping must be positive")
    actions = sysmod.excitation(np.random.default_rng(args.seed), 1, args.steps)[0]
    states = sysmod.SliderSystem().simulate(params, actions)
    np.savez(args.out, states=states, actions=actions, dt=sysmod.DT, params=params)
    print(f"wrote {args.out}: {args.steps} steps with friction/stiffness/damping = {params.tolist()}")
    return 0


def _fit(args) -> int:
    report = fit_trajectories(args.trajectories, args.out, surrogate=args.surrogate, restarts=args.restarts,
                              iterations=args.iterations, horizon=args.horizon, seed=args.seed,
                              train_rollouts=args.train_rollouts, train_steps=args.train_steps)
    out = as_path(args.out)
    print(sysmod.mjcf_snippet([report[n] for n in sysmod.PARAM_NAMES]), end="")
    print(f"wrote {out / 'params.json'} and {out / 'params.xml'}")
    return 0


def _eval(args) -> int:
    if args.systems < 1:
        raise UserInputError("--systems must be at least 1")
    json_out = check_output_file(args.json, flag="--json") if args.json else None
    surrogates = trained_surrogates(["pinn", "mlp"], train_rollouts=args.train_rollouts,
                                    train_steps=args.train_steps, seed=args.seed)
    metrics, histories = benchmark(surrogates, args.systems, restarts=args.restarts, iterations=args.iterations,
                                   horizon=args.horizon, seed=args.seed)
    print(json.dumps({k: v for k, v in metrics.items() if k.startswith("rel_err")}, indent=2))
    if json_out is not None:
        write_text(json_out, json.dumps(metrics, indent=2) + "\n")
    if args.out:
        out = as_path(args.out)
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
    cmaes_runs = metrics["methods"]["cmaes"]["median_evaluations"]
    lines.append(f"\nCMA-ES median simulator rollouts per system: {cmaes_runs:.0f}")
    return "\n".join(lines) + "\n"
