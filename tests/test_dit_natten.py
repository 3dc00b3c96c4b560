"""The DiT with NATTEN (sparse) blocks: the reference fixture through every kernel, round trip, errors, sharding.

The masked kernel (``attention_impl="xla"``) is also run by tests/test_dit.py's fixture parametrisation.
"""

import importlib.util
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from gw_jax.errors import UserInputError
from gw_jax.models.dit import GigaWorld0DiT
from gw_jax.parallel.logical import use_mesh_rules
from gw_jax.parallel.mesh import make_mesh

FIXTURES = Path(__file__).parent / "fixtures"
NAME = "gigaworld0_dit_tiny_natten"
ARGS = ("x", "timesteps", "crossattn_emb", "fps", "padding_mask")


def checkpoint(tmp_path: Path, **config_changes) -> Path:
    directory = tmp_path / "ckpt"
    directory.mkdir(exist_ok=True)
    config = {**json.loads((FIXTURES / f"{NAME}.json").read_text()), **config_changes}
    (directory / "config.json").write_text(json.dumps(config))
    shutil.copy(FIXTURES / f"{NAME}.safetensors", directory / "diffusion_pytorch_model.safetensors")
    return directory


def cases():
    data = np.load(FIXTURES / f"{NAME}.npz")
    return [{k: data[f"case{i}/{k}"] for k in ARGS + ("out",)} for i in range(2)]


def jitted(model):
    """model(*args) compiled once (eager calls of a small DiT dispatch thousands of ops)."""
    graphdef, params = nnx.split(model)
    run = jax.jit(lambda params, *args: nnx.merge(graphdef, params)(*args))
    return lambda *args: run(params, *args)


def rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("options", [dict(attention_impl="blocksparse"),
                                     dict(attention_impl="blocksparse", scan_blocks=False)])
def test_fixture_parity_every_kernel(tmp_path, options):
    model = jitted(GigaWorld0DiT.from_pretrained(checkpoint(tmp_path), **options))
    for case in cases():
        assert rel(model(*(case[k] for k in ARGS)), case["out"]) <= 1e-4


def test_dense_attention_misses_the_fixture(tmp_path):
    """The parity check can fail: the same weights run dense are ~16% away."""
    model = jitted(GigaWorld0DiT.from_pretrained(checkpoint(tmp_path, natten_parameters=None)))
    case = cases()[1]
    assert rel(model(*(case[k] for k in ARGS)), case["out"]) > 0.05


def test_save_pretrained_keeps_natten_parameters(tmp_path):
    model = GigaWorld0DiT.from_pretrained(checkpoint(tmp_path))
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["natten_parameters"] == json.loads((FIXTURES / f"{NAME}.json").read_text())["natten_parameters"]
    again = jitted(GigaWorld0DiT.from_pretrained(tmp_path / "saved"))
    case = cases()[0]
    np.testing.assert_array_equal(np.asarray(again(*(case[k] for k in ARGS))),
                                  np.asarray(jitted(model)(*(case[k] for k in ARGS))))


def test_bad_natten_parameters_fail_at_load(tmp_path):
    entries = json.loads((FIXTURES / f"{NAME}.json").read_text())["natten_parameters"]
    entries[4] = {"window_size": [3, 2, 2], "stride": [1, 3, 1]}
    with pytest.raises(UserInputError, match=r"natten_parameters\[4\]: stride 3 exceeds window_size 2"):
        GigaWorld0DiT.from_pretrained(checkpoint(tmp_path, natten_parameters=entries))
    with pytest.raises(UserInputError, match=r"natten_parameters: 4 entries for 5 blocks"):
        GigaWorld0DiT.from_pretrained(checkpoint(tmp_path, natten_parameters=entries[:4]))


def test_one_frame_and_too_small_grids_fail_naming_the_block(tmp_path):
    model = GigaWorld0DiT.from_pretrained(checkpoint(tmp_path))
    case = cases()[0]
    one_frame = [case["x"][:, :, :1], case["timesteps"][:, :, :1], case["crossattn_emb"], case["fps"],
                 case["padding_mask"]]
    with pytest.raises(UserInputError, match=r"natten_parameters\[0\]: .*more than one latent frame"):
        model(*one_frame)
    small = [case["x"][:, :, :, :4, :4], case["timesteps"], case["crossattn_emb"], case["fps"],
             case["padding_mask"][..., :32, :32]]
    with pytest.raises(UserInputError, match=r"natten_parameters\[2\]: window_size 2 x dilation 2 = 4 exceeds the H"):
        model(*small)


