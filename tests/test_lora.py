"""LoRA adapters in the release's format: parity with the reference's load_lora (scales 1 and 0.5, fused),
several adapters, export round trip, fresh adapters leave the output unchanged, and bad adapters."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from gw_jax.errors import UserInputError
from gw_jax.models import lora
from gw_jax.models.dit import GigaWorld0DiT

FIXTURES = Path(__file__).parent / "fixtures"
NAME = "gigaworld0_dit_tiny_lora"
ADAPTER = FIXTURES / f"{NAME}_lora"


def base_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "transformer"
    directory.mkdir(exist_ok=True)
    shutil.copy(FIXTURES / f"{NAME}.json", directory / "config.json")
    shutil.copy(FIXTURES / f"{NAME}.safetensors", directory / "diffusion_pytorch_model.safetensors")
    return directory


@pytest.fixture(scope="module")
def case():
    data = np.load(FIXTURES / f"{NAME}.npz")
    args = [data[f"case0/{k}"] for k in ("x", "timesteps", "crossattn_emb", "fps", "padding_mask")]
    return args, {k: data[f"case0/{k}"] for k in ("out_base", "out_lora", "out_lora_half")}


def rel_err(ours, ref) -> float:
    return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("spec,expected,fuse", [
    (None, "out_base", False),
    (str(ADAPTER), "out_lora", False),
    ({"default": str(ADAPTER)}, "out_lora", True),
    ({"half": (str(ADAPTER), 0.5)}, "out_lora_half", False),
    ({"half": (str(ADAPTER), 0.5)}, "out_lora_half", True),
])
def test_load_lora_matches_the_reference(tmp_path, case, spec, expected, fuse):
    args, outs = case
    model = GigaWorld0DiT.from_pretrained(base_dir(tmp_path))
    if spec is not None:
        model.load_lora(spec, fuse=fuse)
    assert rel_err(model(*args), outs[expected]) <= 1e-4
    if fuse:  # merged into the kernels, nothing left to add at run time
        assert all(linear.lora is None for linear, _, _ in lora.adaptable_linears(model).values())


def test_two_adapters_add_up_and_a_later_call_replaces_unfused_ones(tmp_path, case):
    """Two half-scale copies of one adapter = the adapter at scale 1; peft's set_adapters semantics."""
    args, outs = case
    model = GigaWorld0DiT.from_pretrained(base_dir(tmp_path))
    model.load_lora({"a": (ADAPTER, 0.5), "b": (ADAPTER / "diffusion_pytorch_model.safetensors", 0.5)})
    assert rel_err(model(*args), outs["out_lora"]) <= 1e-4
    model.load_lora({"c": (ADAPTER, 0.5)})  # a and b are no longer active
    assert rel_err(model(*args), outs["out_lora_half"]) <= 1e-4


def test_export_round_trip_in_the_release_format(tmp_path, case):
    args, outs = case
    model = GigaWorld0DiT.from_pretrained(base_dir(tmp_path))
    model.load_lora({"half": (ADAPTER, 0.5)})
    written = model.save_lora(tmp_path / "export")
    original, exported = load_file(str(ADAPTER / "diffusion_pytorch_model.safetensors")), load_file(str(written))
    assert set(exported) == set(original)  # the same peft keys, scale folded into lora_B
    for key in original:
        factor = 0.5 if ".lora_B." in key else 1.0
        np.testing.assert_allclose(exported[key], original[key] * factor, rtol=1e-6, atol=0)
    again = GigaWorld0DiT.from_pretrained(base_dir(tmp_path))
    again.load_lora(tmp_path / "export")
    assert rel_err(again(*args), outs["out_lora_half"]) <= 1e-4


