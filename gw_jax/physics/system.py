"""A one-joint MuJoCo system with friction, stiffness and damping, and rollouts of it.

A 1 kg block on a horizontal slide joint, pushed by a force motor. The three physical parameters
are joint attributes: ``frictionloss`` (dry Coulomb friction, N), ``stiffness`` (spring to x=0,
N/m) and ``damping`` (viscous, N*s/m). The state is ``[position, velocity]``; an action is the
motor force (N) held for one step of ``DT`` seconds.
"""

from __future__ import annotations

import mujoco
import numpy as np

PARAM_NAMES = ("friction", "stiffness", "damping")
# Physical ranges; identification is clamped to these by a sigmoid reparameterisation.
PARAM_LOW = np.array([0.2, 5.0, 0.2])
PARAM_HIGH = np.array([3.0, 50.0, 3.0])
MASS = 1.0
DT = 0.01
FORCE_LIMIT = 30.0

_MJCF = f"""
<mujoco model="slider">
  <option timestep="{DT}" gravity="0 0 0" integrator="Euler"/>
  <worldbody>
    <body name="block">
      <joint name="slider" type="slide" axis="1 0 0"/>
      <geom type="box" size=".05 .05 .05" mass="{MASS}" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="slider" gear="1" ctrllimited="true" ctrlrange="-{FORCE_LIMIT} {FORCE_LIMIT}"/>
  </actuator>
</mujoco>
"""


def to_unit(params: np.ndarray) -> np.ndarray:
    """Physical parameters -> [0, 1] per parameter (the surrogates' and optimisers' coordinates)."""
    return (np.asarray(params) - PARAM_LOW) / (PARAM_HIGH - PARAM_LOW)


def from_unit(unit: np.ndarray) -> np.ndarray:
    return PARAM_LOW + np.asarray(unit) * (PARAM_HIGH - PARAM_LOW)


def sample_params(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` parameter triples ``(friction, stiffness, damping)``, uniform in the physical ranges."""
    return from_unit(rng.uniform(size=(n, 3)))


def excitation(rng: np.random.Generator, n: int, steps: int) -> np.ndarray:
    """``(n, steps)`` motor forces: a random multisine plus random steps.

    The sines (0.2-3 Hz) sweep the block through many velocity reversals and amplitudes, so the
    spring (position-proportional), damper (velocity-proportional) and friction (sign of velocity)
    leave separable fingerprints; the steps add slow offsets that load the spring statically.
    """
    t = np.arange(steps) * DT
    freqs = rng.uniform(0.2, 3.0, size=(n, 5, 1))
    phases = rng.uniform(0, 2 * np.pi, size=(n, 5, 1))
    amps = rng.uniform(2.0, 6.0, size=(n, 5, 1))
    sines = (amps * np.sin(2 * np.pi * freqs * t + phases)).sum(1)
    hold = steps // 4
    levels = rng.uniform(-8.0, 8.0, size=(n, -(-steps // hold)))
    step_part = np.repeat(levels, hold, axis=1)[:, :steps]
    return np.clip(sines + step_part, -FORCE_LIMIT, FORCE_LIMIT)


class SliderSystem:
    """The MuJoCo model; ``simulate`` sets the parameters and rolls out an action sequence."""

    def __init__(self):
        self.model = mujoco.MjModel.from_xml_string(_MJCF)
        self.data = mujoco.MjData(self.model)

    def set_params(self, params) -> None:
        friction, stiffness, damping = (float(v) for v in params)
        self.model.dof_frictionloss[0] = friction
        self.model.jnt_stiffness[0] = stiffness
        self.model.dof_damping[0] = damping

    def simulate(self, params, actions: np.ndarray, start=(0.0, 0.0)) -> np.ndarray:
        """States ``(len(actions) + 1, 2)`` from ``start`` under ``actions`` with ``params``."""
        self.set_params(params)
        model, data = self.model, self.data
        mujoco.mj_resetData(model, data)
        data.qpos[0], data.qvel[0] = start
        states = np.empty((len(actions) + 1, 2))
        states[0] = start
        for i, force in enumerate(actions):
            data.ctrl[0] = force
            mujoco.mj_step(model, data)
            states[i + 1] = data.qpos[0], data.qvel[0]
        return states


def make_dataset(seed: int, rollouts: int, steps: int = 200) -> dict[str, np.ndarray]:
    """Random parameters paired with random excitations, simulated.

    Returns ``params (N, 3)``, ``actions (N, steps)`` and ``states (N, steps + 1, 2)``.
    """
    rng = np.random.default_rng(seed)
    params = sample_params(rng, rollouts)
    actions = excitation(rng, rollouts, steps)
    system = SliderSystem()
    states = np.stack([system.simulate(p, a) for p, a in zip(params, actions, strict=True)])
    return {"params": params, "actions": actions, "states": states}


def mjcf_snippet(params) -> str:
    """The identified parameters as MJCF joint attributes, ready to paste into a model."""
    friction, stiffness, damping = (float(v) for v in params)
    return (f'<joint name="slider" type="slide" axis="1 0 0" stiffness="{stiffness:.6g}" '
            f'damping="{damping:.6g}" frictionloss="{friction:.6g}"/>\n')
