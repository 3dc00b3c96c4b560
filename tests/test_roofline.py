"""Roofline estimate from a compiled step (gw_jax.train.roofline): counts checked by hand on small CPU programs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from gw_jax.train.compile_cli import roofline_table
from gw_jax.train.roofline import CHIPS, Chip, collective_bytes, combine, roofline, step_costs


def test_flops_bytes_and_roofline_of_a_matmul():
    compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((64, 128)), jnp.ones((128, 32))).compile()
    costs = step_costs(compiled)
    assert costs["flops"] == 2 * 64 * 128 * 32
    assert costs["hbm_bytes"] >= 4 * (64 * 128 + 128 * 32 + 64 * 32)  # reads both inputs, writes the output
    assert all(entry["count"] == 0 for entry in costs["collectives"].values())
    chip = Chip("test", peak_flops=1e9, hbm_bytes_per_s=1e6, ici_bytes_per_s=1e6, source="-")
    estimate = roofline(costs, chip, model_flops_per_chip=2 * 64 * 128 * 32)
    assert estimate["compute_s"] == pytest.approx(524288 / 1e9)
    assert estimate["hbm_s"] == pytest.approx(costs["hbm_bytes"] / 1e6)
    assert estimate["bound"] == "hbm" and estimate["step_s"] == estimate["hbm_s"]
    assert estimate["mfu"] == pytest.approx(524288 / 1e9 / estimate["hbm_s"])
    estimate["method"] = "test"
    table = roofline_table(estimate)  # what gw-jax compile prints
    assert "| HBM bytes accessed |" in table and "hbm-bound" in table


def test_collective_bytes_from_the_hlo_of_a_sharded_program():
    """all-gather of a (2, 16) f32 shard over 4 devices, then an all-reduce of the (8, 16) result over 2."""
    mesh = Mesh(np.asarray(jax.devices()).reshape(2, 4), ("a", "b"))

    def f(x):
        gathered = jax.lax.all_gather(x, "b", axis=0, tiled=True)
        return jax.lax.psum(gathered, "a")

    fn = jax.shard_map(f, mesh=mesh, in_specs=P("a", "b"), out_specs=P("a"), check_vma=False)
    costs = step_costs(jax.jit(fn).lower(jnp.ones((4, 64))).compile(), num_devices=8)
    gather, reduce = costs["collectives"]["all-gather"], costs["collectives"]["all-reduce"]
    assert (gather["count"], gather["operand_bytes"], gather["link_bytes"]) == (1, 2 * 16 * 4, 2 * 16 * 4 * 3)
    assert (reduce["count"], reduce["operand_bytes"], reduce["link_bytes"]) == (1, 8 * 16 * 4, 2 * 8 * 16 * 4 / 2)
    estimate = roofline(costs, CHIPS["v5e"], model_flops_per_chip=0.0)
    assert estimate["ici_s"] == pytest.approx((384 + 512) / 200e9)


def test_tpu_hlo_forms_of_replica_groups_and_fused_reduce_scatter():
    """Shapes TPU prints without operand shapes, iota and mesh replica groups, all-reduce-scatter fusions."""
    hlo = """
%all-reduce-scatter (input: bf16[256,2048]) -> bf16[256,1024] {
  %input = bf16[256,2048]{1,0:T(8,128)(2,1)} parameter(0)
  %all-reduce.3 = bf16[256,2048]{1,0:T(8,128)(2,1)} all-reduce(%input), channel_id=2, replica_groups={{0,1},{2,3}}
}
ENTRY %main (p: f32[1024]) -> f32[1024] {
  %p = f32[1024]{0} parameter(0)
  %ag = (f32[1024]{0}, f32[4096]{0}) all-gather-start(%p), replica_groups=[2,4]<=[8], dimensions={0}
  %agd = f32[4096]{0} all-gather-done(%ag)
  ROOT %ar = f32[1024]{0} all-reduce(%p), replica_groups=mesh['axis_0'=2,'axis_1'=4] {'axis_1'}, to_apply=%add
}
"""
    found = collective_bytes(hlo, num_devices=8)
    assert found["reduce-scatter"] == dict(count=1, operand_bytes=256 * 2048 * 2, link_bytes=256 * 2048 * 2 / 2)
    assert found["all-gather"] == dict(count=1, operand_bytes=4096, link_bytes=4096 * 3)
    assert found["all-reduce"] == dict(count=1, operand_bytes=4096, link_bytes=2 * 4096 * 3 / 4)


def test_combine_extrapolates_linearly():
    one = dict(flops=10.0, hbm_bytes=100.0, collectives={k: dict(count=1, operand_bytes=4.0, link_bytes=8.0)
                                                         for k in ("all-gather", "reduce-scatter", "all-reduce",
                                                                   "all-to-all", "collective-permute")})
    two = dict(flops=16.0, hbm_bytes=150.0, collectives={k: dict(count=2, operand_bytes=6.0, link_bytes=12.0)
                                                         for k in one["collectives"]})
    n = 28  # c1 + (n - 1) * (c2 - c1)
    total = combine([one, two], [1 - (n - 1), n - 1])
    assert total["flops"] == 10 + 27 * 6 and total["hbm_bytes"] == 100 + 27 * 50
    assert total["collectives"]["all-gather"] == dict(count=28, operand_bytes=4 + 27 * 2, link_bytes=8 + 27 * 4)
