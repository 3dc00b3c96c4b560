"""NATTEN neighbourhood attention: semantics vs NATTEN 0.21.7 itself, kernels, sharding, parameter rules."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gw_jax.errors import UserInputError
from gw_jax.models.neighborhood_attention import (Neighborhood, NattenSchedule, adapt, masked_attention,
                                                  neighborhood_mask, parse_entry)
from gw_jax.models.neighborhood_blocksparse import blocksparse_attention, make_plan
from gw_jax.parallel.logical import use_mesh_rules
from gw_jax.parallel.mesh import make_mesh


def random_neighborhood(rng, max_axis=9) -> Neighborhood:
    """Any valid NATTEN configuration on a random grid: window x dilation <= axis, stride <= window."""
    grid = tuple(int(x) for x in rng.integers(2, max_axis + 1, 3))
    window, stride, dilation, causal = [], [], [], []
    for x in grid:
        d = int(rng.integers(1, x // 2 + 1))
        w = int(rng.integers(2, x // d + 1))
        window.append(w), dilation.append(d), stride.append(int(rng.integers(1, w + 1)))
        causal.append(bool(rng.integers(0, 2)))
    return Neighborhood(grid, tuple(window), tuple(stride), tuple(dilation), tuple(causal))


def natten_probabilities(nb: Neighborhood, q, k, v):
    """NATTEN's output and its full attention-probability matrix (B, H, L, L) from its public function:
    values extended by columns of the identity return those columns of the probabilities (NATTEN's CPU
    backend takes head dims that are powers of two up to 512, so the identity goes in slices)."""
    torch = pytest.importorskip("torch")
    natten = pytest.importorskip("natten")
    b, length, h, d = q.shape
    width = 512 - d
    to_grid = lambda x: x.reshape(b, *nb.grid, h, x.shape[-1])
    extend = lambda x, extra: to_grid(torch.cat([torch.tensor(x), extra], -1))
    zeros = torch.zeros(b, length, h, width)
    outs, probs = [], []
    for start in range(0, length, width):
        eye = torch.zeros(length, width)
        eye[start + torch.arange(min(width, length - start)), torch.arange(min(width, length - start))] = 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = natten.functional.neighborhood_attention_generic(
                extend(q, zeros), extend(k, zeros), extend(v, eye[None, :, None].expand(b, length, h, width)),
                kernel_size=nb.window, stride=nb.stride, dilation=nb.dilation, is_causal=nb.causal,
                scale=d ** -0.5)
        out = out.reshape(b, length, h, d + width).numpy()
        outs.append(out[..., :d])
        probs.append(out[..., d:d + min(width, length - start)])
    return outs[0], np.einsum("blhk->bhlk", np.concatenate(probs, -1))


def torch_masked_grads(q, k, v, cotangent, mask):
    """Gradients of sum(cotangent * attention) by torch autograd, attention restricted to ``mask`` (L, L)."""
    torch = pytest.importorskip("torch")
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    logits = torch.einsum("bqhd,bkhd->bhqk", tq, tk) * q.shape[-1] ** -0.5
    weights = torch.softmax(logits.masked_fill(~torch.tensor(mask), float("-inf")), dim=-1)
    (torch.einsum("bhqk,bkhd->bqhd", weights, tv) * torch.tensor(cotangent)).sum().backward()
    return [x.grad.numpy() for x in (tq, tk, tv)]


def rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def _natten_case(seed: int):
    rng = np.random.default_rng(1000 + seed)
    nb = random_neighborhood(rng, max_axis=8)
    q, k, v, cot = (rng.standard_normal((2, nb.length, 2, 8)).astype(np.float32) for _ in range(4))
    out_natten, probs = natten_probabilities(nb, q, k, v)
    mask = probs[0, 0] > 0
    # NATTEN's neighbourhoods, token for token, for every query of every head and batch row
    assert ((probs > 0) == mask).all()
    np.testing.assert_array_equal(neighborhood_mask(nb), mask, err_msg=str(nb))
    grads_ref = torch_masked_grads(q, k, v, cot, mask)
    block = int(rng.choice([8, 16, 32, 64]))
    kernels = {"masked": lambda q, k, v: masked_attention(q, k, v, nb),
               "blocksparse": lambda q, k, v: blocksparse_attention(q, k, v, nb, block=block)}
    errors = {}
    for name, kernel in kernels.items():
        out = jax.jit(kernel)(q, k, v)
        grads = jax.jit(jax.grad(lambda *a, kernel=kernel: (kernel(*a) * cot).sum(), (0, 1, 2)))(q, k, v)
        errors[name] = max([rel(out, out_natten)] + [rel(g, r) for g, r in zip(grads, grads_ref, strict=True)])
    return nb, errors


@pytest.mark.parity
@pytest.mark.parametrize("seed", range(4))
def test_random_configurations_match_natten(seed):
    """Masks equal NATTEN's exactly; outputs vs NATTEN and grads vs autograd over NATTEN's mask <= 1e-5."""
    nb, errors = _natten_case(seed)
    assert max(errors.values()) <= 1e-5, (nb, errors)


@pytest.mark.parity
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4, 44))
def test_more_random_configurations_match_natten(seed):
    nb, errors = _natten_case(seed)
    assert max(errors.values()) <= 1e-5, (nb, errors)


def test_masked_kernel_differs_from_dense_attention():
    """The check can fail: a wrong neighbourhood (here: none) is far from the masked result."""
    nb = Neighborhood((3, 6, 8), (2, 3, 4), (1, 1, 2), (1, 2, 1), (False, False, False))
    q, k, v = (jax.random.normal(key, (1, nb.length, 2, 8)) for key in jax.random.split(jax.random.key(0), 3))
    dense = Neighborhood(nb.grid, nb.grid, (1, 1, 1), (1, 1, 1), (False, False, False))
    assert neighborhood_mask(dense).all()
    assert rel(masked_attention(q, k, v, nb), masked_attention(q, k, v, dense)) > 0.1


@pytest.mark.parametrize("seed", range(5))
def test_blocksparse_equals_masked_forward_and_grads(seed):
    rng = np.random.default_rng(seed)
    nb = random_neighborhood(rng, max_axis=10)
    block = int(rng.choice([8, 16, 32]))
    q, k, v, cot = (jnp.asarray(rng.standard_normal((2, nb.length, 3, 8)), jnp.float32) for _ in range(4))
    f_masked = lambda *a: (masked_attention(*a, nb) * cot).sum()
    f_sparse = lambda *a: (blocksparse_attention(*a, nb, block=block) * cot).sum()
    sparse = jax.jit(lambda *a: blocksparse_attention(*a, nb, block=block))
    np.testing.assert_allclose(sparse(q, k, v), masked_attention(q, k, v, nb), atol=2e-6, rtol=1e-5)
    grad = lambda f: jax.jit(jax.grad(f, (0, 1, 2)))(q, k, v)
    for g, r in zip(grad(f_sparse), grad(f_masked), strict=True):
        assert rel(g, r) < 1e-5


def test_plan_skips_blocks_and_picks_tiles():
    nb = adapt(parse_entry({"window_size": [-1, 12, 24], "stride": [1, 4, 8], "base_size": [-1, 44, 80]}, "x"),
               (16, 30, 40), "x")
    plan = make_plan(nb, 128)
    assert plan.kept < 0.8 and plan.kv_index.shape[1] < plan.blocks
    assert plan.tile != (1, 1, 128)  # a 3D tile beats row-major order here
    dense = make_plan(Neighborhood((4, 6, 8), (4, 6, 8), (1, 1, 1), (1, 1, 1), (False,) * 3), 32)
    assert dense.kept == 1.0


@pytest.mark.parametrize("axes", [{"data": 2, "context": 4}, {"data": 1, "context": 8},
                                  {"data": 1, "fsdp": 2, "context": 2, "tensor": 2}])
def test_blocksparse_sharded_over_context_equals_one_device(axes):
    assert jax.device_count() == 8
    nb = Neighborhood((4, 6, 10), (3, 2, 4), (1, 2, 2), (1, 2, 2), (True, False, False))
    rng = np.random.default_rng(0)
    q, k, v, cot = (jnp.asarray(rng.standard_normal((2, nb.length, 4, 8)), jnp.float32) for _ in range(4))
    loss_and_grads = lambda *a: jax.value_and_grad(
        lambda *x: (blocksparse_attention(*x, nb, block=16) * cot).sum(), (0, 1, 2))(*a)
    loss, grads = jax.jit(loss_and_grads)(q, k, v)
    with use_mesh_rules(make_mesh(axes)):  # traced under the mesh: shard_map over 'context'
        loss_sharded, grads_sharded = jax.jit(loss_and_grads)(q, k, v)
    np.testing.assert_allclose(loss_sharded, loss, rtol=1e-5)
    for g, r in zip(grads_sharded, grads, strict=True):
        np.testing.assert_allclose(g, r, atol=2e-6, rtol=1e-5)


# --------------------------------------------------------------------------------------------------
# The reference's parameter rules


def test_adaptive_parameters_follow_the_reference():
    """get_adaptive_parameters: -1/1 = whole axis; base_size rescales with Python's round (half to even)."""
    grid = (16, 30, 40)
    nb = adapt(parse_entry({"window_size": [-1, 4, 16], "dilation": [1, 11, 5], "base_size": [-1, 44, 80]}, "x"),
               grid, "x")
    # window: (16, round(4 * 30/44) = 3, round(16 * 0.5) = 8); dilation: round(11 * 30/44) = 7 or 8 as
    # Python rounds that float, capped at 30 // 3 = 10; round(5 * 0.5) = round(2.5) = 2 (half to even)
    assert nb.window == (16, 3, 8)
    assert nb.dilation == (1, round(11 * (30 / 44)), 2)
    assert nb.stride == (1, 1, 1)
    nb = adapt(parse_entry({"window_size": [1, 20, 40], "stride": [1, 4, 8], "base_size": [-1, 44, 80]}, "x"),
               grid, "x")
    assert nb.window == (16, round(20 * 30 / 44), 20) and nb.stride == (1, round(4 * 30 / 44), 4)
    nb = adapt(parse_entry({"window_size": [3, 4, 4], "stride": 2, "is_causal": [True, False, False]}, "x"),
               (5, 8, 8), "x")
    assert (nb.window, nb.stride, nb.causal) == ((3, 4, 4), (2, 2, 2), (True, False, False))


