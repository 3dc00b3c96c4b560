"""Benchmark table and TPU ahead-of-time compile (tiny sizes; the real figures are in docs/)."""

import importlib.util

import pytest

from gw_jax.bench.dit_bench import interleaved_medians, markdown_table, run_dit_bench


def test_dit_bench_table_jax_vs_pytorch_eager():
    pytest.importorskip("diffusers")
    report = run_dit_bench("tiny", torch_compile=False)
    jax_row, torch_row = report["rows"]["jax (XLA, jit)"], report["rows"]["pytorch eager"]
    assert jax_row["forward_s"] > 0 and torch_row["train_step_s"] > 0
    assert jax_row["train_step_s_cpu"] > 0 and torch_row["forward_s_cpu"] > 0  # process CPU time, per row
    table = markdown_table(report)
    assert "pytorch eager" in table and "JAX speed-up" in table and "CPU-s" in table


def test_interleaved_rounds_time_the_second_of_two_calls_in_shuffled_order():
    """Each turn is one untimed call then the timed one (the first call after another framework's is slower), every
    implementation once per round, the order shuffled between rounds."""
    calls = []
    timers = {name: {key: (lambda turn=(name, key): calls.append(turn)) for key in ("forward_s", "train_step_s")}
              for name in ("jax", "torch")}
    rows = {name: {} for name in timers}
    interleaved_medians(rows, timers, repeats=6)
    assert calls[0::2] == calls[1::2]  # every timed call follows an untimed call of the same callable
    rounds = [calls[1::2][i:i + 4] for i in range(0, 24, 4)]
    assert all(sorted(turns) == sorted(rounds[0]) for turns in rounds) and len(set(rounds[0])) == 4
    assert len({tuple(turns) for turns in rounds}) > 1  # shuffled, not one fixed order
    assert rows["jax"]["train_step_s"] >= 0 and "forward_s_cpu" in rows["torch"]


@pytest.mark.tpu
@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (pip install -e '.[tpu]')")
def test_compile_for_a_small_tpu_topology():
    """The 2B configs' attention default (``auto``) compiles as the Pallas splash kernel under shard_map for TPU,
    with a roofline estimate; ``xla`` compiles no Pallas kernel."""
    from gw_jax.config import load_config
    from gw_jax.train.compile import compile_report

    default = load_config("configs/gigaworld0_2b.py").model.attention_impl
    config = load_config("configs/tiny.py", ["--config.train.global_batch_size=4",
                                             f"--config.model.attention_impl={default}"])
    report = compile_report(config, "v5e:2x2", dict(fsdp=2, context=2), with_roofline=True)
    assert report["chips"] == 4 and report["fits"]
    assert 0 < report["per_chip"]["temporaries_gib"] < 1
    assert report["attention_impl"] == "splash" and report["pallas_kernels"] > 0
    roofline = report["roofline"]
    assert roofline["extra_flops"] > 0 and roofline["flops"] > roofline["extra_flops"]
    assert roofline["step_s"] == max(roofline["compute_s"], roofline["hbm_s"], roofline["ici_s"]) > 0
    assert 0 < roofline["mfu"] < 1 and roofline["collectives"]["all-gather"]["count"] > 0
    config.model.attention_impl = "xla"
    report = compile_report(config, "v5e:2x2", dict(fsdp=2, context=2))
    assert report["attention_impl"] == "xla" and report["pallas_kernels"] == 0


def test_vae_bench_times_both_frameworks_and_reports_memory():
    pytest.importorskip("diffusers")
    from gw_jax.bench import vae_bench

    report = vae_bench.run_vae_bench("tiny")
    assert report["max_rel_diff_latents"] < 1e-4  # both frameworks ran the same weights
    assert report["jax"]["encode_s"] > 0 and report["torch"]["decode_s"] > 0
    memory = report["compiled_memory"]
    assert memory["encode"]["temporaries_gib"] > 0 and memory["decode"]["gflops"] > 0
    assert "JAX speed-up" in vae_bench.markdown_table(report)


def test_sample_loops_do_the_same_work_and_the_check_can_fail():
    """JAX's scan and the PyTorch port make the same calls (one per step, batch 2B) and agree numerically; the
    old PyTorch loop (two calls of batch B, other preconditioning) is caught by the same comparison."""
    pytest.importorskip("diffusers")
    import numpy as np
    import torch

    from gw_jax.bench import sample_bench
    from gw_jax.bench.dit_bench import PRESETS

    p, steps = PRESETS["tiny"], 4
    work = sample_bench.check_same_work(p, steps)
    assert work["jax_call_batches"] == work["torch_call_batches"] == [2 * p["batch"]] * steps
    assert work["max_abs_diff"] <= 1e-5 * work["max_abs"]

    data = {k: torch.from_numpy(v) for k, v in sample_bench.inputs(p).items()}
    calls = []
    old = sample_bench.legacy_two_calls(
        lambda x, t, c: calls.append(x.shape[0]) or sample_bench.torch_stand_in(x, t, c), data["noise"],
        context=data["context"], negative_context=data["negative"], cond_latents=data["cond"],
        cond_mask=data["mask"], steps=steps)
    new = sample_bench.torch_sample_reference(
        sample_bench.torch_stand_in, data["noise"], context=data["context"], negative_context=data["negative"],
        cond_latents=data["cond"], cond_mask=data["mask"], steps=steps)
    assert calls == [p["batch"]] * (2 * steps)
    assert np.abs(old.numpy() - new.numpy()).max() > 1e-2 * work["max_abs"]


@pytest.mark.slow  # compiles the tiny DiT's sampling scan and runs diffusers' model: ~1 min under load
def test_sample_bench_table():
    pytest.importorskip("diffusers")
    from gw_jax.bench import sample_bench

    report = sample_bench.run_sample_bench("tiny", steps=2, torch_compile=False)
    assert set(report["rows"]) == {"jax (lax.scan, jit)", "pytorch eager",
                                   "pytorch eager, old loop (2 calls of B per step)"}
    assert report["rows"]["pytorch eager"]["loop_s"] > 0 and report["rows"]["pytorch eager"]["loop_s_cpu"] > 0
    table = sample_bench.markdown_table(report)
    assert "model calls x batch" in table and "Same work" in table
