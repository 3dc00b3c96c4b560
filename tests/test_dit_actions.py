"""Action conditioning of the DiT (``action_dim``): released weights give their old outputs at zero init,
trained action weights change them, and the weights round-trip through the reference-layout export."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gw_jax.models.action_embed import chunk_actions
from gw_jax.models.dit import GigaWorld0DiT
from test_dit import FIXTURE_NAMES, call, cases, checkpoint_dir

ACTION_DIM, ACTION_FRAMES = 5, 2


def _actions(case, seed):
    b, t = case["x"].shape[0], case["timesteps"].reshape(case["x"].shape[0], -1).shape[1]
    return np.random.default_rng(seed).normal(size=(b, t, ACTION_FRAMES, ACTION_DIM)).astype(np.float32) * 3


def _perturb_action_layers(model, scale=0.5):
    """Non-zero last layers: what training the action MLPs does."""
    params = nnx.state(model.action_embedder, nnx.Param)
    keys = iter(jax.random.split(jax.random.key(1), len(jax.tree.leaves(params))))
    nnx.update(model.action_embedder, jax.tree.map(lambda p: p + scale * jax.random.normal(next(keys), p.shape),
                                                   params))


FAST = ("gigaworld0_dit_tiny", "gigaworld0_dit_tiny_moe")  # the rest (20-30 s each here) in the slow tier


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in FIXTURE_NAMES])
def test_release_weights_give_the_fixture_outputs_whatever_the_actions(name, tmp_path):
    """A released checkpoint has no action weights: loaded with action_dim set, the action MLPs start with
    zero last layers and every fixture output is unchanged (within the parity tolerance, and bit-identical to the
    model without actions) for random actions, with the present flag on or off."""
    directory = checkpoint_dir(name, tmp_path)
    plain = GigaWorld0DiT.from_pretrained(directory)
    model = GigaWorld0DiT.from_pretrained(directory, action_dim=ACTION_DIM, action_frames=ACTION_FRAMES)
    for i, case in enumerate(cases(name)):
        ref = case["out"] if "out" in case else case["out_base"]
        base = call(plain, case)
        for kwargs in (dict(actions=_actions(case, i)), dict(actions=_actions(case, i + 10), action_present=0.0)):
            out = call(model, case, **kwargs)
            assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max(), name
            np.testing.assert_array_equal(out, base)


def test_trained_action_layers_change_the_outputs(tmp_path):
    """The test above can fail: with non-zero action layers, different actions give different outputs, and
    the 'no actions' mode differs from both."""
    directory = checkpoint_dir("gigaworld0_dit_tiny", tmp_path)
    model = GigaWorld0DiT.from_pretrained(directory, action_dim=ACTION_DIM, action_frames=ACTION_FRAMES)
    _perturb_action_layers(model)
    case = next(cases("gigaworld0_dit_tiny"))
    a, b, none = call(model, case, actions=_actions(case, 0)), call(model, case, actions=_actions(case, 1)), \
        call(model, case)
    scale = np.abs(case["out"]).max()
    assert np.abs(a - b).max() > 1e-2 * scale
    assert np.abs(a - case["out"]).max() > 1e-2 * scale
    assert np.abs(none - a).max() > 1e-2 * scale
    # dropped actions (present 0) are the no-action mode, whatever their values
    np.testing.assert_allclose(call(model, case, actions=_actions(case, 2), action_present=0.0), none, atol=1e-6)


def test_action_weights_round_trip_through_save_pretrained(tmp_path):
    """Export writes the action MLPs under Cosmos-Predict2's names and action_dim into config.json; loading
    the folder back restores them exactly. A model without actions exports no action keys."""
    import json

    from gw_jax.convert.safetensors_io import SafetensorsReader

    model = GigaWorld0DiT.from_pretrained(checkpoint_dir("gigaworld0_dit_tiny", tmp_path),
                                          action_dim=ACTION_DIM, action_frames=ACTION_FRAMES)
    _perturb_action_layers(model)
    model.save_pretrained(tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["action_dim"], config["action_frames"]) == (ACTION_DIM, ACTION_FRAMES)
    keys = set(SafetensorsReader.open(tmp_path / "out", "diffusion_pytorch_model").shapes)
    assert {"action_embedder_B_D.fc1.weight", "action_embedder_B_3D.fc2.bias"} <= keys
    back = GigaWorld0DiT.from_pretrained(tmp_path / "out")
    case = next(cases("gigaworld0_dit_tiny"))
    actions = _actions(case, 3)
    np.testing.assert_array_equal(call(back, case, actions=actions), call(model, case, actions=actions))

    (tmp_path / "x").mkdir()
    GigaWorld0DiT.from_pretrained(checkpoint_dir("gigaworld0_dit_tiny", tmp_path / "x")).save_pretrained(
        tmp_path / "plain")
    plain_keys = set(SafetensorsReader.open(tmp_path / "plain", "diffusion_pytorch_model").shapes)
    assert not any(k.startswith("action_embedder") for k in plain_keys)
    assert "action_dim" not in json.loads((tmp_path / "plain" / "config.json").read_text())


def test_actions_without_action_dim_and_wrong_shapes_are_errors(tmp_path):
    directory = checkpoint_dir("gigaworld0_dit_tiny", tmp_path)
    case = next(cases("gigaworld0_dit_tiny"))
    with pytest.raises(ValueError, match="without action_dim"):
        call(GigaWorld0DiT.from_pretrained(directory), case, actions=_actions(case, 0))
    model = GigaWorld0DiT.from_pretrained(directory, action_dim=ACTION_DIM + 1, action_frames=ACTION_FRAMES)
    with pytest.raises(ValueError, match="the DiT expects"):
        call(model, case, actions=_actions(case, 0))


def test_chunk_actions_groups_frames_by_latent():
    """F = 1 + k (T - 1) frames -> (T, k) chunks; latent 0 repeats frame 0's action."""
    actions = jnp.arange(9, dtype=jnp.float32).reshape(1, 9, 1)
    chunks = np.asarray(chunk_actions(actions, 3, 4))[0, :, :, 0]
    np.testing.assert_array_equal(chunks, [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_array_equal(np.asarray(chunk_actions(actions, 9, 1))[0, :, 0, 0], np.arange(9))
    with pytest.raises(ValueError, match="do not cover"):
        chunk_actions(actions, 4, 4)
