"""Physics system identification: simulator, surrogates, identification, CLI."""

import json

import numpy as np
import pytest

from gw_jax.cli import main
from gw_jax.physics import system as sysmod
from gw_jax.physics.identify import identify_cmaes, identify_gradient, relative_error
from gw_jax.physics.surrogate import Surrogate, evaluate_one_step, train_surrogate


@pytest.fixture(scope="module")
def pinn():
    """A small PINN surrogate, trained once for the module (a few seconds)."""
    surrogate, losses = train_surrogate("pinn", sysmod.make_dataset(0, 128), steps=1500)
    return surrogate, losses


def _swing(params, steps=150):
    """Peak |position| and RMS velocity under one fixed excitation."""
    actions = sysmod.excitation(np.random.default_rng(0), 1, steps)[0]
    states = sysmod.SliderSystem().simulate(params, actions)
    return np.abs(states[:, 0]).max(), np.sqrt(np.mean(states[:, 1] ** 2))


def test_simulator_responds_to_each_parameter():
    base = np.array([1.0, 20.0, 1.0])
    peak, speed = _swing(base)
    assert _swing(base * [1, 2, 1])[0] < 0.8 * peak  # stiffer spring: smaller excursion
    assert _swing(base * [1, 1, 2.5])[1] < 0.9 * speed  # more damping: slower
    assert _swing(base * [2.5, 1, 1])[1] < 0.9 * speed  # more friction: slower
    assert _swing(base)[0] == peak  # deterministic


def test_pinn_fits_one_step_dynamics_beyond_its_physics_prior(pinn):
    surrogate, losses = pinn
    heldout = sysmod.make_dataset(99, 8)
    # Untrained = the textbook model alone (the residual starts at zero); an untrained MLP is far worse.
    untrained, _ = train_surrogate("pinn", sysmod.make_dataset(0, 4), steps=1)
    untrained_mlp, _ = train_surrogate("mlp", sysmod.make_dataset(0, 4), steps=1)
    assert losses[-50:].mean() < 0.7 * losses[:50].mean()
    assert evaluate_one_step(surrogate, heldout) < 0.75 * evaluate_one_step(untrained, heldout)
    assert evaluate_one_step(untrained, heldout) < 0.01 * evaluate_one_step(untrained_mlp, heldout)
    assert evaluate_one_step(surrogate, heldout) < 3e-3


def test_surrogate_sizes_match_the_linen_version():
    import jax
    from flax import nnx

    from gw_jax.physics.surrogate import build

    scales = {"state": [1.0, 1.0], "action": 1.0, "delta": [1.0, 1.0]}
    sizes = {kind: sum(leaf.size for leaf in jax.tree.leaves(nnx.state(build(kind, scales), nnx.Param)))
             for kind in ("pinn", "mlp")}
    assert sizes == {"pinn": 1_314, "mlp": 8_898}  # the Flax Linen networks docs/physics.md was measured with


def test_surrogate_checkpoint_roundtrip(pinn, tmp_path):
    surrogate, _ = pinn
    surrogate.save(tmp_path / "s")
    loaded = Surrogate.load(tmp_path / "s")
    assert loaded.kind == "pinn" and loaded.scales == surrogate.scales
    state, action, phys = np.array([[0.1, -0.3]]), np.array([2.0]), np.array([[1.0, 20.0, 1.0]])
    np.testing.assert_allclose(loaded.predict(state, action, phys), surrogate.predict(state, action, phys))


def test_gradient_identification_recovers_heldout_system(pinn):
    surrogate, _ = pinn
    heldout = sysmod.make_dataset(1234, 2)
    for truth, states, actions in zip(heldout["params"], heldout["states"], heldout["actions"], strict=True):
        result = identify_gradient(surrogate, states, actions, restarts=4, steps=150)
        assert np.all(relative_error(result["params"], truth) < [0.15, 0.05, 0.15]), (result["params"], truth)
        assert np.all((result["params"] >= sysmod.PARAM_LOW) & (result["params"] <= sysmod.PARAM_HIGH))
        assert result["loss_history"][-1] < result["loss_history"][0]


