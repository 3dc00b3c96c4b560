"""Reference checkpoint layout: round trip, sharded files with an index, and clear errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from gw_jax.errors import UserInputError
from gw_jax.models.dit import GigaWorld0DiT

FIXTURES = Path(__file__).parent / "fixtures"
NAME = "gigaworld0_dit_tiny_moe"


def reference_dir(tmp_path: Path, tensors=None) -> Path:
    directory = tmp_path / "ref"
    directory.mkdir()
    shutil.copy(FIXTURES / f"{NAME}.json", directory / "config.json")
    if tensors is None:
        shutil.copy(FIXTURES / f"{NAME}.safetensors", directory / "diffusion_pytorch_model.safetensors")
    else:
        save_file(tensors, str(directory / "diffusion_pytorch_model.safetensors"))
    return directory


def test_save_pretrained_round_trip_is_exact_and_sharded(tmp_path):
    model = GigaWorld0DiT.from_pretrained(reference_dir(tmp_path))
    out = tmp_path / "saved"
    model.save_pretrained(out, max_shard_bytes=300_000)
    shards = sorted(out.glob("diffusion_pytorch_model-*.safetensors"))
    assert len(shards) > 1 and (out / "diffusion_pytorch_model.safetensors.index.json").exists()
    # the same tensors, under the same reference names, as the original checkpoint
    original = load_file(str(FIXTURES / f"{NAME}.safetensors"))
    written = {}
    for shard in shards:
        written.update(load_file(str(shard)))
    assert set(written) == set(original)
    for key in original:
        np.testing.assert_array_equal(written[key], original[key])
    assert json.loads((out / "config.json").read_text())["moe_parameters"]["num_routed_experts"] == 4
    again = GigaWorld0DiT.from_pretrained(out)
    case = np.load(FIXTURES / f"{NAME}.npz")
    args = [case[f"case0/{k}"] for k in ("x", "timesteps", "crossattn_emb", "fps", "padding_mask")]
    np.testing.assert_array_equal(np.asarray(again(*args)), np.asarray(model(*args)))


def test_bfloat16_checkpoint_files_load(tmp_path):
    import ml_dtypes

    tensors = {k: v.astype(ml_dtypes.bfloat16) for k, v in load_file(str(FIXTURES / f"{NAME}.safetensors")).items()}
    from gw_jax.convert.safetensors_io import save_flat

    directory = tmp_path / "bf16"
    directory.mkdir()
    shutil.copy(FIXTURES / f"{NAME}.json", directory / "config.json")
    save_flat(tensors, directory)
    model = GigaWorld0DiT.from_pretrained(directory)
    assert model.x_embedder.kernel[...].dtype == np.float32


@pytest.mark.parametrize("damage,message", [
    ("missing", "missing key blocks.block1.blocks.0.block.to_q.0.weight"),
    ("unexpected", "unexpected keys"),
    ("shape", "final_layer.linear.weight has shape"),
])
def test_bad_checkpoints_name_the_key(tmp_path, damage, message):
    tensors = load_file(str(FIXTURES / f"{NAME}.safetensors"))
    if damage == "missing":
        del tensors["blocks.block1.blocks.0.block.to_q.0.weight"]
    elif damage == "unexpected":
        tensors["blocks.block0.extra.weight"] = np.zeros(3, np.float32)
    else:
        tensors["final_layer.linear.weight"] = np.zeros((10, 64), np.float32)
    with pytest.raises(UserInputError, match=message):
        GigaWorld0DiT.from_pretrained(reference_dir(tmp_path, tensors))


def test_missing_config_and_unreadable_weights(tmp_path):
    with pytest.raises(UserInputError, match="config.json"):
        GigaWorld0DiT.from_pretrained(tmp_path)
    directory = reference_dir(tmp_path)
    (directory / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserInputError, match="unreadable safetensors"):
        GigaWorld0DiT.from_pretrained(directory)