@pytest.mark.parametrize("entries, message", [
    ([None, None], r"natten_parameters: 2 entries for 3 blocks"),
    ([None, {"window_size": [2, 3, 9]}, None], r"natten_parameters\[1\]: window_size 9 x dilation 1 = 9 exceeds the W"),
    ([None, None, {"window_size": [2, 3, 4], "dilation": [1, 3, 1]}], r"natten_parameters\[2\]: .* exceeds the H axis"),
    ([{"window_size": [2, 2, 2], "stride": [1, 3, 1]}, None, None],
     r"natten_parameters\[0\]: stride 3 exceeds window_size 2"),
    ([None, {"window_size": [2, 2]}, None], r"natten_parameters\[1\]\.window_size: expected 3 ints"),
    ([None, {"stride": 2}, None], r"natten_parameters\[1\]: expected None \(dense\) or a dict"),
    ([None, {"window_size": [2, 2, 2], "is_causal": 1}, None], r"natten_parameters\[1\]\.is_causal"),
    ([None, {"window_size": [2, 2, 2], "dilation": 0}, None], r"natten_parameters\[1\]\.dilation: every value"),
    ([None, {"window_size": [2, 2, 2], "windw": 3}, None], r"natten_parameters\[1\]: unknown keys \['windw'\]"),
])
def test_bad_parameters_name_the_block_and_rule(entries, message):
    with pytest.raises(UserInputError, match=message):
        NattenSchedule.from_config(entries, num_blocks=3, max_grid=(4, 6, 8))


def test_schedule_codes_and_grid_check():
    entries = [{"window_size": [-1, 2, 2]}, None, {"window_size": (-1, 2, 2)}, {"window_size": [2, 3, 3]}]
    schedule = NattenSchedule.from_config(entries, 4, (4, 6, 8))
    assert schedule.codes == (0, 1, 0, 2) and schedule.options[1] is None and len(schedule.options) == 3
    assert NattenSchedule.from_config(entries[:1] * 3, 3, (4, 6, 8)).options == schedule.options[:1]
    schedule.check((2, 6, 8))
    with pytest.raises(UserInputError, match=r"natten_parameters\[0\]: .*more than one latent frame"):
        schedule.check((1, 6, 8))
    with pytest.raises(UserInputError, match=r"natten_parameters\[3\]: window_size 3 x dilation 1 = 3 exceeds the H"):
        schedule.check((2, 2, 8))
