"""GigaWorld-0 DiT: parity with the reference PyTorch model (fixtures), dtype, scan/remat, 2B shape."""

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from gw_jax.config import load_config
from gw_jax.models.dit import GigaWorld0DiT

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json") if (FIXTURES / f"{p.stem}.npz").exists())
CONFIGS = Path(__file__).parents[1] / "configs"


def checkpoint_dir(name: str, tmp_path: Path) -> Path:
    """A reference-layout checkpoint dir (config.json + diffusion_pytorch_model.safetensors)."""
    directory = tmp_path / name
    directory.mkdir()
    shutil.copy(FIXTURES / f"{name}.json", directory / "config.json")
    shutil.copy(FIXTURES / f"{name}.safetensors", directory / "diffusion_pytorch_model.safetensors")
    return directory


def cases(name: str):
    data = np.load(FIXTURES / f"{name}.npz")
    i = 0
    while f"case{i}/x" in data.files:
        yield {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"case{i}/")}
        i += 1


def call(model, case, **kw):
    return np.asarray(model(case["x"], case["timesteps"], case["crossattn_emb"], case["fps"], case["padding_mask"],
                            **kw))


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_parity_with_reference_fixtures(name, tmp_path):
    """max |ours - ref| <= 1e-4 * max |ref| at float32 (shared fixtures + held-out configs, see README)."""
    model = GigaWorld0DiT.from_pretrained(checkpoint_dir(name, tmp_path))
    found = 0
    for case in cases(name):
        out, ref = call(model, case), case["out"] if "out" in case else case["out_base"]  # LoRA fixture: its base
        assert out.shape == ref.shape
        assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max(), name
        found += 1
    assert found >= 1


def test_parity_fails_for_a_wrong_fps(tmp_path):
    """The parity check can fail: the temporal RoPE depends on fps."""
    model = GigaWorld0DiT.from_pretrained(checkpoint_dir("gigaworld0_dit_tiny", tmp_path))
    case = next(cases("gigaworld0_dit_tiny"))
    case["fps"] = case["fps"] * 2
    assert np.abs(call(model, case) - case["out"]).max() > 1e-3 * np.abs(case["out"]).max()


def test_bfloat16_compute_close_to_float32(tmp_path):
    """bf16 compute (f32 params, f32 norms/softmax/RoPE) vs f32: bf16 has an 8-bit mantissa (rel. step
    2^-8 = 0.4%); errors compound over 2 blocks x 3 sub-blocks of matmuls, so we allow 5% of max |ref|."""
    directory = checkpoint_dir("gigaworld0_dit_tiny", tmp_path)
    f32 = GigaWorld0DiT.from_pretrained(directory)
    bf16 = GigaWorld0DiT.from_pretrained(directory, dtype="bfloat16")
    for case in cases("gigaworld0_dit_tiny"):
        ref, out = call(f32, case), call(bf16, case)
        err = np.abs(out - ref).max() / np.abs(ref).max()
        assert err < 5e-2, err
        assert err > 1e-5  # it really ran in bf16


@pytest.mark.parametrize("platform,scanned", [("cpu", True), ("tpu", True), ("gpu", False)])
def test_scan_blocks_auto_unrolls_on_gpu_only(monkeypatch, platform, scanned):
    """``scan_blocks="auto"`` (the default): a scan in the traced program except on a GPU, where the unrolled
    2B train step was 1.29x faster (docs/benchmarks.md); command-line spellings accepted, others named."""
    from gw_jax.errors import UserInputError
    from gw_jax.models import dit

    config = json.loads((FIXTURES / "gigaworld0_dit_tiny.json").read_text())
    case = next(cases("gigaworld0_dit_tiny"))
    monkeypatch.setattr(dit, "compute_platform", lambda: platform)
    graphdef, state = nnx.split(GigaWorld0DiT(**config, rngs=nnx.Rngs(0)))
    inputs = [jnp.asarray(case[k]) for k in ("x", "timesteps", "crossattn_emb", "fps", "padding_mask")]
    jaxpr = jax.make_jaxpr(lambda s: nnx.merge(graphdef, s)(*inputs))(state)
    assert ("scan[" in str(jaxpr)) == scanned == dit.blocks_scanned("auto")
    assert GigaWorld0DiT(**config, scan_blocks="False", rngs=nnx.Rngs(0)).scan_blocks is False
    with pytest.raises(UserInputError, match="scan_blocks 'sometimes'"):
        GigaWorld0DiT(**config, scan_blocks="sometimes", rngs=nnx.Rngs(0))