def test_fresh_adapters_give_the_base_output_exactly_and_export_with_alpha(tmp_path, case):
    args, outs = case
    model = GigaWorld0DiT.from_pretrained(base_dir(tmp_path))
    base = np.asarray(model(*args))
    names = lora.add_lora(model, rank=3, alpha=6.0, rngs=nnx.Rngs(0))
    assert len(names) == 8  # q, k, v, out of self- and cross-attention (stacked over blocks)
    np.testing.assert_array_equal(np.asarray(model(*args)), base)
    # a trained adapter (random B) at alpha/r = 2 exports with the 2 folded into B and reads back the same
    for linear, _, _ in lora.adaptable_linears(model).values():
        if linear.lora is not None:
            linear.lora.b[...] = 0.1 * jax.random.normal(jax.random.key(1), linear.lora.b.shape)
    adapted = np.asarray(model(*args))
    assert rel_err(adapted, base) > 1e-3
    model.save_lora(tmp_path / "mine")
    again = GigaWorld0DiT.from_pretrained(base_dir(tmp_path))
    again.load_lora(tmp_path / "mine")
    assert rel_err(again(*args), adapted) <= 1e-5


def test_fuse_multiplies_at_full_precision_under_any_default():
    # XLA:CPU multiplies float32 exactly whatever the precision, so the fused-parity case cannot fail here; a GPU's
    # TF32 default did (1.4e-4 off the reference on an H100). The fuse must ask for full precision itself.
    a, scale, b = np.ones((2, 8, 3), np.float32), np.ones((2, 3), np.float32), np.ones((2, 3, 5), np.float32)
    with jax.default_matmul_precision("tensorfloat32"):
        jaxpr = jax.make_jaxpr(lora.fused_delta)(a, scale, b)
    dots = [eqn for eqn in jaxpr.jaxpr.eqns if eqn.primitive.name == "dot_general"]
    assert dots and all(eqn.params["precision"] == (jax.lax.Precision.HIGHEST,) * 2 for eqn in dots)
    np.testing.assert_allclose(lora.fused_delta(a, scale, b), np.full((2, 8, 5), 3.0))


def test_adapter_state_shards_with_the_kernel():
    config = json.loads((FIXTURES / f"{NAME}.json").read_text())
    model = GigaWorld0DiT(**config, rngs=nnx.Rngs(0))
    lora.add_lora(model, rank=2, rngs=nnx.Rngs(1))
    specs = nnx.get_partition_spec(nnx.state(model, lora.LoRAParam))
    to_q = specs["blocks"]["sub_blocks"][0]["block"]["to_q"]["lora"]
    assert tuple(to_q["a"].get_value()) == ("layers", "embed", "lora_rank")
    assert tuple(to_q["b"].get_value()) == ("layers", "lora_rank", "heads")


def _damaged(tmp_path, edit) -> Path:
    tensors = load_file(str(ADAPTER / "diffusion_pytorch_model.safetensors"))
    edit(tensors)
    directory = tmp_path / "bad"
    directory.mkdir()
    save_file(tensors, str(directory / "diffusion_pytorch_model.safetensors"))
    return directory


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.update({"blocks.block7.blocks.0.block.to_q.0.lora_A.weight":
                         t["blocks.block0.blocks.0.block.to_q.0.lora_A.weight"]}),
     "LoRA keys match no module of the model: .'blocks.block7.blocks.0.block.to_q.0'"),
    (lambda t: t.update({"blocks.block0.blocks.0.block.to_q.0.lora_A.weight": np.zeros((5, 48), np.float32)}),
     "rank mismatch at blocks.block0.blocks.0.block.to_q.0: lora_A has rank 5, lora_B 4"),
    (lambda t: t.update({"blocks.block0.blocks.1.block.to_k.0.lora_A.weight": np.zeros((4, 21), np.float32)}),
     "adapter maps 21 -> 48 features, the model's linear 20 -> 48"),
    (lambda t: t.pop("blocks.block0.blocks.0.block.to_q.0.lora_B.weight"), "only one of lora_A / lora_B"),
])
def test_bad_adapters_name_the_problem(tmp_path, edit, message):
    model = GigaWorld0DiT.from_pretrained(base_dir(tmp_path))
    with pytest.raises(UserInputError, match=message):
        model.load_lora(_damaged(tmp_path, edit))
    with pytest.raises(UserInputError, match="no such file or folder"):
        model.load_lora(tmp_path / "nowhere")
