"""The DiT's ``concat_reference`` option (gw_jax): every frame's tokens also carry the reference frames' latents."""

import numpy as np
from flax import nnx

from gw_jax.models.dit import GigaWorld0DiT, reference_latents
from test_causal import SMALL, C, _inputs, forward, small_dit


def test_reference_latents_broadcast_the_masked_frames():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, C + 1, 4, 3, 3)).astype(np.float32)
    x[:, -1] = 0.0
    x[0, -1, 0], x[1, -1, 1:3] = 1.0, 1.0  # clip 0: frame 0 is the reference; clip 1: frames 1 and 2
    ref = np.asarray(reference_latents(x))
    assert ref.shape == (2, C, 4, 3, 3)
    for f in range(4):
        np.testing.assert_allclose(ref[0, :, f], x[0, :C, 0], atol=1e-6)
        np.testing.assert_allclose(ref[1, :, f], (x[1, :C, 1] + x[1, :C, 2]) / 2, atol=1e-6)
    x[:, -1] = 0.0
    assert not np.any(np.asarray(reference_latents(x)))  # no reference: zeros


def test_frames_see_the_reference_without_attention():
    """With temporal-causal attention, frames before the reference cannot attend to it: their outputs ignore its
    latents (the test can fail), unless concat_reference puts them into every frame's tokens."""
    x, t, context = _inputs(4)
    x[:, -1] = 0.0
    x[:, -1, 3] = 1.0  # the last frame is the reference
    changed = x.copy()
    changed[:, :C, 3] += 1.0
    causal = small_dit(temporal_causal=True)
    np.testing.assert_allclose(forward(causal, x, t, context)[:, :, :3], forward(causal, changed, t, context)[:, :, :3],
                               atol=1e-5)
    both = small_dit(temporal_causal=True, concat_reference=True)
    assert np.abs(forward(both, x, t, context)[:, :, :3] - forward(both, changed, t, context)[:, :, :3]).max() > 1e-2


def test_concat_reference_round_trips_through_the_reference_layout(tmp_path):
    model = small_dit(concat_reference=True)
    model.save_pretrained(tmp_path)
    loaded = GigaWorld0DiT.from_pretrained(tmp_path)
    assert loaded.config["concat_reference"] and "concat_reference" not in small_dit().config
    x, t, context = _inputs(3)
    np.testing.assert_array_equal(np.asarray(forward(loaded, x, t, context)), np.asarray(forward(model, x, t, context)))
    assert nnx.state(model, nnx.Param)["x_embedder"]["kernel"].shape[0] == \
        nnx.state(small_dit(), nnx.Param)["x_embedder"]["kernel"].shape[0] + C * 4  # 2x2 patches of C more channels


def _zero_final_linear(model):
    """The network's own output F set to zero: what is left is the skip."""
    linear = model.final_layer.linear
    linear.kernel[...] = 0.0 * linear.kernel[...]
    if getattr(linear, "bias", None) is not None:
        linear.bias[...] = 0.0 * linear.bias[...]


def test_reference_skip_outputs_input_minus_reference():
    """With the network's output zeroed, the skip's velocity is input - reference, so the x0 the objective
    computes at t = 1, input - t v, is the reference in every frame ('nothing moved'); without the skip the
    zeroed model outputs zeros (the test can fail)."""
    import pytest

    from gw_jax.errors import UserInputError

    x, t, context = _inputs(3)
    x[:, -1] = 0.0
    x[:, -1, 0] = 1.0  # frame 0 is the reference
    skip, plain = small_dit(reference_skip=True), small_dit()
    _zero_final_linear(skip), _zero_final_linear(plain)
    ref = np.asarray(reference_latents(x))
    v = np.asarray(forward(skip, x, t, context))
    np.testing.assert_allclose(v, x[:, :C] - ref, atol=1e-6)
    np.testing.assert_allclose(x[:, :C] - 1.0 * v, ref, atol=1e-6)
    assert not np.any(np.asarray(forward(plain, x, t, context)))
    for name in ("reference_skip", "concat_reference"):  # a control channel after the mask: refused
        with pytest.raises(UserInputError, match=name):
            GigaWorld0DiT(**dict(SMALL, in_channels=C + 2), **{name: True}, rngs=nnx.Rngs(0))
