"""Flax surrogates ``M(s, a; f, p, d) -> s'`` of the slider, and their training.

Two models, trained identically (same data, loss, optimiser and steps):

* ``PhysicsSurrogate`` (the PINN): known structure ``m a = u - p x - d v - f tanh(v / eps)``,
  integrated like MuJoCo's Euler (semi-implicit, damping implicit), plus a small residual MLP
  (zero at init) and a learned friction smoothing ``eps``. It only has to learn what the textbook
  model gets wrong, e.g. MuJoCo's soft friction constraint around stiction.
* ``MLPSurrogate`` (the ablation): a plain MLP from normalised ``(s, a, f, p, d)`` to ``s' - s``.

Both take physical units; ``Surrogate`` bundles a module with its weights so ``predict`` is a pure
function usable inside ``jit``/``grad``/``vmap``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from gw_jax.errors import UserInputError
from gw_jax.physics.system import DT, MASS, PARAM_HIGH, PARAM_LOW

KINDS = ("pinn", "mlp")


class _MLP(nn.Module):
    widths: tuple[int, ...]
    out: int
    zero_last: bool = False

    @nn.compact
    def __call__(self, x):
        for width in self.widths:
            x = nn.gelu(nn.Dense(width)(x))
        init = nn.initializers.zeros if self.zero_last else nn.initializers.lecun_normal()
        return nn.Dense(self.out, kernel_init=init)(x)


def _features(state, action, phys, scales):
    """Inputs scaled to order one: state / its std, force / its std, parameters to [0, 1]."""
    unit = (phys - PARAM_LOW) / (PARAM_HIGH - PARAM_LOW)
    unit = jnp.broadcast_to(unit, state.shape[:-1] + (3,))  # one parameter set may serve many states
    return jnp.concatenate([state / jnp.asarray(scales["state"]), action[..., None] / scales["action"],
                            unit], axis=-1)


class PhysicsSurrogate(nn.Module):
    scales: dict
    widths: tuple[int, ...] = (32, 32)

    @nn.compact
    def __call__(self, state, action, phys):
        x, v = state[..., 0], state[..., 1]
        friction, stiffness, damping = phys[..., 0], phys[..., 1], phys[..., 2]
        eps = jnp.exp(self.param("log_eps", nn.initializers.constant(np.log(0.02)), ()))
        residual = _MLP(self.widths, 1, zero_last=True)(_features(state, action, phys, self.scales))[..., 0]
        force = action - stiffness * x - friction * jnp.tanh(v / eps) + self.scales["action"] * residual
        # MuJoCo's Euler integrator treats joint damping implicitly: (m + dt d) dv = dt (F - d v).
        v_next = v + DT * (force - damping * v) / (MASS + DT * damping)
        return jnp.stack([x + DT * v_next, v_next], axis=-1)


class MLPSurrogate(nn.Module):
    scales: dict
    widths: tuple[int, ...] = (64, 64, 64)

    @nn.compact
    def __call__(self, state, action, phys):
        delta = _MLP(self.widths, 2)(_features(state, action, phys, self.scales))
        return state + delta * jnp.asarray(self.scales["delta"])


@dataclasses.dataclass
class Surrogate:
    """A trained surrogate: ``kind`` in ``KINDS``, the per-feature ``scales`` and Flax ``weights``."""

    kind: str
    scales: dict
    weights: dict

    @property
    def module(self) -> nn.Module:
        scales = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in self.scales.items()}
        return (PhysicsSurrogate if self.kind == "pinn" else MLPSurrogate)(scales=_Frozen(scales))

    def predict(self, state, action, phys):
        """Next state for ``state (..., 2)``, ``action (...)``, ``phys (..., 3)`` in physical units."""
        return self.module.apply({"params": self.weights}, state, action, phys)

    def save(self, path) -> None:
        blob = {"kind": self.kind, "scales": json.dumps(self.scales),
                "weights": jax.tree.map(np.asarray, self.weights)}
        Path(path).write_bytes(serialization.msgpack_serialize(blob))

    @classmethod
    def load(cls, path) -> Surrogate:
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"surrogate checkpoint {path}: no such file")
        try:
            blob = serialization.msgpack_restore(path.read_bytes())
            return cls(str(blob["kind"]), json.loads(str(blob["scales"])), blob["weights"])
        except Exception as e:  # noqa: BLE001 - any decode failure is a bad file
            raise UserInputError(f"surrogate checkpoint {path}: not a gw-jax surrogate ({e})") from None


class _Frozen(dict):
    """A hashable dict, so scales can be a Flax module attribute."""

    def __hash__(self):
        return hash(tuple(sorted(self.items())))


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
    if kind not in KINDS:
        raise UserInputError(f"surrogate kind {kind!r}: choose from {KINDS}")
    state, action, phys, next_state = transitions(dataset)
    delta = next_state - state
    scales = {"state": state.std(0).tolist(), "action": float(action.std()), "delta": delta.std(0).tolist()}
    surrogate = Surrogate(kind, scales, {})
    module = surrogate.module
    weights = module.init(jax.random.PRNGKey(seed), state[:2], action[:2], phys[:2])["params"]
    schedule = optax.cosine_decay_schedule(lr, steps)
    optimiser = optax.adam(schedule)
    data = tuple(jnp.asarray(a, jnp.float32) for a in (state, action, phys, next_state))
    delta_scale = jnp.asarray(scales["delta"], jnp.float32)

    def loss_fn(w, idx):
        predict = lambda s, a, p: module.apply({"params": w}, s, a, p)  # noqa: E731
        return one_step_loss(predict, *(d[idx] for d in data), delta_scale)

    def train_step(carry, key):
        w, opt_state = carry
        idx = jax.random.randint(key, (batch,), 0, len(state))
        loss, grads = jax.value_and_grad(loss_fn)(w, idx)
        updates, opt_state = optimiser.update(grads, opt_state, w)
        return (optax.apply_updates(w, updates), opt_state), loss

    keys = jax.random.split(jax.random.PRNGKey(seed + 1), steps)
    (weights, _), losses = jax.jit(lambda c, k: jax.lax.scan(train_step, c, k))(
        (weights, optimiser.init(weights)), keys)
    surrogate.weights = jax.tree.map(np.asarray, weights)
    return surrogate, np.asarray(losses)


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
