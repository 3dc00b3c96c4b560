"""Flax NNX surrogates ``M(s, a; f, p, d) -> s'`` of the slider, their training and Orbax checkpoints.

  surrogate, losses = train_surrogate("pinn", make_dataset(0, 512), steps=6000)
  next_state = surrogate.predict(state, action, phys)       # pure: fine inside jit / grad / vmap
  surrogate.save("ckpt/");  surrogate = Surrogate.load("ckpt/")

Two models, trained identically (same data, loss, optimiser and steps):

* ``PhysicsSurrogate`` (the PINN): known structure ``m a = u - p x - d v - f tanh(v / eps)``,
  integrated like MuJoCo's Euler (semi-implicit, damping implicit), plus a small residual MLP
  (zero at init) and a learned friction smoothing ``eps``. It only has to learn what the textbook
  model gets wrong, e.g. MuJoCo's soft friction constraint around stiction.
* ``MLPSurrogate`` (the ablation): a plain MLP from normalised ``(s, a, f, p, d)`` to ``s' - s``.

Both take physical units. Layers, widths and initialisers are those of the earlier Flax Linen version
(1,314 and 8,898 parameters), so docs/physics.md's results carry over.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from gw_jax.errors import UserInputError
from gw_jax.physics.system import DT, MASS, PARAM_HIGH, PARAM_LOW

KINDS = ("pinn", "mlp")
FEATURES = 6  # state (2), action (1), unit parameters (3)


class _MLP(nnx.Module):
    """GELU MLP ``FEATURES -> widths -> out``; ``zero_last`` starts the output at exactly zero."""

    def __init__(self, widths: tuple[int, ...], out: int, zero_last: bool = False, *, rngs: nnx.Rngs):
        ins = (FEATURES, *widths[:-1])
        self.hidden = nnx.List([nnx.Linear(i, w, rngs=rngs) for i, w in zip(ins, widths, strict=True)])
        init = nnx.initializers.zeros if zero_last else nnx.initializers.lecun_normal()
        self.out = nnx.Linear(widths[-1], out, kernel_init=init, rngs=rngs)

    def __call__(self, x):
        for layer in self.hidden:
            x = nnx.gelu(layer(x))
        return self.out(x)


@dataclasses.dataclass(frozen=True)
class Scales:
    """Typical magnitudes (training-set std) of the state, the force and the one-step state change."""

    state: tuple[float, float]
    action: float
    delta: tuple[float, float]

    @classmethod
    def of(cls, scales: dict) -> Scales:
        return cls(tuple(scales["state"]), float(scales["action"]), tuple(scales["delta"]))


def _features(state, action, phys, scales: Scales):
    """Inputs scaled to order one: state / its std, force / its std, parameters to [0, 1]."""
    unit = (phys - PARAM_LOW) / (PARAM_HIGH - PARAM_LOW)
    unit = jnp.broadcast_to(unit, state.shape[:-1] + (3,))  # one parameter set may serve many states
    return jnp.concatenate([state / jnp.asarray(scales.state), action[..., None] / scales.action, unit], axis=-1)


class PhysicsSurrogate(nnx.Module):
    def __init__(self, scales: Scales, widths: tuple[int, ...] = (32, 32), *, rngs: nnx.Rngs):
        self.scales = scales
        self.log_eps = nnx.Param(jnp.asarray(np.log(0.02), jnp.float32))
        self.residual = _MLP(widths, 1, zero_last=True, rngs=rngs)

    def __call__(self, state, action, phys):
        x, v = state[..., 0], state[..., 1]
        friction, stiffness, damping = phys[..., 0], phys[..., 1], phys[..., 2]
        eps = jnp.exp(self.log_eps[...])
        residual = self.residual(_features(state, action, phys, self.scales))[..., 0]
        force = action - stiffness * x - friction * jnp.tanh(v / eps) + self.scales.action * residual
        # MuJoCo's Euler integrator treats joint damping implicitly: (m + dt d) dv = dt (F - d v).
        v_next = v + DT * (force - damping * v) / (MASS + DT * damping)
        return jnp.stack([x + DT * v_next, v_next], axis=-1)


class MLPSurrogate(nnx.Module):
    def __init__(self, scales: Scales, widths: tuple[int, ...] = (64, 64, 64), *, rngs: nnx.Rngs):
        self.scales = scales
        self.mlp = _MLP(widths, 2, rngs=rngs)

    def __call__(self, state, action, phys):
        delta = self.mlp(_features(state, action, phys, self.scales))
        return state + delta * jnp.asarray(self.scales.delta)


def build(kind: str, scales: dict, seed: int = 0) -> nnx.Module:
    """A freshly initialised surrogate network of ``kind`` for ``scales`` (``{state, action, delta}``)."""
    if kind not in KINDS:
        raise UserInputError(f"surrogate kind {kind!r}: choose from {KINDS}")
    return (PhysicsSurrogate if kind == "pinn" else MLPSurrogate)(Scales.of(scales), rngs=nnx.Rngs(seed))


@dataclasses.dataclass
class Surrogate:
    """A trained surrogate: ``kind`` in ``KINDS``, the per-feature ``scales`` (JSON-able) and the NNX ``model``."""

    kind: str
    scales: dict
    model: nnx.Module

    def predict(self, state, action, phys):
        """Next state for ``state (..., 2)``, ``action (...)``, ``phys (..., 3)`` in physical units."""
        return self.model(state, action, phys)

    def save(self, path) -> None:
        """An Orbax checkpoint folder: items ``weights`` (the NNX state) and ``meta`` (kind, scales; JSON)."""
        with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
            checkpointer.save(Path(path).absolute(), ocp.args.Composite(
                weights=ocp.args.StandardSave(nnx.to_pure_dict(nnx.state(self.model))),
                meta=ocp.args.JsonSave({"kind": self.kind, "scales": self.scales})), force=True)

    @classmethod
    def load(cls, path) -> Surrogate:
        path = Path(path).absolute()
        if path.is_file():
            raise UserInputError(f"surrogate checkpoint {path}: a single file, not an Orbax checkpoint folder (an old "
                                 "gw-jax format?); retrain it with `gw-jax sysid fit` without --surrogate")
        if not path.is_dir():
            raise UserInputError(f"surrogate checkpoint {path}: no such folder")
        try:
            with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
                meta = checkpointer.restore(path, ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
                graphdef, state = nnx.split(nnx.eval_shape(lambda: build(meta["kind"], meta["scales"])))
                weights = checkpointer.restore(path, ocp.args.Composite(
                    weights=ocp.args.StandardRestore(nnx.to_pure_dict(state)))).weights
        except UserInputError:
            raise
        except Exception as e:  # noqa: BLE001 - any decode failure is a bad checkpoint
            raise UserInputError(f"surrogate checkpoint {path}: not a gw-jax surrogate ({e})") from None
        nnx.replace_by_pure_dict(state, weights)
        return cls(meta["kind"], meta["scales"], nnx.merge(graphdef, state))


def transitions(dataset: dict) -> tuple[np.ndarray, ...]:
    """Flatten rollouts into one-step ``(state, action, params, next_state)`` arrays."""
    states, actions, params = dataset["states"], dataset["actions"], dataset["params"]
    steps = actions.shape[1]
    return (states[:, :-1].reshape(-1, 2), actions.reshape(-1),
            np.repeat(params, steps, axis=0), states[:, 1:].reshape(-1, 2))


def one_step_loss(predict, state, action, phys, next_state, delta_scale):
    """MSE of next-state predictions, per component in units of the typical one-step change."""
    return jnp.mean(jnp.square((predict(state, action, phys) - next_state) / delta_scale))


def train_surrogate(kind: str, dataset: dict, steps: int = 3000, batch: int = 1024, lr: float = 3e-3,
                    seed: int = 0) -> tuple[Surrogate, np.ndarray]:
    """Fit ``kind`` to one-step transitions of ``dataset``; returns it and the loss per step."""
    state, action, phys, next_state = transitions(dataset)
    delta = next_state - state
    scales = {"state": state.std(0).tolist(), "action": float(action.std()), "delta": delta.std(0).tolist()}
    graphdef, weights = nnx.split(build(kind, scales, seed))
    optimiser = optax.adam(optax.cosine_decay_schedule(lr, steps))
    data = tuple(jnp.asarray(a, jnp.float32) for a in (state, action, phys, next_state))
    delta_scale = jnp.asarray(scales["delta"], jnp.float32)

    def loss_fn(w, idx):
        return one_step_loss(nnx.merge(graphdef, w), *(d[idx] for d in data), delta_scale)

    def train_step(carry, key):
        w, opt_state = carry
        idx = jax.random.randint(key, (batch,), 0, len(state))
        loss, grads = jax.value_and_grad(loss_fn)(w, idx)
        updates, opt_state = optimiser.update(grads, opt_state, w)
        return (optax.apply_updates(w, updates), opt_state), loss

    keys = jax.random.split(jax.random.PRNGKey(seed + 1), steps)
    (weights, _), losses = jax.jit(lambda c, k: jax.lax.scan(train_step, c, k))(
        (weights, optimiser.init(weights)), keys)
    return Surrogate(kind, scales, nnx.merge(graphdef, weights)), np.asarray(losses)


def evaluate_one_step(surrogate: Surrogate, dataset: dict) -> float:
    """One-step loss (same units as training) on ``dataset``."""
    state, action, phys, next_state = transitions(dataset)
    delta_scale = jnp.asarray(surrogate.scales["delta"])
    return float(one_step_loss(jax.jit(surrogate.predict), state, action, phys, next_state, delta_scale))


def rollout(surrogate: Surrogate, start, actions, phys):
    """Open-loop surrogate states ``(T + 1, 2)`` from ``start`` under ``actions (T,)``."""
    def step(state, action):
        nxt = surrogate.predict(state, action, phys)
        return nxt, nxt

    _, states = jax.lax.scan(step, jnp.asarray(start), jnp.asarray(actions))
    return jnp.concatenate([jnp.asarray(start)[None], states])
