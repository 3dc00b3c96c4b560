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
