"""Actions in the data path: pack-time statistics, normalised clips from the loader, the train step's dropout
and the sampling wrapper's action guidance."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gw_jax import diffusion
from gw_jax.data.episodes import load_clips
from gw_jax.data.pack import pack, read_index
from gw_jax.data.transforms import sample_frame_indices
from gw_jax.errors import UserInputError
from gw_jax.models.dit import GigaWorld0DiT
from gw_jax.models.text_hash import HashTextEncoder
from test_data_pack import loader, make_episodes


@pytest.fixture(scope="module")
def packed_with_actions(tmp_path_factory):
    root = tmp_path_factory.mktemp("actions")
    raw = make_episodes(root / "raw", count=4)
    pack(raw, root / "packed", text_encoder=HashTextEncoder(), shards=2, progress=False)
    return raw, root / "packed"


def test_pack_stores_action_statistics_and_the_loader_normalises_with_them(packed_with_actions):
    raw, packed = packed_with_actions
    actions = {i: np.load(raw / f"{i}.npz")["actions"] for i in range(4)}
    every = np.concatenate(list(actions.values()))
    stats = read_index(packed)["actions"]
    assert stats["dim"] == 7 and stats["frames"] == len(every) and stats["episodes"] == 4
    np.testing.assert_allclose(stats["mean"], every.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["std"], every.std(0), rtol=1e-5)
    batch = next(loader(packed, actions=True, shuffle=False))
    index = sample_frame_indices(9, 5)
    for row, episode in zip(batch["actions"], batch["episode"], strict=True):
        # frame e shows the result of the command issued at frame e - 1 (frame 0: its own)
        expected = (actions[int(episode)][np.maximum(index - 1, 0)] - stats["mean"]) / np.asarray(stats["std"])
        np.testing.assert_allclose(row, expected, rtol=1e-5, atol=1e-5)
    assert batch["actions"].shape == (2, 5, 7)
    assert "actions" not in next(loader(packed))  # only when asked for
    # held-out episodes read raw, normalised with the pack's statistics, give the same values
    clips = load_clips(raw, 4, 5, HashTextEncoder(), action_stats=stats)
    np.testing.assert_allclose(clips["actions"][int(batch["episode"][0])], batch["actions"][0], rtol=1e-5,
                               atol=1e-5)
    # `train --config.data.raw_dir`: statistics of the raw episodes themselves, the same as the pack's
    own = load_clips(raw, 4, 5, HashTextEncoder(), action_stats="own")
    for key in ("mean", "std"):
        np.testing.assert_allclose(own["action_stats"][key], stats[key], rtol=1e-6, atol=1e-7)
    assert own["action_stats"]["frames"] == stats["frames"] and own["action_stats"]["episodes"] == 4


def test_asking_for_actions_from_data_without_them_is_one_clear_error(tmp_path):
    raw = make_episodes(tmp_path / "raw", count=2)
    for npz in raw.glob("*.npz"):
        npz.unlink()
    pack(raw, tmp_path / "packed", text_encoder=HashTextEncoder(), progress=False)
    assert read_index(tmp_path / "packed")["actions"] is None
    with pytest.raises(UserInputError, match="no actions.*action_dim"):
        loader(tmp_path / "packed", batch_size=1, actions=True)
    with pytest.raises(UserInputError, match="no actions"):
        load_clips(raw, 2, 5, HashTextEncoder(), action_stats="own")


def _tiny_action_dit(seed=0):
    model = GigaWorld0DiT(max_img_h=4, max_img_w=4, max_frames=3, in_channels=5, out_channels=4, patch_spatial=2,
                          patch_temporal=1, model_channels=16, num_blocks=1, num_heads=2, crossattn_emb_channels=8,
                          adaln_lora_dim=4, action_dim=3, action_frames=2, rngs=nnx.Rngs(seed))
    params = nnx.state(model.action_embedder, nnx.Param)  # as if trained: non-zero last layers
    keys = iter(jax.random.split(jax.random.key(seed + 1), len(jax.tree.leaves(params))))
    nnx.update(model.action_embedder, jax.tree.map(lambda p: p + jax.random.normal(next(keys), p.shape), params))
    return model


def test_action_dropout_and_guidance():
    """drop_actions keeps about 1 - rate of the clips; dropped clips equal the no-action mode; guidance g gives
    out + g (out - null)."""
    keep = diffusion.drop_actions(jax.random.key(0), 10000, 0.2)
    assert abs(float(keep.mean()) - 0.8) < 0.02
    model = _tiny_action_dit()
    x = jax.random.normal(jax.random.key(1), (2, 5, 3, 4, 4))
    t, ctx = jnp.full((2, 1, 3, 1, 1), 0.5), jnp.ones((2, 2, 8))
    actions = jax.random.normal(jax.random.key(2), (2, 5, 3))

    @nnx.jit
    def outputs(model, x, t, ctx, actions):  # one compile instead of slow op-by-op calls
        # a doubled (prompt-guidance) batch gets the actions twice; clip 0's dropped (present 0) in both halves
        dropped = diffusion.with_actions(model, actions, present=jnp.array([0.0, 1.0]))(
            jnp.concatenate([x, x]), jnp.concatenate([t, t]), jnp.concatenate([ctx, ctx]), 8.0)
        return (model(x, t, ctx, 8.0), diffusion.with_actions(model, actions)(x, t, ctx, 8.0), dropped,
                diffusion.with_actions(model, actions, guidance=2.0)(x, t, ctx, 8.0))

    null, out, dropped, guided = outputs(model, x, t, ctx, actions)
    assert float(jnp.abs(out - null).max()) > 1e-3
    for half in (dropped[:2], dropped[2:]):
        np.testing.assert_allclose(half[0], null[0], atol=1e-5)
        np.testing.assert_allclose(half[1], out[1], atol=1e-5)
    np.testing.assert_allclose(guided, out + 2.0 * (out - null), atol=1e-4)


def test_train_loss_reaches_the_action_layers_unless_every_clip_is_dropped():
    """The step's loss sends gradient into the action MLPs' first layers when clips keep their actions
    (action_dropout 0), and none there when every clip's actions are dropped (dropout 1: the null mode)."""
    import ml_collections

    from gw_jax.train.state import ModelDef
    from gw_jax.train.step import make_loss_fn

    graphdef, params, buffers = nnx.split(_tiny_action_dit(), nnx.Param, ...)
    batch = dict(latents=jax.random.normal(jax.random.key(3), (2, 4, 3, 4, 4)), text_emb=jnp.ones((2, 2, 8)),
                 fps=jnp.full((2,), 8.0), actions=jax.random.normal(jax.random.key(4), (2, 5, 3)))

    @jax.jit
    def first_layer_grads(params, dropout):
        cfg = ml_collections.ConfigDict(dict(p_mean=0.0, p_std=1.0, max_ref_frames=1, ref_start=1,
                                             action_dropout=dropout))
        loss_fn = make_loss_fn(ModelDef(graphdef, buffers), cfg)
        grads = jax.grad(lambda p: loss_fn(p, batch, jax.random.key(5)))(params)
        return jnp.abs(grads["action_embedder"]["to_emb"]["fc1"]["kernel"][...]).max()

    assert float(first_layer_grads(params, 0.0)) > 1e-6
    assert float(first_layer_grads(params, 1.0)) == 0.0
