"""The causal, autoregressive variant: temporal-causal attention, diffusion forcing, the sliding-window sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gw_jax.diffusion import reference_loss, sample_autoregressive, sample_reference, sample_training_inputs
from gw_jax.diffusion.objective import reference_loss_terms
from gw_jax.errors import UserInputError
from gw_jax.models.attention import attention
from gw_jax.models.dit import GigaWorld0DiT

C, H, W = 4, 4, 4
SMALL = dict(max_img_h=H, max_img_w=W, max_frames=4, in_channels=C + 1, out_channels=C, patch_spatial=2,
             patch_temporal=1, model_channels=16, num_blocks=1, num_heads=2, crossattn_emb_channels=8,
             adaln_lora_dim=8)


def small_dit(seed=0, **options):
    return GigaWorld0DiT(**SMALL, **options, rngs=nnx.Rngs(seed))


@nnx.jit
def forward(model, x, t, context):
    return model(x, t, context, 16.0)


def _inputs(frames, seed=0, batch=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, C + 1, frames, H, W)).astype(np.float32)
    t = rng.uniform(0.1, 0.9, size=(batch, 1, frames, 1, 1)).astype(np.float32)
    context = rng.normal(size=(batch, 3, 8)).astype(np.float32)
    return x, t, context


def test_causal_outputs_do_not_see_later_frames():
    """Frames <= t give the same outputs whatever frames > t hold; the bidirectional model's change (the test
    can fail). The option adds no weights: both draw the same ones (the release parity tests cover option off)."""
    causal, plain = small_dit(temporal_causal=True), small_dit()
    same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                              nnx.state(causal, nnx.Param), nnx.state(plain, nnx.Param))
    assert all(jax.tree.leaves(same))
    x, t, context = _inputs(5)
    changed = x.copy()
    changed[:, :, 3:] = np.random.default_rng(9).normal(size=changed[:, :, 3:].shape)
    t_changed = t.copy()
    t_changed[:, :, 3:] = 0.05
    out, out_changed = forward(causal, x, t, context), forward(causal, changed, t_changed, context)
    np.testing.assert_allclose(out[:, :, :3], out_changed[:, :, :3], atol=1e-5)
    assert np.abs(out[:, :, 3:] - out_changed[:, :, 3:]).max() > 1e-2
    base, base_changed = forward(plain, x, t, context), forward(plain, changed, t_changed, context)
    assert np.abs(base[:, :, :3] - base_changed[:, :, :3]).max() > 1e-2


def test_causal_refuses_kernels_without_a_mask():
    for impl in ("splash", "cudnn", "context_ring", "auto"):
        with pytest.raises(UserInputError, match="temporal_causal"):
            small_dit(temporal_causal=True, attention_impl=impl)
    q = jnp.ones((1, 4, 2, 8))
    with pytest.raises(ValueError, match="takes no mask"):
        attention(q, q, q, impl="context_allgather", mask=jnp.ones((1, 1, 4, 4), bool))


def test_causal_option_round_trips_through_the_reference_layout(tmp_path):
    model = small_dit(temporal_causal=True)
    model.save_pretrained(tmp_path)
    loaded = GigaWorld0DiT.from_pretrained(tmp_path)
    assert loaded.config["temporal_causal"]
    x, t, context = _inputs(3)
    np.testing.assert_array_equal(np.asarray(forward(loaded, x, t, context)), np.asarray(forward(model, x, t, context)))


def test_causal_model_under_a_context_sharded_mesh_equals_unsharded():
    """The mask is an ordinary array to XLA's SPMD partitioner: sharding tokens over ``context`` keeps it."""
    from gw_jax.parallel.logical import use_mesh_rules
    from gw_jax.parallel.mesh import make_mesh

    model = small_dit(temporal_causal=True)
    x, t, context = _inputs(4, batch=2)
    expected = np.asarray(forward(model, x, t, context))
    mesh = make_mesh(dict(data=2, fsdp=1, context=4, tensor=1))
    with use_mesh_rules(mesh):
        out = nnx.jit(lambda m, x, t, c: m(x, t, c, 16.0))(model, x, t, context)
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------------ diffusion forcing
def test_independent_frame_sigmas_shapes_and_statistics():
    shape = (4096, C, 5, H, W)
    _, shared = sample_training_inputs(jax.random.key(0), shape, p_mean=1.0, p_std=0.5)
    noise, sigma = sample_training_inputs(jax.random.key(0), shape, p_mean=1.0, p_std=0.5, frame_sigmas="independent")
    assert shared.shape == (4096, 1) and sigma.shape == (4096, 5) and noise.shape == shape
    log = np.log(np.asarray(sigma))
    assert abs(log.mean() - 1.0) < 0.03 and abs(log.std() - 0.5) < 0.03
    correlation = np.corrcoef(log[:, 0], log[:, 1])[0, 1]
    assert abs(correlation) < 0.06  # independent per frame
    with pytest.raises(ValueError, match="frame_sigmas"):
        sample_training_inputs(jax.random.key(0), shape, frame_sigmas="uniform")


