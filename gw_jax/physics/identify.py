"""System identification: fit ``(friction, stiffness, damping)`` to an observed trajectory.

* ``identify_gradient``: freeze a surrogate and run Adam on the parameters so its short rollouts
  from every observed state match the next observed states. Parameters live as logits,
  ``phys = low + sigmoid(logit) (high - low)``, so they can never leave the physical range; several
  restarts run side by side under ``vmap`` and the lowest final loss wins. Pure and ``jit``-ed.
* ``identify_cmaes``: the gradient-free baseline, CMA-ES (numpy) on the same unit box, scoring
  each candidate by re-simulating the whole trajectory in MuJoCo.

Trajectories are ``states (N, T + 1, 2)`` and ``actions (N, T)``; a single one may drop the N.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gw_jax.physics.surrogate import Surrogate, evaluate_one_step, rollout
from gw_jax.physics.system import PARAM_HIGH, PARAM_LOW, PARAM_NAMES, SliderSystem, from_unit, make_dataset


def _batched(states, actions):
    states, actions = np.asarray(states, np.float32), np.asarray(actions, np.float32)
    return (states[None], actions[None]) if states.ndim == 2 else (states, actions)


def rollout_loss(predict, phys, states, actions, horizon: int, delta_scale):
    """Mean squared error of ``horizon``-step rollouts started from every observed state.

    Errors are in units of the typical one-step change, so a horizon of 1 is the training loss.
    """
    steps = actions.shape[-1]
    windows = steps - horizon + 1
    state = states[:, :windows]
    total = 0.0
    for h in range(horizon):  # short and static: unrolled
        state = predict(state, actions[:, h:h + windows], phys)
        total += jnp.mean(jnp.square((state - states[:, h + 1:h + 1 + windows]) / delta_scale))
    return total / horizon


def _to_phys(logits):
    return jnp.asarray(PARAM_LOW) + jax.nn.sigmoid(logits) * jnp.asarray(PARAM_HIGH - PARAM_LOW)


# (id(surrogate), settings) -> (surrogate, jitted identifier, input shapes already compiled)
_IDENTIFIERS: dict[tuple, tuple] = {}


def _build_identifier(surrogate: Surrogate, restarts: int, steps: int, lr: float, horizon: int):
    """The jitted ``(states, actions, key) -> (phys, losses, history)`` for the best restart."""
    delta_scale = jnp.asarray(surrogate.scales["delta"], jnp.float32)
    optimiser = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.05))

    def fit_one(states, actions, logits):
        loss_fn = lambda lg: rollout_loss(surrogate.predict, _to_phys(lg), states, actions,  # noqa: E731
                                          horizon, delta_scale)

        def step(carry, _):
            lg, opt_state = carry
            loss, grad = jax.value_and_grad(loss_fn)(lg)
            updates, opt_state = optimiser.update(grad, opt_state)
            return (optax.apply_updates(lg, updates), opt_state), (loss, _to_phys(lg))

        (logits, _), (losses, history) = jax.lax.scan(step, (logits, optimiser.init(logits)), None, steps)
        return loss_fn(logits), losses, history, _to_phys(logits)

    @jax.jit
    def identify(states, actions, key):
        starts = jax.random.normal(key, (restarts, 3))  # sigmoid(N(0,1)) spreads over the range, unsaturated
        final, losses, history, phys = jax.vmap(fit_one, in_axes=(None, None, 0))(states, actions, starts)
        best = jnp.argmin(final)
        return phys[best], losses[best], history[best]

    return identify


def identify_gradient(surrogate: Surrogate, states, actions, restarts: int = 8, steps: int = 300,
                      lr: float = 0.1, horizon: int = 1, seed: int = 0) -> dict:
    """Surrogate-gradient identification; returns ``params``, ``loss_history``, ``param_history``
    (per iteration, best restart), ``wall_s`` and the one-off ``compile_s`` (0 once compiled)."""
    states, actions = _batched(states, actions)
    cache_key = (id(surrogate), restarts, steps, lr, horizon)
    if cache_key not in _IDENTIFIERS:
        _IDENTIFIERS[cache_key] = (surrogate, _build_identifier(surrogate, restarts, steps, lr, horizon), set())
    _, identify, compiled = _IDENTIFIERS[cache_key]
    key = jax.random.PRNGKey(seed)
    compile_s = 0.0
    if states.shape not in compiled:
        start = time.perf_counter()
        jax.block_until_ready(identify(states, actions, key))  # compile (+ one run) outside the timing
        compile_s = time.perf_counter() - start
        compiled.add(states.shape)
    start = time.perf_counter()
    phys, losses, history = jax.block_until_ready(identify(states, actions, key))
    return {"params": np.asarray(phys, np.float64), "loss_history": np.asarray(losses),
            "param_history": np.asarray(history), "wall_s": time.perf_counter() - start,
            "compile_s": compile_s}


def simulator_loss(system: SliderSystem, phys, states, actions) -> float:
    """MSE between MuJoCo re-simulations with ``phys`` and the observed trajectories (per-component
    normalised by the observed spread)."""
    scale = states.reshape(-1, 2).std(0) + 1e-8
    errors = [np.mean(np.square((system.simulate(phys, a, s[0]) - s) / scale))
              for s, a in zip(states, actions, strict=True)]
    return float(np.mean(errors))


def identify_cmaes(states, actions, generations: int = 80, popsize: int = 10, sigma0: float = 0.3,
                   tol: float = 1e-3, seed: int = 0) -> dict:
    """CMA-ES (rank-one + rank-mu updates, cumulative step size) in the unit parameter box.

    Candidates outside the box are evaluated at the clipped point plus a distance penalty. Stops
    when the search distribution is narrower than ``tol`` (unit coordinates) or after
    ``generations``. Returns ``params``, ``loss_history``/``param_history`` per generation (best so
    far), ``evaluations`` and ``wall_s``.
    """
    start_time = time.perf_counter()
    states, actions = (np.asarray(a, np.float64) for a in _batched(states, actions))
    system, rng, n = SliderSystem(), np.random.default_rng(seed), 3
    mu = popsize // 2
    weights = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    weights /= weights.sum()
    mueff = 1.0 / np.sum(weights ** 2)
    cc, cs = (4 + mueff / n) / (n + 4 + 2 * mueff / n), (mueff + 2) / (n + mueff + 5)
    c1 = 2 / ((n + 1.3) ** 2 + mueff)
    cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
    damps = 1 + 2 * max(0.0, np.sqrt((mueff - 1) / (n + 1)) - 1) + cs
    chi_n = np.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))

    mean, sigma = np.full(n, 0.5), sigma0
    cov, path_c, path_s = np.eye(n), np.zeros(n), np.zeros(n)
    best_unit, best_loss = mean.copy(), np.inf
    losses, history, evaluations = [], [], 0
    for gen in range(generations):
        eigvals, basis = np.linalg.eigh(cov)
        stds = np.sqrt(np.maximum(eigvals, 1e-20))
        steps = rng.standard_normal((popsize, n)) * stds @ basis.T  # ~ N(0, cov)
        candidates = mean + sigma * steps
        clipped = np.clip(candidates, 0.0, 1.0)
        fitness = np.array([simulator_loss(system, from_unit(c), states, actions) for c in clipped])
        fitness += np.sum(np.square(candidates - clipped), axis=1)
        evaluations += popsize
        order = np.argsort(fitness)
        if fitness[order[0]] < best_loss:
            best_loss, best_unit = fitness[order[0]], clipped[order[0]]
        losses.append(best_loss)
        history.append(from_unit(best_unit))

        step_w = weights @ steps[order[:mu]]
        mean = mean + sigma * step_w
        inv_sqrt = basis @ np.diag(1 / stds) @ basis.T
        path_s = (1 - cs) * path_s + np.sqrt(cs * (2 - cs) * mueff) * inv_sqrt @ step_w
        hsig = np.linalg.norm(path_s) / np.sqrt(1 - (1 - cs) ** (2 * (gen + 1))) / chi_n < 1.4 + 2 / (n + 1)
        path_c = (1 - cc) * path_c + hsig * np.sqrt(cc * (2 - cc) * mueff) * step_w
        rank_mu = (steps[order[:mu]].T * weights) @ steps[order[:mu]]
        cov = ((1 - c1 - cmu) * cov + c1 * (np.outer(path_c, path_c) + (1 - hsig) * cc * (2 - cc) * cov)
               + cmu * rank_mu)
        sigma *= np.exp((cs / damps) * (np.linalg.norm(path_s) / chi_n - 1))
        if sigma * np.sqrt(np.max(eigvals)) < tol:
            break
    return {"params": from_unit(best_unit), "loss_history": np.array(losses), "param_history": np.array(history),
            "evaluations": evaluations, "wall_s": time.perf_counter() - start_time}


def relative_error(estimate, truth) -> np.ndarray:
    return np.abs(np.asarray(estimate) - np.asarray(truth)) / np.abs(np.asarray(truth))


# The "done when": median relative error of friction, stiffness, damping.
TARGET = np.array([0.05, 0.10, 0.05])
METHOD_LABELS = {"pinn": "PINN surrogate + Adam", "mlp": "plain-MLP surrogate + Adam",
                 "cmaes": "CMA-ES on MuJoCo (gradient-free)"}


def time_to_target(param_history, truth, wall_s: float) -> float:
    """Seconds until all parameters are within ``TARGET`` for good (equal cost per iteration); inf if never."""
    inside = np.all(relative_error(param_history, truth) <= TARGET, axis=-1)
    if not inside[-1]:
        return float("inf")
    first = int(np.flatnonzero(~inside)[-1]) + 1 if (~inside).any() else 0
    return wall_s * (first + 1) / len(inside)


def rollout_nrmse(surrogate: Surrogate, dataset: dict) -> float:
    """Open-loop rollout error with the true parameters, RMSE per component / the state's spread."""
    batched = jax.jit(jax.vmap(lambda s, a, p: rollout(surrogate, s[0], a, p)))
    states = dataset["states"]
    predicted = np.asarray(batched(states.astype(np.float32), dataset["actions"].astype(np.float32),
                                   dataset["params"].astype(np.float32)))
    return float(np.sqrt(np.mean(np.square((predicted - states) / states.reshape(-1, 2).std(0)))))


