"""The notebooks' play loop on a tiny random causal DiT with actions: reset / step, shapes, actions steer."""

import jax
import numpy as np
import pytest
from flax import nnx

from gw_jax.errors import UserInputError
from gw_jax.models.dit import GigaWorld0DiT
from gw_jax.models.pixel_codec import PixelCodec
from gw_jax.notebook import Player

CODEC = PixelCodec(pool=2, fold=2)  # 16x16 frames -> 8x8 pooled -> (12, 4, 4) latents, one per frame


def tiny_player(**kw):
    model = GigaWorld0DiT(max_img_h=4, max_img_w=4, max_frames=3, in_channels=CODEC.channels + 1,
                          out_channels=CODEC.channels, patch_spatial=2, patch_temporal=1, model_channels=16,
                          num_blocks=1, num_heads=2, crossattn_emb_channels=8, adaln_lora_dim=8, action_dim=3,
                          temporal_causal=True, rngs=nnx.Rngs(0))
    params = nnx.state(model.action_embedder, nnx.Param)  # trained-like (non-zero) action layers
    keys = iter(jax.random.split(jax.random.key(1), len(jax.tree.leaves(params))))
    nnx.update(model.action_embedder, jax.tree.map(lambda p: p + 0.5 * jax.random.normal(next(keys), p.shape), params))
    frame = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    stats = dict(mean=[0.0, 1.0, 0.0], std=[1.0, 2.0, 0.5])
    context = np.random.default_rng(1).normal(size=(1, 3, 8)).astype(np.float32)
    player = Player(model, CODEC, frame, context=context, window=2, steps=2, action_stats=stats,
                    action_names=["x", "y", "grip"], key_map={"a": {"x": -0.5}}, **kw)
    return player, frame


def test_player_steps_and_actions_steer():
    player, frame = tiny_player()
    assert player.frames[0].shape == (8, 8, 3)
    actions = np.array([[0.5, 1.0, 0.0], [1.0, -1.0, 0.5], [0.0, 2.0, 0.0]], np.float32)
    first = player.step(actions)  # 3 frames: the window (2) slides once
    assert first.shape == (3, 8, 8, 3) and first.dtype == np.uint8
    more = player.step({"grip": 1.0})
    assert more.shape == (1, 8, 8, 3) and player.action[2] == 1.0 and player.action[0] == 0.0
    keyed = player.step("a")
    assert keyed.shape == (1, 8, 8, 3) and player.action[0] == -0.5
    assert len(player.frames) == 6
    player.reset(frame)  # same seed: the same actions give the same frames, other actions other frames
    np.testing.assert_array_equal(player.step(actions), first)
    player.reset(frame)
    other = player.step(actions + np.array([3.0, -4.0, 1.0], np.float32))
    assert np.abs(other.astype(int) - first.astype(int)).max() > 10
    with pytest.raises(UserInputError, match="actions of shape"):
        player.step(np.zeros(4))
    with pytest.raises(UserInputError, match="no action for key"):
        player.step("q")
