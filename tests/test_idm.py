"""Inverse dynamics: model shapes, metrics, the segmenter and IDM actually learn, and the CLI end to end."""

import json
import shutil

import numpy as np
import pytest

from gw_jax.cli import main

SIZE, FRAMES = 32, 9  # tiny episodes: the tests check learning and plumbing, not final accuracy


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    from gw_jax.data.sim import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("idm_data"), 5, seed=3, progress=False, frames=FRAMES,
                            height=SIZE, width=SIZE, fps=4.0, random_background=True, distractors=1)


@pytest.fixture(scope="module")
def arrays(episodes):
    from gw_jax.idm.data import load_episodes

    return load_episodes(episodes)


def test_model_shapes_and_sizes():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from gw_jax.idm.models import IDM, UNet

    def build(cls, *args):  # shape inference only: no compilation, so this stays instant
        return nnx.eval_shape(lambda: cls(*args, rngs=nnx.Rngs(0)))

    def shape(model, x):
        return nnx.eval_shape(lambda m, x: m(x), model, x).shape

    def size(model):
        return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))

    images = jnp.zeros((2, 3, SIZE, SIZE, 3))
    assert shape(build(UNet), images) == (2, 3, SIZE, SIZE)
    assert shape(build(IDM, (SIZE, SIZE)), images) == (2, 3, 7)
    assert shape(build(IDM, (SIZE, SIZE)), jnp.zeros((1, 11, SIZE, SIZE, 3))) == (1, 11, 7)  # any clip length
    # The parameter counts of the earlier Flax Linen networks (docs/idm.md's results were measured with them).
    assert size(build(UNet)) == 29_929
    assert size(build(IDM, (64, 64))) == 1_875_582 and size(build(IDM, (32, 32))) == 1_482_366


def test_compiled_init_gives_the_eager_weights():
    """The IDM and its U-Net initialise in one compiled call (``models.compiled_init``): the same module and
    values as the eager build (without XLA's CPU optimisation passes: to within the last bit)."""
    import jax
    from flax import nnx

    from gw_jax.idm.models import ConvNorm
    from gw_jax.models.compiled_init import compiled_init

    def build(seed=1):  # one of the nets' layers: eager builds compile every initialiser, slow under load
        return ConvNorm(3 + 2, 8, rngs=nnx.Rngs(seed))

    eager = nnx.state(build())
    for compiled, exact in ((compiled_init(build), True), (compiled_init(build, optimise=False), False)):
        assert nnx.graphdef(compiled) == nnx.graphdef(nnx.eval_shape(build))
        for a, b in zip(jax.tree.leaves(nnx.state(compiled)), jax.tree.leaves(eager), strict=True):
            if exact:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)
    other = nnx.state(compiled_init(lambda: build(seed=2), optimise=False))
    assert not np.allclose(other["conv"]["kernel"][...], eager["conv"]["kernel"][...])


def test_joint_metrics():
    from gw_jax.idm.train import joint_metrics

    rng = np.random.default_rng(0)
    true = rng.normal(size=(4, 10, 3)) * [1.0, 0.5, 1e-4]
    perfect = joint_metrics(true, true, ["a", "b", "c"])
    assert perfect["r2_mean"] == pytest.approx(1.0) and perfect["mae_mean_rad"] == 0.0
    assert perfect["varying_joints"] == ["a", "b"]
    mean_only = joint_metrics(np.broadcast_to(true.mean((0, 1)), true.shape), true, ["a", "b", "c"])
    assert mean_only["r2_mean"] == pytest.approx(0.0, abs=1e-9)
    assert mean_only["joints"]["a"]["mae"] > 0.5


def test_data_cache_and_split(episodes, arrays):
    from gw_jax.idm.data import CACHE_NAME, split

    assert arrays["frames"].shape == (5, FRAMES, SIZE, SIZE, 3) and arrays["joints"].shape == (5, FRAMES, 7)
    assert (episodes / CACHE_NAME).is_file()
    train, heldout = split(5)
    assert len(heldout) == 1 and sorted([*train, *heldout]) == list(range(5))


def test_segmenter_learns_arm_masks(arrays):
    from gw_jax.idm.train import iou, predict_masks, train_segmenter

    frames, masks = arrays["frames"], arrays["masks"]
    params, losses = train_segmenter(frames[:4], masks[:4], steps=150, lr=1e-2, progress=False)
    held_out = iou(predict_masks(params, frames[4]), masks[4])
    assert np.mean(losses[-10:]) < 0.1 * losses[0], (losses[0], losses[-10:])
    assert held_out > 0.6, held_out  # a constant (all-background or all-arm) mask scores ~0 or ~0.1


def test_idm_fits_a_small_set(arrays, tmp_path):
    from gw_jax.idm.train import idm_inputs, joint_metrics, load, predict_joints, save, train_idm

    inputs = idm_inputs(arrays["frames"][:3], arrays["masks"][:3])
    params, norm, losses = train_idm(inputs, arrays["joints"][:3], steps=150, batch=3, progress=False)
    assert np.mean(losses[-10:]) < 0.1 * losses[0], (losses[0], losses[-10:])
    fitted = joint_metrics(predict_joints(params, norm, inputs), arrays["joints"][:3], arrays["joint_names"])
    assert fitted["r2_mean_varying"] > 0.8, fitted

    meta = dict(masked=False, frame_shape=list(arrays["frames"].shape[2:]), joint_names=arrays["joint_names"].tolist())
    save(tmp_path, meta, params, norm)  # Orbax round trip: the reloaded IDM predicts the same joints
    trained = load(tmp_path)
    assert (tmp_path / "idm").is_dir() and trained.segmenter is None
    np.testing.assert_array_equal(predict_joints(trained.idm, trained.norm, inputs[:1]),
                                  predict_joints(params, norm, inputs[:1]))