def benchmark(surrogates: dict, systems: int, restarts: int = 8, iterations: int = 300, horizon: int = 1,
              seed: int = 0):
    """Identify ``systems`` held-out systems (a seed the surrogates never saw) with every method.

    ``surrogates`` maps ``"pinn"``/``"mlp"`` to ``(Surrogate, train_seconds)``. Returns the metrics
    dict (JSON-ready) and per-method histories ``[(seconds (I,), mean rel. error (I,), loss (I,))]``.
    """
    heldout = make_dataset(seed + 10_000, systems)
    errors = {m: [] for m in METHOD_LABELS}
    walls, reach, histories, extra = ({m: [] for m in METHOD_LABELS} for _ in range(4))
    for i, truth in enumerate(heldout["params"]):
        states, actions = heldout["states"][i], heldout["actions"][i]
        for method in METHOD_LABELS:
            if method == "cmaes":
                result = identify_cmaes(states, actions, seed=seed + i)
                extra[method].append(result["evaluations"])
            else:
                result = identify_gradient(surrogates[method][0], states, actions, restarts=restarts,
                                           steps=iterations, horizon=horizon, seed=seed + i)
                extra[method].append(result["compile_s"])
            errors[method].append(relative_error(result["params"], truth))
            walls[method].append(result["wall_s"])
            reach[method].append(time_to_target(result["param_history"], truth, result["wall_s"]))
            iters = len(result["loss_history"])
            histories[method].append((result["wall_s"] * np.arange(1, iters + 1) / iters,
                                      relative_error(result["param_history"], truth).mean(-1),
                                      result["loss_history"]))

    table = {}
    for method, label in METHOD_LABELS.items():
        err = np.array(errors[method])
        table[method] = {
            "label": label,
            "median_rel_err": dict(zip(PARAM_NAMES, np.median(err, 0).tolist(), strict=True)),
            "max_rel_err": dict(zip(PARAM_NAMES, err.max(0).tolist(), strict=True)),
            "median_wall_s": float(np.median(walls[method])),
            "total_wall_s": float(np.sum(walls[method])),
            "median_time_to_target_s": float(np.median(reach[method])),
            "fraction_within_target": float(np.mean(np.all(err <= TARGET, axis=1))),
        }
        if method == "cmaes":
            table[method]["median_evaluations"] = float(np.median(extra[method]))
        else:
            surrogate, train_s = surrogates[method]
            table[method].update(compile_s=float(np.max(extra[method])), train_s=train_s,
                                 heldout_one_step_loss=evaluate_one_step(surrogate, heldout),
                                 heldout_rollout_nrmse=rollout_nrmse(surrogate, heldout))
    pinn = table["pinn"]
    medians = np.array([pinn["median_rel_err"][n] for n in PARAM_NAMES])
    metrics = {f"rel_err_{n}": pinn["median_rel_err"][n] for n in PARAM_NAMES}
    metrics.update({
        "target_met": bool(np.all(medians <= TARGET) and pinn["median_wall_s"] < table["cmaes"]["median_wall_s"]),
        "target": dict(zip(PARAM_NAMES, TARGET.tolist(), strict=True)),
        "systems": systems, "restarts": restarts, "iterations": iterations, "horizon": horizon, "methods": table,
        "per_system": [{"truth": dict(zip(PARAM_NAMES, heldout["params"][i].tolist(), strict=True)),
                        **{m: errors[m][i].tolist() for m in METHOD_LABELS}} for i in range(systems)],
    })
    return metrics, histories