def test_sparse_gradients_blocksparse_equal_masked_with_remat(tmp_path):
    """Parameter gradients through scanned, rematerialised blocks: block-sparse == masked kernel."""
    case = cases()[1]
    grads = {}
    for impl in ("xla", "blocksparse"):
        model = GigaWorld0DiT.from_pretrained(checkpoint(tmp_path), attention_impl=impl, remat_policy="full")
        graphdef, params = nnx.split(model)

        def loss(params, *args, graphdef=graphdef):
            out = nnx.merge(graphdef, params)(*args)
            return ((out - case["out"] * 0.9) ** 2).mean()

        grads[impl] = jax.jit(jax.grad(loss))(params, *(case[k] for k in ARGS))
    for a, b in zip(jax.tree.leaves(grads["blocksparse"]), jax.tree.leaves(grads["xla"]), strict=True):
        assert rel(a, b) < 1e-4


@pytest.mark.parametrize("axes", [{"data": 2, "context": 4}, {"data": 1, "fsdp": 2, "context": 2, "tensor": 2}])
def test_sharded_over_context_equals_one_device(tmp_path, axes):
    model = GigaWorld0DiT.from_pretrained(checkpoint(tmp_path), attention_impl="blocksparse")
    case = cases()[1]
    graphdef, params = nnx.split(model)
    run = lambda params, *a: nnx.merge(graphdef, params)(*a)
    args = [case[k] for k in ARGS]
    single = jax.jit(run)(params, *args)
    with use_mesh_rules(make_mesh(axes)):
        sharded = jax.jit(run)(params, *args)
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(single), atol=1e-5 * np.abs(single).max(), rtol=0)
    assert rel(sharded, case["out"]) <= 1e-4


@pytest.mark.slow
def test_sharded_sparse_train_step_equals_single_device():
    """A whole train step (loss, grads, AdamW update) with sparse blocks on data x fsdp x context."""
    from test_train import one_step, small_config

    natten = [{"window_size": [2, -1, -1]}, {"window_size": [2, 2, 2], "is_causal": [True, False, False]}]
    results = []
    for axes in (dict(data=1), dict(data=2, fsdp=2, context=2)):
        config = small_config(**axes)
        config.model.attention_impl = "blocksparse"
        config.model.natten_parameters = natten
        devices = jax.devices()[:1] if axes == dict(data=1) else None
        results.append(one_step(config, make_mesh(dict(config.mesh.axes), devices=devices)))
    (metrics_1, params_1), (metrics_8, params_8) = results
    np.testing.assert_allclose(metrics_8["loss"], metrics_1["loss"], rtol=1e-5)
    np.testing.assert_allclose(metrics_8["grad_norm"], metrics_1["grad_norm"], rtol=1e-4)
    for a, b in zip(jax.tree.leaves(params_8), jax.tree.leaves(params_1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_sparse_bench_reports_both_kernels():
    from gw_jax.bench.sparse_bench import markdown_table, run_sparse_bench

    report = run_sparse_bench("tiny")
    assert [r["block"] for r in report["attention"]] == ["dense", 3, 11]
    assert all(r["forward_backward_s"] > 0 for r in report["attention"])
    assert 0 < report["dit_flops_ratio"] < 1 and report["dit"]["sparse (blocksparse)"]["train_step_s"] > 0
    assert "2B block 11" in markdown_table(report)


@pytest.mark.tpu
@pytest.mark.skipif(importlib.util.find_spec("libtpu") is None, reason="needs libtpu (pip install -e '.[tpu]')")
def test_sparse_train_step_compiles_for_a_tpu_topology():
    """The block-sparse kernel (shard_map over context, lax.switch over block configs) lowers for TPU."""
    from gw_jax.config import load_config
    from gw_jax.train.compile import compile_report

    config = load_config("configs/tiny.py", ["--config.train.global_batch_size=4"])
    config.model.attention_impl = "blocksparse"
    config.model.natten_parameters = [{"window_size": [2, -1, -1]}, {"window_size": [-1, 2, 2], "dilation": [1, 1, 2]}]
    config.model.num_blocks = 2
    report = compile_report(config, "v5e:2x2", dict(fsdp=2, context=2))
    assert report["fits"] and 0 < report["attention_kept_fraction"] < 1
