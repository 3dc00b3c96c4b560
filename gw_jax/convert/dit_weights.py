"""Reference (PyTorch) GigaWorld-0 DiT weights <-> gw_jax NNX state.

Reference keys look like ``blocks.block3.blocks.0.block.to_q.0.weight``; torch Linear weights are
(out, in) and become NNX kernels (in, out). gw_jax stacks the blocks on a leading axis (``block{i}``
-> index i) and stacks MoE experts (``experts.{e}``) on the next one.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gw_jax.convert.safetensors_io import load_flat, save_flat
from gw_jax.errors import UserInputError

WEIGHTS_STEM = "diffusion_pytorch_model"

_TOP_LEVEL = {
    ("x_embedder", "kernel"): "x_embedder.proj.1.weight",
    ("t_embedder_1", "kernel"): "t_embedder.1.linear_1.weight",
    ("t_embedder_2", "kernel"): "t_embedder.1.linear_2.weight",
    ("affline_norm", "scale"): "affline_norm.weight",
    ("final_layer", "adaln_down", "kernel"): "final_layer.adaLN_modulation.1.weight",
    ("final_layer", "adaln_up", "kernel"): "final_layer.adaLN_modulation.2.weight",
    ("final_layer", "linear", "kernel"): "final_layer.linear.weight",
}
# Inside blocks.sub_blocks.{j}: our path suffix -> reference suffix after "blocks.block{i}.blocks.{j}."
_IN_SUB_BLOCK = {
    ("adaln_down", "kernel"): "adaLN_modulation.1.weight",
    ("adaln_up", "kernel"): "adaLN_modulation.2.weight",
    ("block", "to_q", "kernel"): "block.to_q.0.weight",
    ("block", "q_norm", "scale"): "block.to_q.1.weight",
    ("block", "to_k", "kernel"): "block.to_k.0.weight",
    ("block", "k_norm", "scale"): "block.to_k.1.weight",
    ("block", "to_v", "kernel"): "block.to_v.0.weight",
    ("block", "to_out", "kernel"): "block.to_out.0.weight",
    ("block", "layer1", "kernel"): "block.layer1.weight",
    ("block", "layer2", "kernel"): "block.layer2.weight",
    ("block", "gate"): "block.gate.weight",
    ("block", "w1"): "block.experts.{e}.layer1.weight",
    ("block", "w2"): "block.experts.{e}.layer2.weight",
    ("block", "shared", "layer1", "kernel"): "block.shared_experts.layer1.weight",
    ("block", "shared", "layer2", "kernel"): "block.shared_experts.layer2.weight",
}


def _reference_template(path: tuple) -> tuple[str, bool, bool]:
    """(key template with {i} block / {e} expert placeholders, stacked over blocks, transpose)."""
    path = tuple(str(p) for p in path)
    if path in _TOP_LEVEL:
        return _TOP_LEVEL[path], False, path[-1] == "kernel"
    if path[:2] == ("blocks", "sub_blocks") and path[3:] in _IN_SUB_BLOCK:
        suffix = _IN_SUB_BLOCK[path[3:]]
        transpose = path[-1] in ("kernel", "gate", "w1", "w2")
        return f"blocks.block{{i}}.blocks.{path[2]}.{suffix}", True, transpose
    raise KeyError(f"no reference name for parameter {'.'.join(path)}")


def _flat_params(model: nnx.Module) -> dict[tuple, nnx.Variable]:
    return dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))


def reference_to_array(path: tuple, shape: tuple, tensors: dict, origin: dict, used: set) -> np.ndarray:
    template, stacked, transpose = _reference_template(path)
    num_blocks = shape[0] if stacked else 1
    experts = "{e}" in template
    per_block = []
    for i in range(num_blocks):
        keys = [template.format(i=i, e=e) for e in range(shape[1])] if experts else [template.format(i=i)]
        arrays = []
        for key in keys:
            if key not in tensors:
                raise UserInputError(f"missing key {key} in the checkpoint ({sorted(set(origin.values()))[0]})")
            value = np.asarray(tensors[key])
            arrays.append(value.T if transpose else value)
            used.add(key)
        per_block.append(np.stack(arrays) if experts else arrays[0])
    value = np.stack(per_block) if stacked else per_block[0]
    if tuple(value.shape) != tuple(shape):
        key = template.format(i=0, e=0)
        raise UserInputError(f"{origin.get(key, '?')}: key {key} has shape {tensors[key].shape}, "
                             f"the model config expects {tuple(reversed(shape[-2:])) if transpose else shape[-1:]}"
                             f" (gw_jax {'.'.join(map(str, path))} {tuple(shape)})")
    return value


def load_reference_weights(model: nnx.Module, directory: Path, *, verify_checksums: bool = True) -> None:
    """Fills ``model`` (possibly abstract, from nnx.eval_shape) with the checkpoint's weights, in place."""
    tensors, origin = load_flat(directory, WEIGHTS_STEM, verify=verify_checksums)
    used: set[str] = set()
    new_values = {}
    for path, variable in _flat_params(model).items():
        value = reference_to_array(path, tuple(variable.shape), tensors, origin, used)
        new_values[path] = jnp.asarray(value, dtype=variable.dtype)
    unexpected = sorted(set(tensors) - used)
    if unexpected:
        raise UserInputError(f"unexpected keys in {sorted({str(origin[k]) for k in unexpected})[0]}: "
                             f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    state = nnx.state(model, nnx.Param)
    flat = nnx.to_flat_state(state)
    updated = nnx.from_flat_state([(path, var.replace(new_values[path])) for path, var in flat])
    nnx.update(model, updated)


def model_to_reference(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's parameters under reference names and layouts (float32 numpy)."""
    out = {}
    for path, variable in _flat_params(model).items():
        value = np.asarray(jax.device_get(variable[...]), dtype=np.float32)
        template, stacked, transpose = _reference_template(path)
        blocks = range(value.shape[0]) if stacked else [None]
        for i in blocks:
            block_value = value[i] if stacked else value
            if "{e}" in template:
                for e in range(block_value.shape[0]):
                    out[template.format(i=i, e=e)] = block_value[e].T if transpose else block_value[e]
            else:
                out[template.format(i=i)] = block_value.T if transpose else block_value
    return out


def save_reference_weights(model: nnx.Module, directory: Path, *, max_shard_bytes: int | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tensors = model_to_reference(model)
    save_flat(tensors, directory, WEIGHTS_STEM, max_shard_bytes=max_shard_bytes)
    config = {"_class_name": "GigaWorld0Transformer3DModel", **model.config}
    (directory / "config.json").write_text(json.dumps(config, indent=1))