def test_cli_train_eval_label(episodes, tmp_path):
    workdir, report = tmp_path / "w", tmp_path / "eval.json"
    assert main(["idm", "train", "--data", str(episodes), "--workdir", str(workdir), "--steps", "3",
                 "--seg-steps", "3"]) == 0
    assert main(["idm", "eval", "--workdir", str(workdir), "--data", str(episodes), "--json", str(report)]) == 0
    metrics = json.loads(report.read_text())
    assert {"r2_mean", "mae_mean_rad", "segmenter_iou"} <= set(metrics)
    assert set(metrics["joints"]) == {"shoulder_yaw", "shoulder_pitch", "elbow", "wrist_pitch", "wrist_roll",
                                      "wrist_yaw", "gripper"}
    assert metrics["split"] == "heldout" and len(metrics["episodes"]) == 1
    assert (workdir / "eval_joints.png").stat().st_size > 1000

    videos, out = tmp_path / "videos", tmp_path / "labels"
    videos.mkdir()
    shutil.copy(episodes / "0.mp4", videos / "clip.mp4")
    assert main(["idm", "label", str(videos), str(out), "--workdir", str(workdir)]) == 0
    with np.load(out / "clip.joints.npz") as labelled:
        assert labelled["joints"].shape == (FRAMES, 7) and np.isfinite(labelled["joints"]).all()
    assert (out / "clip.joints.csv").read_text().startswith("shoulder_yaw,")

    from gw_jax.data.video import write_video

    write_video(videos / "big.mp4", np.zeros((4, 2 * SIZE, 2 * SIZE, 3), np.uint8))
    assert main(["idm", "label", str(videos), str(out), "--workdir", str(workdir)]) == 2  # wrong frame size


def test_bad_inputs_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["idm", "train", "--data", str(missing), "--workdir", str(tmp_path / "w")]) == 2
    assert str(missing) in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["idm", "train", "--data", str(tmp_path / "empty"), "--workdir", str(tmp_path / "w")]) == 2
    assert "no episodes" in capsys.readouterr().err
    assert main(["idm", "eval", "--workdir", str(missing), "--data", str(tmp_path / "empty")]) == 2
    assert "meta.json" in capsys.readouterr().err
    assert main(["idm", "label", str(missing), str(tmp_path / "out"), "--workdir", str(missing)]) == 2


def test_old_single_file_checkpoint_says_retrain(tmp_path, capsys):
    old = tmp_path / "old"  # what gw-jax wrote before the Orbax checkpoints
    old.mkdir()
    (old / "meta.json").write_text(json.dumps(dict(masked=True, frame_shape=[SIZE, SIZE, 3], joint_names=["a"])))
    (old / "idm.msgpack").write_bytes(b"\x80")
    assert main(["idm", "eval", "--workdir", str(old), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "old single-file format" in err and "retrain" in err and len(err.splitlines()) == 1, err
    (old / "idm.msgpack").unlink()
    (old / "idm").mkdir()  # folders that are no Orbax checkpoints
    (old / "segmenter").mkdir()
    assert main(["idm", "eval", "--workdir", str(old), "--data", str(tmp_path)]) == 2
    assert "not a readable IDM checkpoint" in capsys.readouterr().err


@pytest.mark.slow  # 50-90 s under load: trains a (3-step) IDM; the bookkeeping is in tests/test_idm_faithfulness.py
def test_cli_faithfulness_on_generator_like_frames(episodes, arrays, tmp_path, capsys):
    from gw_jax.data.rollouts import ROLLOUTS_FILE, save_rollouts
    from gw_jax.idm.data import match_frames

    workdir, run, report = tmp_path / "w", tmp_path / "run", tmp_path / "faithfulness.json"
    assert main(["idm", "train", "--data", str(episodes), "--workdir", str(workdir), "--steps", "3",
                 "--seg-steps", "3", "--pool", "2", "--clip-frames", "5"]) == 0
    small = match_frames(arrays, pool=2, clip_frames=5)  # what a codec with pool 2 and 5-frame clips would show
    rows = np.arange(len(small["frames"]))
    run.mkdir()
    save_rollouts(run / ROLLOUTS_FILE, dict(truth=small["frames"], action=small["frames"],
                                            action_swapped=small["frames"]),
                  small["joints"], small["joint_names"], dict(action=rows, action_swapped=np.roll(rows, 1)))
    assert main(["idm", "faithfulness", "--demo", str(run), "--workdir", str(workdir), "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert set(result["sets"]) == {"truth", "action", "action_swapped", "action_swapped_vs_own"}
    assert result["r2"]["truth"] == result["r2"]["action"]  # same frames, same commanded joints
    assert result["r2"]["action_swapped_vs_own"] == result["r2"]["truth"]
    assert result["idm"]["pool"] == 2 and result["frames_scored"] == 4
    assert result["idm_heldout"]["episodes"] == 1  # the IDM's own held-out episode, at 16x16 and 5 frames
    assert (run / "faithfulness.png").stat().st_size > 1000
    assert "R²" in capsys.readouterr().out

    save_rollouts(run / ROLLOUTS_FILE, dict(truth=arrays["frames"][:, :5]), arrays["joints"][:, :5],
                  small["joint_names"])  # full-size frames: not what this IDM was trained on
    assert main(["idm", "faithfulness", "--demo", str(run), "--workdir", str(workdir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--pool" in err and len(err.splitlines()) == 1, err