def test_scanned_unscanned_and_remat_agree(tmp_path):
    directory = checkpoint_dir("gigaworld0_dit_tiny_moe", tmp_path)
    case = next(cases("gigaworld0_dit_tiny_moe"))
    scanned = GigaWorld0DiT.from_pretrained(directory)
    unscanned = GigaWorld0DiT.from_pretrained(directory, scan_blocks=False)
    remat = GigaWorld0DiT.from_pretrained(directory, remat_policy="full")
    np.testing.assert_allclose(call(unscanned, case), call(scanned, case), rtol=1e-5, atol=1e-5)

    def loss_and_grads(model):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss(p):
            m = nnx.merge(graphdef, p, rest)
            out = m(case["x"], case["timesteps"], case["crossattn_emb"], case["fps"], case["padding_mask"])
            return jnp.mean(out ** 2)

        return jax.value_and_grad(loss)(params)

    (l1, g1), (l2, g2) = loss_and_grads(scanned), loss_and_grads(remat)
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)


def _count(model_config) -> int:
    abstract = nnx.eval_shape(lambda: GigaWorld0DiT.from_config(model_config, rngs=nnx.Rngs(0)))
    return sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def test_2b_shape_parameter_count():
    """The released 2B shape builds abstractly with the reference parameter count (~1.96B dense)."""
    dense = _count(load_config(CONFIGS / "gigaworld0_2b.py").model)
    d, blocks, lora, text = 2048, 28, 256, 1024
    per_block = ((4 * d * d) + (2 * d * d + 2 * d * text) + 2 * (4 * d * d) + 3 * (d * lora + lora * 3 * d)
                 + 4 * (d // 16))
    expected = 18 * 4 * d + d * d + d * 3 * d + d + blocks * per_block + d * lora + lora * 2 * d + d * 64
    assert dense == expected
    assert 1.9e9 < dense < 2.0e9
    moe = _count(load_config(CONFIGS / "gigaworld0_2b_moe.py").model)
    assert moe == dense + blocks * (3 * 2 * 4 * d * d + 4 * d)  # 4 experts instead of 1 MLP, plus gates


def test_from_config_rejects_unknown_keys():
    from gw_jax.errors import UserInputError

    with pytest.raises(UserInputError, match="bogus"):
        GigaWorld0DiT.from_config(dict(json.loads((FIXTURES / "gigaworld0_dit_tiny.json").read_text()), bogus=1),
                                  rngs=nnx.Rngs(0))


@pytest.mark.parametrize("use_bias", [False, True])
def test_cpu_linear_gradients_equal_the_plain_matmul(use_bias):
    """On XLA:CPU `Linear` flattens tokens and computes its kernel gradient from a transposed copy of x
    (gw_jax.models.layers._cpu_matmul): outputs and gradients must equal x @ W + b's."""
    from gw_jax.models.layers import linear

    layer = linear(8, 5, ("embed", "mlp"), rngs=nnx.Rngs(0), use_bias=use_bias)
    graphdef, state = nnx.split(layer)
    x_bld = jax.random.normal(jax.random.key(1), (2, 3, 8))

    def loss(state, x, plain):
        m = nnx.merge(graphdef, state)
        y = x @ m.kernel[...] + (m.bias[...] if use_bias else 0.0) if plain else m(x)
        return jnp.sum(jnp.sin(y) * jnp.arange(5.0))

    ours = jax.grad(loss, argnums=(0, 1))(state, x_bld, False)
    plain = jax.grad(loss, argnums=(0, 1))(state, x_bld, True)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("platform", ["cpu", "gpu"])
def test_project_equals_the_layers_one_by_one(platform, monkeypatch):
    """`project` runs attention's q, k, v as one matmul on concatenated kernels on XLA:CPU: outputs and gradients
    must equal the three layers applied one by one (every other platform's path, and the path it takes once a layer
    has a LoRA adapter); on "gpu" it must not concatenate."""
    from gw_jax.models import layers
    from gw_jax.models.lora import LoRAAdapter

    monkeypatch.setattr(layers, "compute_platform", lambda: platform)
    stack = nnx.List([layers.linear(8, n, ("embed", "heads"), rngs=nnx.Rngs(i)) for i, n in enumerate((6, 6, 4))])
    graphdef, state = nnx.split(stack)
    x_bld = jax.random.normal(jax.random.key(1), (2, 3, 8))

    def loss(state, x, fused):
        linears = list(nnx.merge(graphdef, state))
        ys = layers.project(x, linears) if fused else [layer(x) for layer in linears]
        return sum(jnp.sum(jnp.sin(y) * jnp.arange(1.0, y.shape[-1] + 1)) * (i + 1) for i, y in enumerate(ys))

    fused = jax.grad(loss, argnums=(0, 1))(state, x_bld, True)
    one_by_one = jax.grad(loss, argnums=(0, 1))(state, x_bld, False)
    for a, b in zip(jax.tree.leaves(fused), jax.tree.leaves(one_by_one), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    ys = layers.project(x_bld, list(stack))
    assert [y.shape for y in ys] == [(2, 3, 6), (2, 3, 6), (2, 3, 4)]
    # the fused path is XLA:CPU's only: elsewhere the comparisons above hold trivially, so check which path ran
    jaxpr = str(jax.make_jaxpr(lambda x: layers.project(x, list(stack)))(x_bld))
    assert ("concatenate" in jaxpr) == (platform == "cpu")
    for y, layer in zip(ys, stack, strict=True):
        np.testing.assert_allclose(y, x_bld @ layer.kernel[...], rtol=1e-5, atol=1e-5)
    lora_a, lora_b = jax.random.normal(jax.random.key(2), (8, 2)), jax.random.normal(jax.random.key(3), (2, 6))
    stack[1].lora = LoRAAdapter(lora_a, lora_b, jnp.full((2,), 0.5), ("embed", "heads"))
    # with an adapter every platform runs the layers one by one (fused + adapters rounded 3 ulp from the base program)
    assert "concatenate" not in str(jax.make_jaxpr(lambda x: layers.project(x, list(stack)))(x_bld))
    deltas = [0.0, (x_bld @ lora_a * 0.5) @ lora_b, 0.0]
    for y, layer, delta in zip(layers.project(x_bld, list(stack)), stack, deltas, strict=True):
        np.testing.assert_allclose(y, x_bld @ layer.kernel[...] + delta, rtol=1e-5, atol=1e-5)


def test_norms_and_gelu_save_only_their_inputs_for_the_backward():
    """LayerNorm, RMSNorm and GELU are recomputed in the backward (jax.checkpoint): a bf16 block saves none of
    their float32 / element-wise intermediates (a 2B block: 522 -> 347 MiB at 1,200 tokens, docs/benchmarks.md)."""
    from gw_jax.bench.dit_bench import saved_residual_lines
    from gw_jax.models.dit_blocks import TransformerBlock
    from gw_jax.models.rope import rope_angles

    d, heads, s = 32, 2, 16
    block = TransformerBlock("FA-CA-MLP", d, 8, heads, 4.0, 8, None, attention_impl="xla", rngs=nnx.Rngs(0),
                             dtype=jnp.bfloat16, param_dtype=jnp.float32)
    graphdef, state = nnx.split(block)
    x = jnp.ones((1, 1, s, d), jnp.bfloat16)
    emb, lora = jnp.ones((1, 1, d), jnp.bfloat16), jnp.zeros((1, 1, 3 * d), jnp.bfloat16)
    context, angles = jnp.ones((1, 4, 8), jnp.bfloat16), rope_angles(d // heads, 1, 4, 4, 16.0, (1.0, 1.0, 1.0))

    def loss(state, x):
        return nnx.merge(graphdef, state)(x, emb, lora, context, angles).astype(jnp.float32).sum()

    lines = saved_residual_lines(loss, state, x)
    assert len(lines) > 10  # the block does save its matmul inputs, attention and the like
    norm_f32 = [line for line in lines if line.startswith("f32[") and "layers.py" in line]
    gelu_internals = [line for line in lines if "erf" in line or "gelu" in line]
    assert not norm_f32 and not gelu_internals, norm_f32 + gelu_internals


def test_recomputed_norms_and_gelu_have_the_plain_gradients():
    from gw_jax.models.layers import RMSNorm, gelu, layer_norm

    x = jax.random.normal(jax.random.key(0), (3, 16)) * 2.0 + 0.5
    weights = jnp.sin(jnp.arange(16.0))

    def plain_layer_norm(x):
        mean = x.mean(-1, keepdims=True)
        return (x - mean) / jnp.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-6)

    def plain_rms(x):
        return x / jnp.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-6)

    norm = RMSNorm(16)
    for ours, plain in ((layer_norm, plain_layer_norm), (norm, plain_rms),
                        (gelu, lambda x: 0.5 * x * (1 + jax.scipy.special.erf(x / jnp.sqrt(2.0))))):
        weighted_grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * weights))(x)  # noqa: E731
        np.testing.assert_allclose(weighted_grad(ours), weighted_grad(plain), rtol=1e-5, atol=1e-6)