def _recording_model(seen):
    def model(x, timesteps, context, fps, padding_mask):
        seen["timesteps"] = timesteps
        return x[:, :C] * 0.3
    return model


def test_per_frame_sigmas_reach_the_model_and_weight_each_frame():
    """Each frame gets its own flow time (references keep the augment one), and the loss is the per-frame
    weighted mean; equal per-frame sigmas give the reference (shared) loss."""
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(2, C, 3, H, W)).astype(np.float32)
    noise = rng.normal(size=latents.shape).astype(np.float32)
    sigma = np.array([[0.5, 2.0, 7.0], [1.0, 0.1, 3.0]], np.float32)
    masks = np.zeros((2, 1, 3, 1, 1), np.float32)
    masks[:, :, 0] = 1
    seen = {}
    terms = reference_loss_terms(_recording_model(seen), latents, noise, sigma, masks, None, 16.0)
    t = seen["timesteps"].reshape(2, 3)
    np.testing.assert_allclose(t[:, 1:], sigma[:, 1:] / (1 + sigma[:, 1:]), rtol=1e-6)
    np.testing.assert_allclose(t[:, 0], 1e-4 / (1 + 1e-4), rtol=1e-6)
    s = sigma[:, None, :, None, None]
    expected = np.mean((s ** 2 + 1) / s ** 2 * (np.asarray(terms["denoised"]) - latents) ** 2, axis=(1, 2, 3, 4))
    np.testing.assert_allclose(terms["per_sample_loss"], expected, rtol=1e-5)
    same = np.repeat(sigma[:, 1:2], 3, axis=1)
    per_frame = reference_loss(_recording_model({}), latents, noise, same, masks, None, 16.0)
    shared = reference_loss(_recording_model({}), latents, noise, sigma[:, 1:2], masks, None, 16.0)
    np.testing.assert_allclose(per_frame, shared, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ the AR sampler
SAMPLER = dict(steps=3, guidance=1.0, fps=16.0)


def _ar_inputs(refs=1, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    ref = jnp.asarray(rng.normal(size=(batch, C, refs, H, W)).astype(np.float32))
    return ref, jnp.asarray(rng.normal(size=(batch, 3, 8)).astype(np.float32))


def test_ar_rollout_longer_than_the_clip_is_deterministic_and_prefix_stable():
    model = small_dit(temporal_causal=True)
    ref, context = _ar_inputs(refs=2)
    run = jax.jit(lambda ref, key, n: sample_autoregressive(model, ref, key, num_frames=n, window=3, context=context,
                                                           **SAMPLER), static_argnums=2)
    long = run(ref, jax.random.key(1), 9)  # 11 frames from a model of max_frames 4
    assert long.shape == (1, C, 11, H, W) and bool(jnp.all(jnp.isfinite(long)))
    np.testing.assert_array_equal(np.asarray(long[:, :, :2]), np.asarray(ref))
    np.testing.assert_array_equal(np.asarray(run(ref, jax.random.key(1), 9)), np.asarray(long))
    assert np.abs(np.asarray(run(ref, jax.random.key(2), 9) - long))[:, :, 2:].min() > 0
    np.testing.assert_allclose(np.asarray(run(ref, jax.random.key(1), 5)), np.asarray(long[:, :, :7]), atol=1e-5)


def test_one_ar_step_is_the_reference_sampler_on_the_window():
    """With the window full, a step is ``sample_reference`` on window + 1 frames (history as references)."""
    model = small_dit(temporal_causal=True)
    ref, context = _ar_inputs(refs=3)
    out = sample_autoregressive(model, ref, jax.random.key(4), num_frames=1, window=3, context=context, **SAMPLER)
    mask = jnp.zeros((1, 1, 4, 1, 1)).at[:, :, :3].set(1.0)
    noise = jax.random.normal(jax.random.fold_in(jax.random.key(4), 3), (1, C, 4, H, W)) * 80.0
    cond = jnp.zeros((1, C, 4, H, W)).at[:, :, :3].set(ref)
    expected, _ = sample_reference(model, noise, context=context, cond_latents=cond, cond_mask=mask, **SAMPLER)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_early_frames_need_the_causal_model(causal):
    """Before the window fills, the frames after the new one are placeholders: the causal model's frame 1 equals
    the sampler run on [reference, frame 1] alone; a bidirectional model's does not (it sees the placeholders)."""
    model = small_dit(temporal_causal=causal)
    ref, context = _ar_inputs(refs=1)
    out = sample_autoregressive(model, ref, jax.random.key(5), num_frames=3, window=3, context=context, **SAMPLER)
    noise = jax.random.normal(jax.random.fold_in(jax.random.key(5), 1), (1, C, 4, H, W))[:, :, :2] * 80.0
    mask = jnp.zeros((1, 1, 2, 1, 1)).at[:, :, 0].set(1.0)
    cond = jnp.zeros((1, C, 2, H, W)).at[:, :, :1].set(ref)
    alone, _ = sample_reference(model, noise, context=context, cond_latents=cond, cond_mask=mask, **SAMPLER)
    gap = float(jnp.abs(out[:, :, :2] - alone).max())
    assert (gap < 1e-4) if causal else (gap > 1e-3), gap


def test_ar_actions_slide_with_the_window():
    """Actions steer each frame: other actions for frames >= 5 leave frames < 5 alone and change the rest."""
    model = small_dit(temporal_causal=True, action_dim=3)
    params = nnx.state(model.action_embedder, nnx.Param)
    keys = iter(jax.random.split(jax.random.key(1), len(jax.tree.leaves(params))))
    nnx.update(model.action_embedder, jax.tree.map(lambda p: p + 0.5 * jax.random.normal(next(keys), p.shape), params))
    ref, context = _ar_inputs(refs=1)
    actions = np.random.default_rng(0).normal(size=(1, 8, 3)).astype(np.float32)
    other = actions.copy()
    other[:, 5:] += 2.0
    run = lambda a: sample_autoregressive(model, ref, jax.random.key(0), num_frames=7, window=3,  # noqa: E731
                                          context=context, actions=a, **SAMPLER)
    a, b = np.asarray(run(actions)), np.asarray(run(other))
    np.testing.assert_allclose(a[:, :, :5], b[:, :, :5], atol=1e-5)
    assert np.abs(a[:, :, 5:] - b[:, :, 5:]).max() > 1e-2
    with pytest.raises(ValueError, match="do not cover"):
        run(actions[:, :6])


def test_train_config_checks_the_new_loss_fields():
    from gw_jax.train.config_checks import check_train_config
    from gw_jax.train.defaults import base_config

    config = base_config()
    check_train_config(config)
    assert config.loss.frame_sigmas == "shared"  # the reference objective by default
    config.loss.frame_sigmas = "uniform"
    with pytest.raises(UserInputError, match="loss.frame_sigmas"):
        check_train_config(config)
    config.loss.frame_sigmas, config.loss.ref_factor = "independent", 0
    with pytest.raises(UserInputError, match="loss.ref_factor"):
        check_train_config(config)
