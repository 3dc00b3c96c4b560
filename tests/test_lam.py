"""Latent action model: shapes, the probe's R² bookkeeping, learning on a moving square, checkpoints, the CLI."""

import json

import numpy as np
import pytest

from gw_jax.cli import main

SIZE = 16  # tiny frames: the tests check learning and plumbing, not the documented accuracy (docs/lam.md)


def moving_squares(episodes: int, frames: int, seed: int = 0):
    """Frames (N, T, SIZE, SIZE, 3) in [0, 1] of a 4x4 square that moves by a random (dy, dx) in {-2..2} each
    step (its 'action', (N, T-1, 2)), on a dark background."""
    rng = np.random.default_rng(seed)
    video = np.zeros((episodes, frames, SIZE, SIZE, 3), np.float32) + 0.1
    moves = rng.integers(-2, 3, size=(episodes, frames - 1, 2))
    for n in range(episodes):
        pos = rng.integers(4, SIZE - 8, size=2)
        for t in range(frames):
            video[n, t, pos[0]:pos[0] + 4, pos[1]:pos[1] + 4] = (0.9, 0.6, 0.2)
            if t < frames - 1:
                pos = np.clip(pos + moves[n, t], 0, SIZE - 4)
    return video, moves.astype(np.float32)


def test_model_shapes_and_copy_at_init():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from gw_jax.lam.models import LatentActionModel, create, pool_frames

    model = create(SIZE, latent_dim=5)
    x = jnp.asarray(moving_squares(1, 3)[0][0])  # (3, S, S, 3) as a batch of 3 frames
    shapes = nnx.eval_shape(lambda m: m(x, x, key=jax.random.key(0)), model)  # shape inference: instant
    assert shapes[0].shape == x.shape and shapes[1].shape == (3, 5)
    # the decoder predicts a change with a zero-initialised head: untrained, it copies x_t exactly
    z, pred = nnx.jit(lambda m, a, b: (m.encode(a, b), m.decode(a, m.encode(a, b))))(model, x, x[::-1])
    assert z.shape == (3, 5) and float(jnp.abs(z).max()) <= 1.0
    np.testing.assert_array_equal(np.asarray(pred), np.asarray(x))
    uint8 = np.full((2, 4, 2 * SIZE, 2 * SIZE, 3), 255, np.uint8)
    assert pool_frames(uint8, SIZE).shape == (2, 4, SIZE, SIZE, 3) and float(pool_frames(uint8, SIZE).max()) == 1.0
    with pytest.raises(ValueError, match="multiple of 8"):
        LatentActionModel(12, rngs=nnx.Rngs(0))


def test_probe_r2_bookkeeping():
    from gw_jax.lam.probe import pixel_pca_features, r2_scores, ridge_probe, transition_targets

    rng = np.random.default_rng(0)
    y = rng.normal(size=(2000, 3)) * [1.0, 0.1, 5.0]
    linear = y @ rng.normal(size=(3, 7)) + 0.5  # features an exact linear function of the targets
    exact = ridge_probe(linear[:1200], y[:1200], linear[1200:], y[1200:], alpha=1e-8)
    assert exact["r2"] == pytest.approx(1.0, abs=1e-6)
    noise = rng.normal(size=(2000, 7))
    chance = ridge_probe(noise[:1200], y[:1200], noise[1200:], y[1200:])
    assert np.all(np.abs(chance["r2"]) < 0.03) and chance["pred"].shape == (800, 3)
    half = ridge_probe(np.c_[y[:, :1], noise[:, :6]][:1200], y[:1200], np.c_[y[:, :1], noise[:, :6]][1200:], y[1200:])
    assert half["r2"][0] > 0.99 and abs(half["r2"][1]) < 0.03  # only what the features hold is recovered
    assert r2_scores(np.zeros((4, 1)), np.ones((4, 1)))[0] == 0.0  # a constant target scores 0, not nan
    # pixel PCA: differences that live in a 2-D subspace are recovered by 2 components
    diffs = (y[:, :2] @ rng.normal(size=(2, 48))).reshape(2000, 4, 4, 3)
    train_f, test_f = pixel_pca_features(diffs[:1200], diffs[1200:], 2)
    assert train_f.shape == (1200, 2) and ridge_probe(train_f, y[:1200, :2], test_f, y[1200:, :2])["r2_mean"] > 0.999
    # targets: transition t -> t+1 pairs the command at t with the joints at t and t+1
    actions, joints = rng.normal(size=(2, 5, 7)), rng.normal(size=(2, 5, 7))
    targets = transition_targets(actions, joints)
    assert {k: v.shape for k, v in targets.items()} == dict.fromkeys(("action", "command_offset", "joint_delta"),
                                                                     (2, 4, 7))
    np.testing.assert_allclose(targets["joint_delta"][1, 2], joints[1, 3] - joints[1, 2])
    np.testing.assert_allclose(targets["command_offset"][0, 0], actions[0, 0] - joints[0, 0])


