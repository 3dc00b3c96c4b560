"""Reference (PyTorch) GigaWorld-0 DiT weights <-> gw_jax NNX state.

Reference keys look like ``blocks.block3.blocks.0.block.to_q.0.weight``; torch Linear weights are
(out, in) and become NNX kernels (in, out). gw_jax stacks the blocks on a leading axis (``block{i}``
-> index i) and stacks MoE experts (``experts.{e}``) on the next one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from flax import nnx, traverse_util
from tqdm.auto import tqdm

from gw_jax.convert.safetensors_io import SafetensorsReader, save_flat
from gw_jax.errors import UserInputError
from gw_jax.models import action_embed

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


def reference_template(path: tuple) -> tuple[str, bool, bool]:
    """(key template with {i} block / {e} expert placeholders, stacked over blocks, transpose)."""
    path = tuple(str(p) for p in path)
    if path in _TOP_LEVEL:
        return _TOP_LEVEL[path], False, path[-1] == "kernel"
    if path[0] == "action_embedder" and path[1:] in action_embed.REFERENCE_NAMES:
        return action_embed.REFERENCE_NAMES[path[1:]], False, path[-1] == "kernel"
    if path[:2] == ("blocks", "sub_blocks") and path[3:] in _IN_SUB_BLOCK:
        suffix = _IN_SUB_BLOCK[path[3:]]
        transpose = path[-1] in ("kernel", "gate", "w1", "w2")
        return f"blocks.block{{i}}.blocks.{path[2]}.{suffix}", True, transpose
    raise KeyError(f"no reference name for parameter {'.'.join(path)}")


def _flat_params(model_or_state) -> dict[tuple, nnx.Variable]:
    state = model_or_state if isinstance(model_or_state, nnx.State) else nnx.state(model_or_state, nnx.Param)
    return dict(nnx.to_flat_state(state))


def _reference_keys(path: tuple, shape: tuple) -> tuple[list[str], tuple, bool]:
    """All reference keys behind one of our parameters, the shape each has, and whether it is transposed."""
    template, stacked, transpose = reference_template(path)
    experts = "{e}" in template
    blocks = range(shape[0]) if stacked else [0]
    expert_ids = range(shape[int(stacked)]) if experts else [0]
    keys = [template.format(i=i, e=e) for i in blocks for e in expert_ids]
    return keys, tuple(reversed(shape[-2:])) if transpose else tuple(shape[-1:]), transpose


def not_in_release(path: tuple) -> bool:
    """Parameters of layers the released architecture lacks (the action MLPs): a checkpoint may lack them (they
    keep their initial values), and LoRA post-training trains them fully (there is nothing to adapt)."""
    return str(path[0]) == "action_embedder"


def check_reference_keys(params: dict[tuple, object], reader: SafetensorsReader) -> None:
    """Every parameter's keys exist with the right shapes and no key is left over, else a UserInputError
    naming the key and its file (optional parameters may be absent)."""
    used: set[str] = set()
    for path, variable in params.items():
        shape = tuple(variable.shape)
        keys, expected, _ = _reference_keys(path, shape)
        if not_in_release(path) and not any(key in reader.shapes for key in keys):
            continue
        for key in keys:
            if key not in reader.shapes:
                raise UserInputError(f"missing key {key} in the checkpoint ({sorted(set(reader.origin.values()))[0]})")
            if reader.shapes[key] != expected:
                raise UserInputError(f"{reader.origin[key]}: key {key} has shape {reader.shapes[key]}, the model "
                                     f"config expects {expected} (gw_jax {'.'.join(map(str, path))} {shape})")
        used.update(keys)
    unexpected = sorted(set(reader.shapes) - used)
    if unexpected:
        raise UserInputError(f"unexpected keys in {sorted({str(reader.origin[k]) for k in unexpected})[0]}: "
                             f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")


def reference_slice_fn(path: tuple, shape: tuple, reader: SafetensorsReader, dtype) -> Callable[[tuple], np.ndarray]:
    """``index -> array``: the slice ``index`` (a tuple of slices over our layout) of parameter ``path``, read
    from only the reference keys and rows it covers (what ``jax.make_array_from_callback`` asks for)."""
    template, stacked, transpose = reference_template(path)
    lead = int(stacked) + int("{e}" in template)
    if not_in_release(path) and template not in reader.shapes:
        initial = action_embed.initial_value(path, shape, dtype)
        return lambda index: initial[tuple(index)]

    def read(index: tuple) -> np.ndarray:
        index = tuple(index) + (slice(None),) * (len(shape) - len(index))
        ranges = [range(n)[s] for s, n in zip(index, shape, strict=True)]
        inner = tuple(slice(r.start, r.stop) for r in ranges[lead:])
        ref_index = tuple(reversed(inner)) if transpose else inner

        def one(**ids) -> np.ndarray:
            value = reader.read(template.format(**ids), ref_index)
            return (value.T if transpose else value).astype(dtype)

        if lead == 0:
            return one()
        if lead == 1:
            return np.stack([one(i=i) for i in ranges[0]])
        return np.stack([np.stack([one(i=i, e=e) for e in ranges[1]]) for i in ranges[0]])

    return read


def load_reference_arrays(params: nnx.State, directory: Path, shardings=None, *,
                          verify: bool = True, whole: nnx.State | None = None) -> dict[tuple, jax.Array]:
    """{path: jax.Array} for every parameter of ``params`` (an abstract Param state), each placed with its
    sharding (a matching nested state/dict of shardings; None: the default device) straight from the files,
    one device shard at a time: no host copy of the whole checkpoint, nor of a whole parameter. ``verify``:
    check the files against the folder's SHA256SUMS first, when it has one. ``whole``: the model's whole
    abstract Param state when ``params`` is part of it (the keys are checked against the whole)."""
    reader = SafetensorsReader.open(directory, WEIGHTS_STEM, verify=verify)
    flat = _flat_params(params)
    check_reference_keys(flat if whole is None else _flat_params(whole), reader)
    flat_shardings = dict(nnx.to_flat_state(shardings)) if isinstance(shardings, nnx.State) else (
        {tuple(k): v for k, v in traverse_util.flatten_dict(shardings).items()} if shardings is not None else {})
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    arrays = {}
    for path, variable in tqdm(flat.items(), desc="load weights", leave=False, disable=len(flat) < 50):
        shape, dtype = tuple(variable.shape), variable.dtype
        sharding = flat_shardings.get(path, default)
        sharding = getattr(sharding, "value", sharding)
        arrays[path] = jax.make_array_from_callback(shape, sharding, reference_slice_fn(path, shape, reader, dtype))
    return arrays


def load_reference_weights(model: nnx.Module, directory: Path, *, verify_checksums: bool = True) -> None:
    """Fills ``model`` (possibly abstract, from nnx.eval_shape) with the checkpoint's weights, in place."""
    state = nnx.state(model, nnx.Param)
    arrays = load_reference_arrays(state, directory, verify=verify_checksums)
    flat = nnx.to_flat_state(state)
    nnx.update(model, nnx.from_flat_state([(path, var.replace(arrays[path])) for path, var in flat]))


def model_to_reference(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's parameters under reference names and layouts (float32 numpy)."""
    out = {}
    for path, variable in _flat_params(model).items():
        value = np.asarray(jax.device_get(variable[...]), dtype=np.float32)
        template, stacked, transpose = reference_template(path)
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
