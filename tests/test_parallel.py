"""Mesh construction, logical rules and context-parallel attention on 8 fake CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from gw_jax.errors import UserInputError
from gw_jax.models.attention import xla_attention
from gw_jax.parallel.context_attention import context_parallel_attention
from gw_jax.parallel.logical import constrain, logical_to_spec, use_mesh_rules
from gw_jax.parallel.mesh import make_mesh, resolve_axis_sizes


def test_resolve_axis_sizes():
    assert resolve_axis_sizes({"data": -1, "context": 2}, 8) == {"data": 4, "fsdp": 1, "context": 2, "tensor": 1}
    with pytest.raises(UserInputError, match="only one axis"):
        resolve_axis_sizes({"data": -1, "fsdp": -1}, 8)
    with pytest.raises(UserInputError, match="need 6 devices"):
        resolve_axis_sizes({"data": 3, "fsdp": 2}, 8)
    with pytest.raises(UserInputError, match="unknown axis"):
        resolve_axis_sizes({"model": 2}, 8)


def test_logical_to_spec_drops_trivial_and_repeated_axes():
    mesh = make_mesh({"data": 2, "fsdp": 2, "context": 2, "tensor": 1})
    assert logical_to_spec(("act_batch", "act_length", "act_heads", None), mesh=mesh) == \
        P(("data", "fsdp"), "context", None, None)
    # a mesh axis is used once: embed->fsdp is taken by the batch already
    assert logical_to_spec(("act_batch", "embed"), mesh=mesh) == P(("data", "fsdp"), None)


def test_constrain_is_noop_without_mesh():
    x = jnp.ones((4, 6))
    assert constrain(x, ("act_batch", "act_embed")) is x


@pytest.mark.parametrize("schedule", ["ring", "allgather"])
@pytest.mark.parametrize("axes", [{"data": 2, "context": 4}, {"context": 8}, {"fsdp": 2, "context": 2, "tensor": 2}])
def test_context_parallel_attention_equals_single_device(schedule, axes):
    assert jax.device_count() == 8
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    q, k, v = (jax.random.normal(kk, (2, 40, 4, 8)) for kk in (k1, k2, k3))
    expected = xla_attention(q, k, v)
    mesh = make_mesh({"data": 1, **axes} if "data" not in axes else axes)
    with use_mesh_rules(mesh):
        out = jax.jit(lambda a, b, c: context_parallel_attention(a, b, c, schedule=schedule))(q, k, v)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=2e-6, rtol=1e-5)


def _attention_loss(fn, q, k, v):
    return (fn(q, k, v) ** 2).sum()


@pytest.mark.parametrize("kv_length", [32, 12])  # self-attention (K/V split over context) and cross-attention
def test_mesh_sharded_splash_equals_single_device(kv_length):
    """The real Pallas splash kernel (interpret mode on CPU) under shard_map on data 1 x fsdp 2 x context 2 x
    tensor 2: output and gradients equal plain float32 attention on one device."""
    from gw_jax.models.attention import splash_attention
    from gw_jax.parallel.context_attention import mesh_sharded_attention

    k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
    q = jax.random.normal(k1, (2, 32, 4, 16))
    k, v = (jax.random.normal(kk, (2, kv_length, 4, 16)) for kk in (k2, k3))
    seen = []

    def local(a, b, c):
        seen.append((a.shape, b.shape))
        return splash_attention(a, b, c, interpret=True)

    mesh = make_mesh({"fsdp": 2, "context": 2, "tensor": 2})
    sharded = lambda a, b, c: mesh_sharded_attention(a, b, c, local_fn=local)  # noqa: E731
    with use_mesh_rules(mesh):
        out, grads = jax.jit(jax.value_and_grad(lambda *a: _attention_loss(sharded, *a), argnums=(0, 1, 2)))(q, k, v)
    # each device: half the batch, half the queries, half the heads; all the keys
    assert seen[0] == ((1, 16, 2, 16), (1, kv_length, 2, 16))
    expected, expected_grads = jax.value_and_grad(lambda *a: _attention_loss(xla_attention, *a), argnums=(0, 1, 2))(
        q, k, v)
    np.testing.assert_allclose(float(out), float(expected), rtol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5 * float(jnp.abs(want).max()))


@pytest.mark.parametrize("axes", [{"data": 2, "context": 4}, {"fsdp": 2, "context": 2, "tensor": 2}, {"tensor": 8},
                                  {"data": 8}])
def test_mesh_sharded_attention_equals_single_device_with_uneven_dims(axes):
    """Batch 2 on data 8 and 3 heads on tensor 2 do not divide: those dims stay unsplit, the result is exact."""
    from gw_jax.parallel.context_attention import mesh_sharded_attention

    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    q, k, v = (jax.random.normal(kk, (2, 40, 3, 8)) for kk in (k1, k2, k3))
    expected = xla_attention(q, k, v)
    with use_mesh_rules(make_mesh({"data": 1, **axes} if "data" not in axes else axes)):
        out = jax.jit(lambda a, b, c: mesh_sharded_attention(a, b, c, local_fn=xla_attention))(q, k, v)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=2e-6, rtol=1e-5)


def test_auto_attention_is_exact_xla_on_cpu():
    from gw_jax.models.attention import attention, resolve_auto

    assert resolve_auto(jnp.bfloat16) == "xla" and resolve_auto(jnp.float32) == "xla"
    with use_mesh_rules(make_mesh({"fsdp": 2, "context": 4})):
        assert resolve_auto() == "xla"
    q = jax.random.normal(jax.random.key(4), (1, 8, 2, 4))
    np.testing.assert_array_equal(np.asarray(attention(q, q, q, impl="auto")), np.asarray(xla_attention(q, q, q)))


@pytest.mark.parametrize("q_len,kv_len,fused", [(8, 8, True), (8, 6, True), (8, 7, False), (9, 8, False)])
def test_cudnn_attention_sends_odd_lengths_to_xla(monkeypatch, q_len, kv_len, fused):
    """JAX's cuDNN path refuses odd sequence lengths in the gradient (seen on an H100, tests/test_gpu.py):
    those go to ``xla``; even ones reach ``jax.nn.dot_product_attention(implementation="cudnn")``."""
    from gw_jax.models.attention import cudnn_attention

    calls = []

    def recorded(q, k, v, implementation=None):
        calls.append(implementation)
        return xla_attention(q, k, v)

    monkeypatch.setattr(jax.nn, "dot_product_attention", recorded)
    q = jax.random.normal(jax.random.key(0), (1, q_len, 2, 8))
    kv = jax.random.normal(jax.random.key(1), (1, kv_len, 2, 8))
    np.testing.assert_array_equal(np.asarray(cudnn_attention(q, kv, kv)), np.asarray(xla_attention(q, kv, kv)))
    assert calls == (["cudnn"] if fused else [])


def _collectives_in_sharded_dit(split_frames: bool) -> tuple[str, np.ndarray]:
    """Compiled HLO and output of a tiny DiT forward on data 2 x context 4, the residual stream split over
    ``context`` by frames (the model's choice when they divide) or by the tokens within a frame."""
    from flax import nnx

    from gw_jax.models import dit, dit_blocks
    from gw_jax.models.dit import GigaWorld0DiT

    model = GigaWorld0DiT(max_img_h=8, max_img_w=8, max_frames=4, in_channels=5, out_channels=4, patch_spatial=2,
                          patch_temporal=1, model_channels=32, num_blocks=2, num_heads=2, crossattn_emb_channels=8,
                          adaln_lora_dim=8, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    rng = np.random.default_rng(0)
    args = (rng.normal(size=(2, 5, 4, 8, 8)).astype(np.float32), np.full((2, 1, 4, 1, 1), 0.5, np.float32),
            rng.normal(size=(2, 3, 8)).astype(np.float32), np.float32(16.0), np.zeros((2, 1, 64, 64), np.float32))
    by_tokens = lambda x: constrain(x, ("act_batch", None, "act_length", "act_embed"))  # noqa: E731
    with pytest.MonkeyPatch.context() as patch, use_mesh_rules(make_mesh({"data": 2, "context": 4})):
        if not split_frames:
            patch.setattr(dit, "constrain_btsd", by_tokens)
            patch.setattr(dit_blocks, "constrain_btsd", by_tokens)
        compiled = jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a)).lower(state, *args).compile()
        return compiled.as_text(), np.asarray(compiled(state, *args))


def test_residual_stream_splits_frames_over_context_without_all_to_alls():
    """The sub-blocks' flattened (t s) tokens are split frame-major; a residual stream split by S instead made
    XLA swap layouts with all-to-alls twice per sub-block (1,292 per 2B step on v5p-64, docs/scale.md)."""
    frames_hlo, frames_out = _collectives_in_sharded_dit(split_frames=True)
    tokens_hlo, tokens_out = _collectives_in_sharded_dit(split_frames=False)
    assert frames_hlo.count(" all-to-all(") == 0
    assert tokens_hlo.count(" all-to-all(") > 0  # the control: the old split does swap layouts
    np.testing.assert_allclose(frames_out, tokens_out, rtol=1e-5, atol=1e-5)