@pytest.mark.slow  # ~30 CPU-s, mostly compiling
def test_lam_learns_moving_square_and_checkpoint_round_trip(tmp_path):
    from gw_jax.lam.probe import ridge_probe
    from gw_jax.lam.train import latent_actions, load, next_frame_mse, save, train_lam

    video, moves = moving_squares(24, 6)
    model, losses = train_lam(video[:16], steps=150, batch=32, lr=3e-3, progress=False)
    assert np.mean(losses[-15:]) < 0.5 * np.mean(losses[:5]), (losses[:5], losses[-15:])
    z = latent_actions(model, video)
    assert z.shape == (24, 5, 7)
    # on unseen episodes the decoder needs each pair's own latent: another episode's does worse
    own = next_frame_mse(model, video[16:], z[16:])
    assert own < 0.7 * next_frame_mse(model, video[16:], np.roll(z[16:], 1, axis=0))  # 0.48 x when written
    # and the latent holds the move: a linear probe on held-out episodes
    probe = ridge_probe(z[:16].reshape(-1, 7), moves[:16].reshape(-1, 2), z[16:].reshape(-1, 7),
                        moves[16:].reshape(-1, 2))
    assert probe["r2_mean"] > 0.25, probe["r2"]  # 0.43 when written
    meta = dict(size=SIZE, latent_dim=7, noise=0.1, seed=0)
    save(tmp_path / "w", meta, model)
    meta_back, back = load(tmp_path / "w")
    assert meta_back["latent_dim"] == 7
    np.testing.assert_array_equal(latent_actions(back, video[16:]), z[16:])


def test_cli_bad_inputs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "w").mkdir()
    cases = [
        (["lam", "train", "--data", str(tmp_path / "missing"), "--workdir", str(tmp_path / "w")],
         "no such data folder"),
        (["lam", "train", "--data", str(tmp_path / "empty"), "--workdir", str(tmp_path / "w")], "no episodes"),
        (["lam", "train", "--data", str(tmp_path / "empty"), "--workdir", str(tmp_path / "w"), "--steps", "0"],
         "--steps must be at least 1"),
        (["lam", "train", "--data", str(tmp_path / "empty"), "--workdir", str(tmp_path / "w"), "--size", "12"],
         "--size 12"),
        (["lam", "probe", "--workdir", str(tmp_path / "w"), "--data", str(tmp_path / "empty")], "meta.json: missing"),
        (["lam", "label", str(tmp_path / "empty"), str(tmp_path / "out"), "--workdir", str(tmp_path / "w")],
         "no .mp4 videos"),
        (["lam", "label", str(tmp_path / "nope"), str(tmp_path / "out"), "--workdir", str(tmp_path / "w")],
         "no such video folder"),
        (["lam", "train", "--data", "gs://bucket/x", "--workdir", str(tmp_path / "w")], "gs://"),
        (["demo", "--quick", "--out", str(tmp_path / "d"), "--lam-workdir", str(tmp_path / "w")],
         "meta.json: missing"),  # checked before the demo simulates anything
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err, (argv, err)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, capsys):
    from gw_jax.data.sim import simulate_dataset

    data = simulate_dataset(tmp_path / "data", 4, seed=5, progress=False, frames=5, height=SIZE, width=SIZE, fps=4.0)
    work = tmp_path / "w"
    assert main(["lam", "train", "--data", str(data), "--workdir", str(work), "--steps", "3", "--size", str(SIZE),
                 "--batch", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_episodes"] == 4 and summary["frames"] == 5
    assert main(["lam", "probe", "--workdir", str(work), "--data", str(data), "--json", str(tmp_path / "p.json")]) == 0
    results = json.loads((tmp_path / "p.json").read_text())
    assert results["episodes_seen_in_lam_training"] == [0, 1, 2, 3]  # probing the training folder says so
    assert set(results["targets"]["joint_delta"]) == {"lam", "untrained_lam", "pixel_pca", "lam_quadratic", "test_std",
                                                      "untrained_lam_quadratic", "pixel_pca_quadratic"}
    assert (work / "probe.png").is_file()
    capsys.readouterr()
    assert main(["lam", "label", str(data), str(tmp_path / "labels"), "--workdir", str(work)]) == 0
    z = np.load(tmp_path / "labels" / "0.latent_actions.npy")
    assert z.shape == (5, 7) and z.dtype == np.float32
    np.testing.assert_array_equal(z[0], z[1])  # row 0 repeats row 1 (the action behind frame 1)
    # the demo's layout: the simulator's `actions` one (row e: the move e -> e+1, the last row repeated)
    from gw_jax.lam.pipeline import episode_latent_actions

    (sim_layout,) = episode_latent_actions(work, data, [0])
    np.testing.assert_allclose(sim_layout[:-1], z[1:], atol=1e-6)
    np.testing.assert_array_equal(sim_layout[-1], sim_layout[-2])