def test_cmaes_recovers_heldout_system():
    heldout = sysmod.make_dataset(4321, 1)
    truth = heldout["params"][0]
    result = identify_cmaes(heldout["states"][0], heldout["actions"][0])
    assert np.all(relative_error(result["params"], truth) < 0.05), (result["params"], truth)


def test_cli_fit_writes_mjcf_and_json(tmp_path, pinn):
    traj = tmp_path / "traj.npz"
    assert main(["sysid", "simulate", "--out", str(traj), "--friction", "1.5", "--stiffness", "30",
                 "--damping", "0.8"]) == 0
    ckpt = tmp_path / "pinn"
    pinn[0].save(ckpt)
    out = tmp_path / "fit"
    assert main(["sysid", "fit", "--trajectories", str(traj), "--out", str(out), "--surrogate", str(ckpt),
                 "--restarts", "4", "--iterations", "150"]) == 0
    params = json.loads((out / "params.json").read_text())
    assert abs(params["stiffness"] - 30) / 30 < 0.05
    assert abs(params["friction"] - 1.5) / 1.5 < 0.15
    xml = (out / "params.xml").read_text()
    assert "<joint" in xml and 'frictionloss="' in xml and 'stiffness="' in xml and 'damping="' in xml


def test_cli_fit_trains_and_caches_a_surrogate(tmp_path, capsys):
    traj = tmp_path / "traj.npz"
    main(["sysid", "simulate", "--out", str(traj), "--steps", "100"])
    out = tmp_path / "fit"
    args = ["sysid", "fit", "--trajectories", str(traj), "--out", str(out), "--train-rollouts", "16",
            "--train-steps", "50", "--restarts", "2", "--iterations", "20"]
    assert main(args) == 0
    assert (out / "surrogate_pinn").is_dir() and (out / "params.xml").is_file()
    assert "trained pinn" in capsys.readouterr().out
    assert main(args) == 0  # the second run reloads the cached Orbax surrogate
    assert "trained pinn" not in capsys.readouterr().out


@pytest.mark.parametrize("arrays, needle", [
    (None, "no such file"),
    ({"actions": np.zeros(10)}, "'states'"),
    ({"states": np.zeros((11, 3)), "actions": np.zeros(10)}, "'states'"),
    ({"states": np.zeros((11, 2)), "actions": np.zeros(7)}, "'actions'"),
    ({"states": np.zeros((11, 2)), "actions": np.zeros(10), "dt": 0.02}, "'dt'"),
])
def test_cli_bad_input_exits_2(tmp_path, capsys, arrays, needle):
    traj = tmp_path / "bad.npz"
    if arrays is not None:
        np.savez(traj, **arrays)
    assert main(["sysid", "fit", "--trajectories", str(traj), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and needle in err


def test_cli_bad_checkpoint_exits_2(tmp_path, capsys):
    traj = tmp_path / "traj.npz"
    main(["sysid", "simulate", "--out", str(traj), "--steps", "50"])
    (tmp_path / "old.msgpack").write_bytes(b"\x80")  # the single-file format of earlier gw-jax versions
    (tmp_path / "junk").mkdir()  # a folder that is no Orbax checkpoint
    for name, needle in (("old.msgpack", "retrain"), ("junk", "not a gw-jax surrogate"), ("nope", "no such folder")):
        capsys.readouterr()
        assert main(["sysid", "fit", "--trajectories", str(traj), "--out", str(tmp_path / "o"),
                     "--surrogate", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert name in err and needle in err and len(err.splitlines()) == 1, err


@pytest.mark.slow
def test_cli_eval_small(tmp_path):
    out_json = tmp_path / "m.json"
    assert main(["sysid", "eval", "--systems", "2", "--train-rollouts", "64", "--train-steps", "300",
                 "--iterations", "60", "--json", str(out_json), "--out", str(tmp_path)]) == 0
    metrics = json.loads(out_json.read_text())
    assert {"rel_err_friction", "rel_err_stiffness", "rel_err_damping", "methods"} <= set(metrics)
    assert (tmp_path / "physics_convergence.png").is_file() and (tmp_path / "sysid_report.md").is_file()
