"""CAME as an optax transformation: step for step the published algorithm (the came-pytorch package), per-block
matrices for stacked parameters, and the release's 8-bit momentum."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gw_jax.train.came import came, dequantize_blocks, quantize_blocks

STEPS, LR, WD = 12, 0.03, 0.1


def grad_sequence(shapes: dict, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [{k: rng.normal(size=s).astype(np.float32) * (1 + 0.5 * t) for k, s in shapes.items()}
            for t in range(STEPS)]


def test_came_matches_came_pytorch():
    torch = pytest.importorskip("torch")
    came_pytorch = pytest.importorskip("came_pytorch")
    shapes = {"w": (6, 5), "v": (7,), "conv": (3, 4, 2)}
    rng = np.random.default_rng(1)
    init = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    grads = grad_sequence(shapes)

    torch_params = {k: torch.nn.Parameter(torch.tensor(v)) for k, v in init.items()}
    opt = came_pytorch.CAME(list(torch_params.values()), lr=LR, weight_decay=WD)
    tx = came(LR, weight_decay=WD)
    params = {k: jnp.asarray(v) for k, v in init.items()}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for g in grads:
        for k, p in torch_params.items():
            p.grad = torch.tensor(g[k])
        opt.step()
        updates, state = update({k: jnp.asarray(v) for k, v in g.items()}, state, params)
        params = optax.apply_updates(params, updates)
    for k, p in torch_params.items():
        np.testing.assert_allclose(np.asarray(params[k]), p.detach().numpy(), rtol=2e-5, atol=2e-6)
        assert np.abs(np.asarray(params[k]) - init[k]).max() > 1e-2  # it moved


def test_stacked_matrices_are_updated_as_separate_blocks():
    """batch_dims=1 on a (L, in, out) stack == L independent (in, out) parameters."""
    shapes = {"stack": (3, 6, 5), "norms": (3, 4)}
    rng = np.random.default_rng(2)
    init = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    grads = grad_sequence(shapes, seed=3)
    stacked_tx = came(LR, weight_decay=WD, batch_dims=lambda path, p: 1)
    params = {k: jnp.asarray(v) for k, v in init.items()}
    state = stacked_tx.init(params)
    split = {f"{k}{i}": jnp.asarray(v[i]) for k, v in init.items() for i in range(3)}
    split_tx = came(LR, weight_decay=WD)
    split_state = split_tx.init(split)
    for g in grads:
        updates, state = stacked_tx.update({k: jnp.asarray(v) for k, v in g.items()}, state, params)
        params = optax.apply_updates(params, updates)
        g_split = {f"{k}{i}": jnp.asarray(v[i]) for k, v in g.items() for i in range(3)}
        updates, split_state = split_tx.update(g_split, split_state, split)
        split = optax.apply_updates(split, updates)
    for k in shapes:
        for i in range(3):
            np.testing.assert_allclose(np.asarray(params[k][i]), np.asarray(split[f"{k}{i}"]), rtol=1e-6, atol=1e-7)
    # a whole-stack RMS clip (no batch dims) is a different algorithm: the test can tell them apart
    whole = came(LR, weight_decay=WD)
    p2 = {k: jnp.asarray(v) for k, v in init.items()}
    s2 = whole.init(p2)
    for g in grads:
        u, s2 = whole.update({k: jnp.asarray(v) for k, v in g.items()}, s2, p2)
        p2 = optax.apply_updates(p2, u)
    assert np.abs(np.asarray(p2["norms"]) - np.asarray(params["norms"])).max() > 1e-4


def test_block_quantization_round_trip():
    x = jax.random.normal(jax.random.key(0), (2, 7, 10)) * jnp.arange(10)
    codes, lo, scale = quantize_blocks(x, block_size=4)
    assert codes.dtype == jnp.uint8 and codes.shape == x.shape and lo.shape == (2, 3)
    back = dequantize_blocks(codes, lo, scale, block_size=4)
    per_col_scale = np.repeat(np.asarray(scale), 4, axis=-1)[:, None, :10]
    assert np.all(np.abs(np.asarray(back - x)) <= per_col_scale / 2 + 1e-6)
    zeros = quantize_blocks(jnp.zeros((3, 5)), block_size=2)  # constant blocks: scale 0, no NaN
    np.testing.assert_array_equal(np.asarray(dequantize_blocks(*zeros, block_size=2)), 0.0)


def test_8bit_state_is_small_and_tracks_32bit_came():
    shapes = {"big": (64, 48), "small": (4, 4), "v": (48,)}
    rng = np.random.default_rng(4)
    init = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    grads = grad_sequence(shapes, seed=5)
    full, small = came(LR), came(LR, state_8bit=True, block_size=16, min_8bit_size=1000)
    p32 = p8 = {k: jnp.asarray(v) for k, v in init.items()}
    s32, s8 = full.init(p32), small.init(p8)
    assert s8.mu["big"].dtype == jnp.uint8 and s8.mu["small"].dtype == jnp.float32
    assert s8.mu_scale["big"].shape == (3,)
    for g in grads:
        g = {k: jnp.asarray(v) for k, v in g.items()}
        u32, s32 = full.update(g, s32, p32)
        u8, s8 = small.update(g, s8, p8)
        p32, p8 = optax.apply_updates(p32, u32), optax.apply_updates(p8, u8)
    moved = np.abs(np.asarray(p32["big"]) - init["big"]).mean()
    assert np.abs(np.asarray(p8["big"]) - np.asarray(p32["big"])).mean() < 0.05 * moved
    np.testing.assert_allclose(np.asarray(p8["small"]), np.asarray(p32["small"]), rtol=1e-6)
    nbytes = lambda s: sum(x.nbytes for x in jax.tree.leaves(s.mu))  # noqa: E731
    assert nbytes(s8) < 0.4 * nbytes(s32)
