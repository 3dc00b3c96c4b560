"""Benchmark table and TPU ahead-of-time compile (tiny sizes; the real figures are in docs/)."""

import importlib.util

import pytest

from gw_jax.bench.dit_bench import markdown_table, run_dit_bench


def test_dit_bench_table_jax_vs_pytorch_eager():
    pytest.importorskip("diffusers")
    report = run_dit_bench("tiny", torch_compile=False)
    jax_row, torch_row = report["rows"]["jax (XLA, jit)"], report["rows"]["pytorch eager"]
    assert jax_row["forward_s"] > 0 and torch_row["train_step_s"] > 0
    table = markdown_table(report)
    assert "pytorch eager" in table and "JAX speed-up" in table


@pytest.mark.tpu
@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (pip install -e '.[tpu]')")
def test_compile_for_a_small_tpu_topology():
    from gw_jax.config import load_config
    from gw_jax.train.compile import compile_report

    config = load_config("configs/tiny.py", ["--config.train.global_batch_size=4"])
    report = compile_report(config, "v5e:2x2", dict(fsdp=2, context=2))
    assert report["chips"] == 4 and report["fits"]
    assert 0 < report["per_chip"]["temporaries_gib"] < 1


def test_vae_bench_times_both_frameworks_and_reports_memory():
    pytest.importorskip("diffusers")
    from gw_jax.bench import vae_bench

    report = vae_bench.run_vae_bench("tiny")
    assert report["max_rel_diff_latents"] < 1e-4  # both frameworks ran the same weights
    assert report["jax"]["encode_s"] > 0 and report["torch"]["decode_s"] > 0
    memory = report["compiled_memory"]
    assert memory["encode"]["temporaries_gib"] > 0 and memory["decode"]["gflops"] > 0
    assert "JAX speed-up" in vae_bench.markdown_table(report)
