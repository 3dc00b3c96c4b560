"""loss.detail_weight: the opt-in per-cell loss weighting (gw_jax option) — off it is the reference objective;
on it weights cells that differ from the first frame or the background, mean weight 1 per clip."""

from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from gw_jax.diffusion import reference_loss
from gw_jax.diffusion.objective import detail_weights, flow_time
from gw_jax.train.state import ModelDef
from gw_jax.train.step import make_loss_fn

FIXTURES = Path(__file__).parent / "fixtures"


def test_detail_weights_favour_a_small_object_and_keep_mean_one():
    """A flat scene with one odd cell (a 'cube') that stays, and one that appears later (a moving hand)."""
    latents = np.zeros((2, 4, 3, 6, 6), np.float32)
    latents[:, :] += np.arange(4, dtype=np.float32)[None, :, None, None, None]  # flat background per channel
    latents[0, :, :, 2, 3] += 2.0  # a cube: differs from the background in every frame
    latents[0, :, 2, 5, 5] += 1.0  # appears in frame 2: changed since frame 0 and off-background
    w = np.asarray(detail_weights(jnp.asarray(latents), 3.0))
    assert w.shape == (2, 1, 3, 6, 6)
    np.testing.assert_allclose(w.mean(axis=(2, 3, 4)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w[1], 1.0, rtol=1e-6)  # nothing differs: uniform weights, the plain mean
    background = w[0, 0, 0, 0, 0]
    assert w[0, 0, 0, 2, 3] > 5 * background and w[0, 0, 2, 5, 5] > 5 * background
    assert w[0, 0, 2, 5, 5] > w[0, 0, 1, 5, 5] == pytest.approx(background)
    np.testing.assert_allclose(detail_weights(jnp.asarray(latents), 0.0), 1.0)


def test_detail_weight_zero_is_the_reference_and_positive_reweights_the_error():
    """On the reference fixture with its recorded prediction: 0 gives the reference's loss; a > 0 gives the
    error weighted cell by cell, computed here independently in numpy."""
    fixture = np.load(FIXTURES / "gigaworld0_dit_tiny.npz")
    f = {k.split("/", 1)[1]: fixture[k] for k in fixture.files if k.startswith("loss/")}
    model = lambda *args: jnp.asarray(f["pred"])  # noqa: E731
    args = (model, f["latents"], f["noise"], f["sigma"], f["ref_masks"], f["context"], f["meta"][0])
    np.testing.assert_allclose(reference_loss(*args, detail_weight=0.0), f["per_sample_loss"], rtol=1e-5)
    weighted = np.asarray(reference_loss(*args, detail_weight=2.0))

    x0 = f["latents"].astype(np.float64)
    s = f["sigma"].reshape(-1, 1, 1, 1, 1).astype(np.float64)
    t = np.asarray(flow_time(s))
    denoised = (1 - t) * (x0 + f["noise"] * s) - t * f["pred"]
    denoised = f["ref_masks"] * x0 + (1 - f["ref_masks"]) * denoised
    d = (np.linalg.norm(x0 - x0[:, :, :1], axis=1, keepdims=True)
         + np.linalg.norm(x0 - np.median(x0, axis=(3, 4), keepdims=True), axis=1, keepdims=True))
    w = 1 + 2.0 * d / d.mean(axis=(2, 3, 4), keepdims=True)
    w = w / w.mean(axis=(2, 3, 4), keepdims=True)
    expected = (s.reshape(-1) ** 2 + 1) / s.reshape(-1) ** 2 * ((denoised - x0) ** 2 * w).mean(axis=(1, 2, 3, 4))
    np.testing.assert_allclose(weighted, expected, rtol=1e-4)
    assert not np.allclose(weighted, f["per_sample_loss"], rtol=1e-3)


class _ScaledInput(nnx.Module):
    """A denoiser stand-in (the step only needs the DiT's call signature): v = w * the noisy latents."""

    def __init__(self):
        self.w = nnx.Param(jnp.asarray(0.5))

    def __call__(self, x, timesteps, context, fps, padding_mask=None):
        return self.w[...] * x[:, :-1]


def test_train_step_reads_loss_detail_weight():
    graphdef, params, buffers = nnx.split(_ScaledInput(), nnx.Param, ...)
    batch = dict(latents=jax.random.normal(jax.random.key(3), (2, 4, 3, 4, 4)), text_emb=jnp.ones((2, 2, 8)),
                 fps=jnp.full((2,), 8.0))

    def loss(detail_weight=None):
        cfg = dict(p_mean=0.0, p_std=1.0, max_ref_frames=1, ref_start=1)
        if detail_weight is not None:
            cfg["detail_weight"] = detail_weight
        loss_fn = make_loss_fn(ModelDef(graphdef, buffers), ml_collections.ConfigDict(cfg))
        return float(loss_fn(params, batch, jax.random.key(5)))

    assert loss(0.0) == loss()  # configs saved before the option read as off
    assert loss(2.0) != pytest.approx(loss(0.0), rel=1e-3)


def test_cell_weights_weight_the_error_and_the_step_reads_batch_loss_weights():
    """reference_loss's ``cell_weights`` (the demo's cube cells) multiply each cell's squared error; ones are
    the plain loss. The train step passes the batch's ``loss_weights``."""
    fixture = np.load(FIXTURES / "gigaworld0_dit_tiny.npz")
    f = {k.split("/", 1)[1]: fixture[k] for k in fixture.files if k.startswith("loss/")}
    model = lambda *args: jnp.asarray(f["pred"])  # noqa: E731
    args = (model, f["latents"], f["noise"], f["sigma"], f["ref_masks"], f["context"], f["meta"][0])
    b, _, t, h, w = f["latents"].shape
    np.testing.assert_allclose(reference_loss(*args, cell_weights=jnp.ones((b, 1, t, h, w))), f["per_sample_loss"],
                               rtol=1e-5)
    weights = np.zeros((b, 1, t, h, w), np.float32)
    weights[:, :, :, :, : w // 2] = 2.0  # only the left half counts, twice: the loss of that half alone
    x0 = f["latents"].astype(np.float64)
    s = f["sigma"].reshape(-1, 1, 1, 1, 1).astype(np.float64)
    tt = np.asarray(flow_time(s))
    denoised = (1 - tt) * (x0 + f["noise"] * s) - tt * f["pred"]
    denoised = f["ref_masks"] * x0 + (1 - f["ref_masks"]) * denoised
    expected = (s.reshape(-1) ** 2 + 1) / s.reshape(-1) ** 2 * ((denoised - x0) ** 2)[..., : w // 2].mean(
        axis=(1, 2, 3, 4))
    np.testing.assert_allclose(reference_loss(*args, cell_weights=jnp.asarray(weights)), expected, rtol=1e-4)

    graphdef, params, buffers = nnx.split(_ScaledInput(), nnx.Param, ...)
    batch = dict(latents=jax.random.normal(jax.random.key(3), (2, 4, 3, 4, 4)), text_emb=jnp.ones((2, 2, 8)),
                 fps=jnp.full((2,), 8.0))
    loss_fn = make_loss_fn(ModelDef(graphdef, buffers), ml_collections.ConfigDict(
        dict(p_mean=0.0, p_std=1.0, max_ref_frames=1, ref_start=1)))
    plain = float(loss_fn(params, batch, jax.random.key(5)))
    ones = float(loss_fn(params, dict(batch, loss_weights=jnp.ones((2, 1, 3, 4, 4))), jax.random.key(5)))
    left = jnp.zeros((2, 1, 3, 4, 4)).at[..., :2].set(2.0)
    assert ones == pytest.approx(plain, rel=1e-6)
    assert float(loss_fn(params, dict(batch, loss_weights=left), jax.random.key(5))) != pytest.approx(plain, rel=1e-3)


def test_cube_cell_weights_mark_the_cells_under_the_cube():
    from gw_jax.demo import cube_cell_weights

    # 32x32 frames, 4x4-pixel cells: a centre inside cell (1, 1), one on a cell corner, one at the far edge
    w = cube_cell_weights(np.array([[[5, 5], [4, 4], [30, 30]]]), grid=8, cell=4, strength=8.0)
    assert w.shape == (1, 1, 3, 8, 8)
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
    high = w > w.min() * 1.5
    assert np.argwhere(high[0, 0, 0]).tolist() == [[1, 1]]
    assert np.argwhere(high[0, 0, 1]).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert np.argwhere(high[0, 0, 2]).tolist() == [[7, 7]]
    np.testing.assert_allclose(w[high] / w.min(), 9.0, rtol=1e-6)
    # origin: the first frame's cells weigh in every frame too (a cube left behind there costs)
    w = cube_cell_weights(np.array([[[5, 5], [4, 4], [30, 30]]]), grid=8, cell=4, strength=8.0, origin=True)
    high = w > w.min() * 1.5
    assert np.argwhere(high[0, 0, 0]).tolist() == [[1, 1]]
    assert np.argwhere(high[0, 0, 1]).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert np.argwhere(high[0, 0, 2]).tolist() == [[1, 1], [7, 7]]
    np.testing.assert_allclose(w.mean(), 1.0, rtol=1e-6)
