"""Objective, masks and samplers: parity with the reference fixture, convergence order, invariants."""

import functools
import shutil
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gw_jax.diffusion import (drop_reference_frames, make_x0_fn, reference_loss, reference_loss_terms, rollout,
                              sample_ancestral, sample_flow_euler, sample_flow_heun, sample_ref_masks, sample_reference,
                              sample_res2, latent_ref_masks_from_frames)
from gw_jax.diffusion.objective import conditioned_model_inputs, flow_time
from gw_jax.diffusion.samplers import reference_step
from gw_jax.models.dit import GigaWorld0DiT
from gw_jax.models.pixel_codec import PixelCodec

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def fixture():
    return np.load(FIXTURES / "gigaworld0_dit_tiny.npz")


@pytest.fixture(scope="module")
def dit(tmp_path_factory):
    directory = tmp_path_factory.mktemp("dit")
    shutil.copy(FIXTURES / "gigaworld0_dit_tiny.json", directory / "config.json")
    shutil.copy(FIXTURES / "gigaworld0_dit_tiny.safetensors", directory / "diffusion_pytorch_model.safetensors")
    return GigaWorld0DiT.from_pretrained(directory)


def test_loss_matches_reference_with_recorded_prediction(fixture):
    """The objective alone: a model that checks its inputs and returns the reference's prediction."""
    f = {k.split("/", 1)[1]: fixture[k] for k in fixture.files if k.startswith("loss/")}

    def recorded_model(x, timesteps, context, fps, padding_mask):
        np.testing.assert_allclose(x, f["model_input"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(timesteps, f["timesteps"], rtol=1e-6, atol=1e-9)
        assert float(fps) == f["meta"][0] and not np.any(padding_mask)
        return jnp.asarray(f["pred"])

    loss = reference_loss(recorded_model, f["latents"], f["noise"], f["sigma"], f["ref_masks"], f["context"],
                          f["meta"][0])
    np.testing.assert_allclose(loss, f["per_sample_loss"], rtol=1e-5)


def test_loss_matches_reference_with_the_dit(fixture, dit):
    f = {k.split("/", 1)[1]: fixture[k] for k in fixture.files if k.startswith("loss/")}
    terms = reference_loss_terms(dit, f["latents"], f["noise"], f["sigma"], f["ref_masks"], f["context"], f["meta"][0])
    assert np.abs(terms["pred"] - f["pred"]).max() <= 1e-4 * np.abs(f["pred"]).max()
    np.testing.assert_allclose(terms["per_sample_loss"], f["per_sample_loss"], rtol=1e-4)
    # excluding reference latents from the mean changes the denominator only
    excluded = reference_loss(dit, f["latents"], f["noise"], f["sigma"], f["ref_masks"], f["context"], f["meta"][0],
                              exclude_reference_from_mean=True)
    t = f["latents"].shape[2]
    np.testing.assert_allclose(excluded, f["per_sample_loss"] * t / (t - 1), rtol=1e-4)


def load_dit(name, directory):
    directory.mkdir()
    shutil.copy(FIXTURES / f"{name}.json", directory / "config.json")
    shutil.copy(FIXTURES / f"{name}.safetensors", directory / "diffusion_pytorch_model.safetensors")
    return GigaWorld0DiT.from_pretrained(directory)


@pytest.mark.parametrize("name,prefix", [("gigaworld0_dit_tiny", "sampler"),  # shared fixture
                                         ("heldout_dit_hd24_ntk", "sampler_a"),  # 9 steps, g 4.5, 2 ref latents
                                         ("heldout_dit_hd24_ntk", "sampler_b")])  # 5 steps, g 1 (no CFG)
def test_reference_sampler_matches_pipeline_step_for_step(name, prefix, tmp_path):
    data = np.load(FIXTURES / f"{name}.npz")
    f = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{prefix}/")}
    steps, guidance, fps, augment, sigma_max, _ = f["meta"]
    final, trajectory = sample_reference(
        load_dit(name, tmp_path / "dit"), f["init_latents"], context=f["context"][1:],
        negative_context=f["context"][:1], cond_latents=f["cond_latents"], cond_mask=f["cond_mask"],
        fps=float(fps), steps=int(steps), guidance=float(guidance), sigma_max=float(sigma_max),
        augment_sigma=float(augment))
    ref = f["trajectory"]
    assert trajectory.shape == ref.shape
    for i in range(int(steps)):
        assert np.abs(np.asarray(trajectory[i]) - ref[i]).max() <= 1e-3 * np.abs(ref[i]).max(), i
    # returned latents: the last step, with the reference latents re-imposed exactly
    mask = f["cond_mask"]
    np.testing.assert_array_equal(final, mask * f["cond_latents"] + (1 - mask) * np.asarray(trajectory[-1]))


# ---- closed-form Gaussian data: the exact probability-flow ODE solution is known -------------------
MU, STD = 0.7, 0.3


def _var(t):
    return (1 - t) ** 2 * STD ** 2 + t ** 2


def optimal_velocity_model(x, timesteps, context, fps, padding_mask):
    """E[eps - x0 | x_t] for x0 ~ N(MU, STD^2), x_t = (1-t) x0 + t eps (ignores the mask channel)."""
    x_t, t = x[:, :16], timesteps
    centred = x_t - (1 - t) * MU
    return t * centred / _var(t) - (MU + (1 - t) * STD ** 2 * centred / _var(t))


def exact_flow(x_start, t0, t1):
    return (1 - t1) * MU + jnp.sqrt(_var(t1) / _var(t0)) * (x_start - (1 - t0) * MU)


@pytest.mark.parametrize("sampler,order", [(sample_reference, 1), (sample_res2, 2),
                                           (sample_flow_euler, 1), (sample_flow_heun, 2)])
def test_samplers_converge_at_their_order(sampler, order):
    noise = jax.random.normal(jax.random.key(0), (2, 16, 3, 2, 2))
    sigma_max, sigma_min = 20.0, 0.002
    t_max = sigma_max / (1 + sigma_max)
    errors = []
    for steps in (16, 32, 64):
        kw = dict(context=jnp.zeros((1, 3, 8)), steps=steps, sigma_max=sigma_max, guidance=1.0)
        if sampler in (sample_reference, sample_res2):
            final, _ = jax.jit(functools.partial(sampler, optimal_velocity_model, **kw))(noise * sigma_max)
            t_min = sigma_min / (1 + sigma_min)
            expected = exact_flow(noise * sigma_max / (1 + sigma_max), t_max, t_min) * (1 + sigma_min)
        else:
            final, _ = jax.jit(functools.partial(sampler, optimal_velocity_model, **kw))(noise)
            expected = exact_flow(noise * t_max, t_max, 0.0)
        errors.append(float(jnp.abs(final - expected).max()))
    measured = np.log2(errors[-2] / errors[-1])
    assert errors[-1] < errors[0]
    assert order - 0.25 < measured < order + 0.6, (errors, measured)


def test_ancestral_sampler_keeps_the_data_distribution_and_eta_zero_is_the_reference():
    noise = jax.random.normal(jax.random.key(0), (64, 16, 3, 2, 2))
    kw = dict(context=jnp.zeros((1, 3, 8)), steps=128, sigma_max=20.0, guidance=1.0)
    reference, _ = sample_reference(optimal_velocity_model, noise * 20.0, **kw)
    eta0, _ = sample_ancestral(optimal_velocity_model, noise * 20.0, key=jax.random.key(1), eta=0.0, **kw)
    np.testing.assert_allclose(eta0, reference, rtol=1e-5, atol=1e-5)
    # with the exact denoiser of x0 ~ N(MU, STD^2) fresh noise must keep the samples' law (12,288 draws:
    # the mean's standard error is ~0.01 STD); a mis-sized noise term widens or narrows it. Euler ancestral's
    # discretisation narrows it too: std 0.85 STD at 32 steps, 0.97 at 128, 0.98 at 512 (the reference 0.93-1.0)
    stochastic, _ = sample_ancestral(optimal_velocity_model, noise * 20.0, key=jax.random.key(1), eta=1.0, **kw)
    assert float(jnp.abs(stochastic - reference).mean()) > 0.3 * STD  # the noise is really fresh
    assert abs(float(stochastic.mean()) - MU) < 0.05 * STD
    assert abs(float(stochastic.std()) / STD - 1.0) < 0.05


def _counting_model():
    calls = {"traces": 0}

    def model(x, timesteps, context, fps, padding_mask):
        calls["traces"] += 1
        return 0.1 * x[:, :16] * (1 + context.mean(axis=(1, 2)).reshape(-1, 1, 1, 1, 1)) + timesteps

    return model, calls


def test_guidance_zero_equals_unguided_and_cfg_formula():
    model, _ = _counting_model()
    x = jax.random.normal(jax.random.key(1), (1, 16, 2, 2, 2)) * 80
    pos, neg = jnp.ones((1, 3, 4)), -jnp.ones((1, 3, 4))
    unguided, _ = sample_reference(model, x, context=pos, steps=4, guidance=1.0)
    zero, _ = sample_reference(model, x, context=pos, negative_context=neg, steps=4, guidance=0.0)
    np.testing.assert_array_equal(zero, unguided)
    # g > 1: v = c + g (c - u), and x0 = c_in x - t v
    x0_fn, params = make_x0_fn(model, context=pos, negative_context=neg, guidance=3.0)
    sigma = 2.0
    got = x0_fn(params, x, sigma)
    plain = lambda ctx: model(*_inputs(x, sigma), ctx, 16.0, None)
    v = plain(pos) + 3.0 * (plain(pos) - plain(neg))
    np.testing.assert_allclose(got, x / (1 + sigma) - sigma / (1 + sigma) * v, rtol=1e-6, atol=1e-6)


def _inputs(x, sigma):
    b, _, t, h, w = x.shape
    xin = jnp.concatenate([x / (1 + sigma), jnp.zeros((b, 1, t, h, w))], axis=1)
    return xin, jnp.full((b, 1, t, 1, 1), sigma / (1 + sigma))


def test_reference_latents_come_out_exactly_and_jit_traces_once():
    model, calls = _counting_model()
    cond = jax.random.normal(jax.random.key(2), (1, 16, 3, 2, 2))
    mask = jnp.array([1.0, 0.0, 0.0]).reshape(1, 1, 3, 1, 1)
    run = jax.jit(lambda x, c: sample_reference(model, x, context=jnp.ones((1, 2, 4)), cond_latents=c,
                                                cond_mask=mask, steps=5, guidance=1.0)[0])
    out = run(jax.random.normal(jax.random.key(3), (1, 16, 3, 2, 2)) * 80, cond)
    np.testing.assert_array_equal(out[:, :, 0], cond[:, :, 0])
    traces = calls["traces"]
    run(jax.random.normal(jax.random.key(4), (1, 16, 3, 2, 2)) * 80, cond + 1)
    assert calls["traces"] == traces  # second call: no retrace
    # vmap over seeds
    keys = jax.random.split(jax.random.key(5), 3)
    batch = jax.vmap(lambda k: run(jax.random.normal(k, (1, 16, 3, 2, 2)) * 80, cond))(keys)
    assert batch.shape == (3, 1, 16, 3, 2, 2)


def test_masks_follow_the_mask_generator():
    frame_masks, latent_masks = sample_ref_masks(jax.random.key(0), batch_size=400, num_frames=17,
                                                 max_ref_frames=9, start=0)
    n = latent_masks[:, 0, :, 0, 0].sum(-1)
    assert set(np.unique(n).tolist()) == {0, 1, 2, 3}
    n_frames = frame_masks.sum(-1)
    np.testing.assert_array_equal(n_frames, np.where(n > 0, 1 + (n - 1) * 4, 0))
    # masks are prefixes
    assert np.all(np.diff(np.asarray(frame_masks), axis=-1) <= 0)
    np.testing.assert_array_equal(latent_ref_masks_from_frames(frame_masks, 5), latent_masks)  # loader -> step
    _, released = sample_ref_masks(jax.random.key(1), batch_size=8, num_frames=17)  # max 1 frame, start 1
    np.testing.assert_array_equal(released[:, 0, :, 0, 0].sum(-1), np.ones(8))


def test_rollout_stitches_clips():
    model, _ = _counting_model()
    reference = jax.random.normal(jax.random.key(6), (1, 16, 1, 2, 2))
    run = jax.jit(lambda k: rollout(model, reference, k, num_clips=3, clip_frames=4, overlap=2,
                                    context=jnp.ones((1, 2, 4)), steps=3, guidance=1.0))
    video = run(jax.random.key(7))
    assert video.shape == (1, 16, 4 + 2 * 2, 2, 2)
    np.testing.assert_array_equal(video[:, :, 0], reference[:, :, 0])
    assert not np.allclose(run(jax.random.key(8)), video)


class TestSameWithAndWithoutJit(chex.TestCase):
    """The step pieces run eagerly in tests and jitted inside the train and sampling steps: both must agree."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_conditioned_inputs(self):
        noisy = jax.random.normal(jax.random.key(0), (2, 4, 3, 2, 2))
        cond = jax.random.normal(jax.random.key(1), (2, 4, 3, 2, 2))
        mask = jnp.array([1.0, 0.0, 0.0]).reshape(1, 1, 3, 1, 1)
        x, t = self.variant(conditioned_model_inputs)(noisy, cond, mask, jnp.full((2, 1, 1, 1, 1), 0.7), 1e-4)
        chex.assert_shape((x, t), ((2, 5, 3, 2, 2), (2, 1, 3, 1, 1)))
        chex.assert_trees_all_close(x[:, :4, 0], cond[:, :, 0])  # the reference frame is the condition
        chex.assert_trees_all_close(x[:, :4, 1:], noisy[:, :, 1:])
        chex.assert_trees_all_close(x[:, 4], jnp.broadcast_to(mask[:, 0], (2, 3, 2, 2)))
        chex.assert_trees_all_close(t[:, 0, :, 0, 0], jnp.array([[1e-4 / (1 + 1e-4), 0.7, 0.7]] * 2), rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_reference_step(self):
        sample = jax.random.normal(jax.random.key(2), (1, 4, 2, 2, 2)) * 10
        x0 = jax.random.normal(jax.random.key(3), sample.shape)
        step = self.variant(lambda s, a, b: reference_step(lambda _, x, sigma: x0, None, s, a, b))
        out = step(sample, jnp.float32(10.0), jnp.float32(4.0))
        # order 1 (DDIM): x0 + sigma_t / sigma_s * (x - x0)
        chex.assert_trees_all_close(out, 0.6 * x0 + 0.4 * sample, rtol=1e-6, atol=1e-6)
        chex.assert_trees_all_close(step(sample, jnp.float32(10.0), jnp.float32(0.0)), x0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_pixel_codec_round_trip(self):
        codec = PixelCodec(pool=1, fold=2)
        video = jax.random.uniform(jax.random.key(4), (1, 3, 2, 8, 8), minval=-1, maxval=1)
        latents = self.variant(codec.encode)(video)
        chex.assert_shape(latents, (1, 12, 2, 4, 4))
        chex.assert_trees_all_close(self.variant(codec.decode)(latents), video, atol=1e-6)


def _reference_sensitive_model(x, timesteps, context, fps, padding_mask):
    # every frame sees every frame's latents, weighted by the reference-mask channel (as the DiT's attention does)
    return 0.1 * x[:, :16] + timesteps + jnp.mean(x[:, :16] * (1.0 + 2.0 * x[:, 16:]), axis=2, keepdims=True)


def test_reference_guidance_steers_away_from_the_model_without_its_reference():
    """reference_guidance g: v + g (v - v_null), v_null from the same sample with no reference frame (mask channel
    0, the sample's own noisy frame 0 instead of the clean reference, every frame at the step's t); g = 0 is the
    plain conditioned prediction."""
    model = _reference_sensitive_model
    cond = jax.random.normal(jax.random.key(0), (1, 16, 3, 2, 2))
    sample = jax.random.normal(jax.random.key(1), (1, 16, 3, 2, 2)) * 3.0
    mask = jnp.array([1.0, 0.0, 0.0]).reshape(1, 1, 3, 1, 1)
    ctx, sigma = jnp.ones((1, 2, 4)), 2.0
    kw = dict(context=ctx, cond_latents=cond, cond_mask=mask, guidance=1.0)
    plain_fn, params = make_x0_fn(model, **kw)
    zero_fn, _ = make_x0_fn(model, reference_guidance=0.0, **kw)
    guided_fn, _ = make_x0_fn(model, reference_guidance=2.0, **kw)
    plain = plain_fn(params, sample, sigma)
    np.testing.assert_array_equal(zero_fn(params, sample, sigma), plain)
    c_in, t = 1.0 / (1.0 + sigma), sigma / (1.0 + sigma)
    scaled = sample * c_in
    with_reference = jnp.concatenate([scaled.at[:, :, 0].set(cond[:, :, 0]), mask * jnp.ones((1, 1, 3, 2, 2))], 1)
    t_with = jnp.array([flow_time(0.001), t, t]).reshape(1, 1, 3, 1, 1)
    without = jnp.concatenate([scaled, jnp.zeros((1, 1, 3, 2, 2))], 1)
    v = model(with_reference, t_with, ctx, 16.0, None)
    v = v + 2.0 * (v - model(without, jnp.full((1, 1, 3, 1, 1), t), ctx, 16.0, None))
    expected = (c_in * sample - t * v).at[:, :, 0].set(cond[:, :, 0])
    np.testing.assert_allclose(guided_fn(params, sample, sigma), expected, rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(guided_fn(params, sample, sigma) - plain).max()) > 1e-2
    # a guidance interval: at sigma below reference_guidance_min_sigma the step is the plain one
    gated_fn, _ = make_x0_fn(model, reference_guidance=2.0, reference_guidance_min_sigma=1.0, **kw)
    np.testing.assert_allclose(gated_fn(params, sample, sigma), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(gated_fn(params, sample, 0.5), plain_fn(params, sample, 0.5))
    with pytest.raises(ValueError, match="reference_guidance needs reference frames"):
        make_x0_fn(model, context=ctx, reference_guidance=1.0)
    # through the sampler: g = 0 is the reference sampler, number for number
    noise = jax.random.normal(jax.random.key(2), (1, 16, 3, 2, 2)) * 80
    base, _ = sample_reference(model, noise, steps=4, **kw)
    np.testing.assert_array_equal(sample_reference(model, noise, steps=4, reference_guidance=0.0, **kw)[0], base)


def test_reference_guidance_options_read_the_sample_config_and_default_off():
    import ml_collections

    from gw_jax.diffusion import reference_guidance_options
    from gw_jax.train.defaults import QUICK, demo_config

    options = reference_guidance_options(demo_config(dict(QUICK, codec="pixel")).sample)
    assert options == dict(reference_guidance=QUICK["reference_guidance"],
                           reference_guidance_min_sigma=QUICK["reference_guidance_min_sigma"])
    assert QUICK["reference_guidance"] > 0  # the quick demo samples with it
    # a sample section saved before the option existed: off
    old = ml_collections.ConfigDict(dict(steps=20, guidance=1.0))
    assert reference_guidance_options(old) == dict(reference_guidance=0.0, reference_guidance_min_sigma=0.0)


def test_reference_dropout_drops_whole_clips_references_and_reaches_the_loss():
    masks = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0]).reshape(1, 1, 3, 1, 1), (10000, 1, 3, 1, 1))
    assert drop_reference_frames(jax.random.key(0), masks, 0.0) is masks
    dropped = drop_reference_frames(jax.random.key(0), masks, 0.3)
    assert abs(float(1.0 - dropped[:, 0, 0].mean()) - 0.3) < 0.02  # ~30% of the clips lose their reference
    np.testing.assert_array_equal(dropped[:, :, 1:], 0.0)
    assert float(drop_reference_frames(jax.random.key(0), masks, 1.0).max()) == 0.0

    import ml_collections
    from flax import nnx

    from gw_jax.train.state import ModelDef
    from gw_jax.train.step import make_loss_fn

    dit = GigaWorld0DiT(max_img_h=4, max_img_w=4, max_frames=3, in_channels=5, out_channels=4, patch_spatial=2,
                        patch_temporal=1, model_channels=16, num_blocks=1, num_heads=2, crossattn_emb_channels=8,
                        adaln_lora_dim=4, rngs=nnx.Rngs(0))
    graphdef, params, buffers = nnx.split(dit, nnx.Param, ...)
    batch = dict(latents=jax.random.normal(jax.random.key(3), (2, 4, 3, 4, 4)), text_emb=jnp.ones((2, 2, 8)),
                 fps=jnp.full((2,), 8.0), ref_mask=jnp.array([[1.0, 0.0, 0.0]] * 2))

    @functools.partial(jax.jit, static_argnums=(2,))
    def loss(params, ref_mask, dropout):
        cfg = ml_collections.ConfigDict(dict(p_mean=0.0, p_std=1.0, max_ref_frames=1, ref_start=1, ref_dropout=dropout))
        return make_loss_fn(ModelDef(graphdef, buffers), cfg)(params, dict(batch, ref_mask=ref_mask), jax.random.key(5))

    given, none = loss(params, batch["ref_mask"], 0.0), loss(params, jnp.zeros((2, 3)), 0.0)
    assert abs(float(given) - float(none)) > 1e-4
    np.testing.assert_allclose(loss(params, batch["ref_mask"], 1.0), none, rtol=1e-6)

    # the DiT (an nnx module, rebuilt inside the sampler's scan) guided on its reference frame in a sigma interval
    mask = jnp.array([1.0, 0.0, 0.0]).reshape(1, 1, 3, 1, 1)
    sample = jax.jit(lambda g, min_sigma: sample_reference(
        dit, jax.random.normal(jax.random.key(6), (2, 4, 3, 4, 4)) * 80.0, context=batch["text_emb"],
        cond_latents=batch["latents"], cond_mask=mask, fps=8.0, steps=4, guidance=1.0, reference_guidance=g,
        reference_guidance_min_sigma=min_sigma)[0], static_argnums=(0, 1))
    plain = sample(0.0, 0.0)
    np.testing.assert_allclose(sample(1.0, 1e9), plain, rtol=1e-6, atol=1e-6)  # never at or above 1e9
    assert float(jnp.abs(sample(1.0, 1.0) - plain).max()) > 1e-3
