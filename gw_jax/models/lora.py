"""LoRA adapters on the DiT's linears, in the release's (peft) format.

    model = GigaWorld0DiT.from_pretrained("GigaWorld-0-Video-GR1-2b/transformer")
    model.load_lora({"robot": ("robot_lora", 0.8), "style": "style_lora"})   # the reference's load_lora
    add_lora(model, rank=64, alpha=64, rngs=nnx.Rngs(0))    # trainable adapters, B = 0 (output unchanged)
    save_lora(model, "out")        # out/diffusion_pytorch_model.safetensors with peft keys
    fuse_lora(model)               # W += A diag(scale) B, adapters removed

An adapter lives next to the kernel it adapts (``Linear.lora``) and carries the kernel's logical axes: on the
stacked blocks ``a`` (layers, in, r), ``b`` (layers, r, out) and a per-rank ``scale`` (layers, r), so
``nnx.scan`` slices it with its block and FSDP/tensor sharding apply to it as to the kernel. Several adapters
on one linear are one adapter of the summed rank (sum_i s_i A_i B_i = [A_1 .. A_n] diag(s) [B_1; ..; B_n]);
blocks whose ranks differ are zero-padded to the largest (exact). Adapter factors are ``LoRAParam``
variables, not ``nnx.Param``: training selects them by type and leaves the base weights frozen.

The release's meaning (``GigaWorld0Transformer3DModel.load_lora``: diffusers' ``get_peft_kwargs`` + peft):
a saved adapter holds no alpha, so loading takes lora_alpha = the rank of its first ``lora_B`` key and
scaling = alpha / r of each module (1 for uniform ranks), times the caller's scale; each call activates only
the adapters it loads (unfused ones from an earlier call are dropped) and ``fuse`` merges them into the base
weights. Exports fold our alpha / r into B, so the reference reads them back unchanged.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from gw_jax.convert.dit_weights import WEIGHTS_STEM, reference_template
from gw_jax.convert.safetensors_io import SafetensorsReader, save_flat
from gw_jax.errors import UserInputError
from gw_jax.models.layers import Linear

# The release's LoraConfig(target_modules=...): q, k, v and output projections of self- and cross-attention.
DEFAULT_TARGETS = ("to_q.0", "to_k.0", "to_v.0", "to_out.0")
_A, _B = ".lora_A.weight", ".lora_B.weight"


class LoRAParam(nnx.Variable):
    """A trainable adapter factor (kept apart from ``nnx.Param`` so the base can be frozen by type)."""


class LoRAScale(nnx.Variable):
    """alpha / r (times the user's scale) per rank entry; not trained."""


class LoRAAdapter(nnx.Module):
    """delta(x) = ((x a) * scale) b, with a (.., in, r), b (.., r, out), scale (.., r)."""

    def __init__(self, a, b, scale, kernel_names: Sequence[str | None]):
        lead, in_name, out_name = tuple(kernel_names[:-2]), kernel_names[-2], kernel_names[-1]
        self.a = LoRAParam(a, out_sharding=lead + (in_name, "lora_rank"))
        self.b = LoRAParam(b, out_sharding=lead + ("lora_rank", out_name))
        self.scale = LoRAScale(scale, out_sharding=lead + ("lora_rank",))

    def __call__(self, x: jax.Array, dtype) -> jax.Array:
        h = jnp.einsum("...i,ir->...r", x.astype(dtype), self.a[...].astype(dtype))
        return jnp.einsum("...r,ro->...o", h * self.scale[...].astype(dtype), self.b[...].astype(dtype))


# --------------------------------------------------------------------------------------------------
def _kernel_names(linear: Linear) -> tuple:
    names = linear.kernel.get_metadata().get("out_sharding") or (None,) * linear.kernel.ndim
    return tuple(names)


def adaptable_linears(model: nnx.Module) -> dict[tuple, tuple[Linear, str, bool]]:
    """Every linear with a reference name: path -> (linear, reference module name template, stacked)."""
    found = {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, Linear):
            try:
                template, stacked, _ = reference_template(tuple(path) + ("kernel",))
            except KeyError:
                continue
            found[tuple(path)] = (node, template[: -len(".weight")], stacked)
    return found


def _matches(module: str, targets: Sequence[str]) -> bool:
    """peft's target_modules rule: the module name is a target or ends with '.' + target."""
    return any(module == t or module.endswith("." + t) for t in targets)


def target_linears(model: nnx.Module, targets: Sequence[str] = DEFAULT_TARGETS):
    chosen = {p: v for p, v in adaptable_linears(model).items() if _matches(v[1].format(i=0), targets)}
    if not chosen:
        raise UserInputError(f"lora_targets {list(targets)}: no linear of the model matches (reference module "
                             "names look like blocks.block0.blocks.0.block.to_q.0)")
    return chosen


def _layers(linear: Linear, stacked: bool) -> int:
    return linear.kernel.shape[0] if stacked else 1


def _attach(linear: Linear, stacked: bool, a: np.ndarray, b: np.ndarray, scale: np.ndarray) -> None:
    """Sets the adapter from (L, in, r), (L, r, out), (L, r) arrays (L dropped when not stacked)."""
    if not stacked:
        a, b, scale = a[0], b[0], scale[0]
    dtype = linear.param_dtype
    linear.lora = LoRAAdapter(jnp.asarray(a, dtype), jnp.asarray(b, dtype), jnp.asarray(scale, jnp.float32),
                              _kernel_names(linear))


def remove_lora(model: nnx.Module) -> None:
    for linear, _, _ in adaptable_linears(model).values():
        linear.lora = nnx.data(None)


def add_lora(model: nnx.Module, *, rank: int, alpha: float | None = None,
             targets: Sequence[str] = DEFAULT_TARGETS, rngs: nnx.Rngs) -> list[str]:
    """Fresh trainable adapters as peft's ``init_lora_weights=True``: A ~ kaiming-uniform(a=sqrt 5), i.e.
    U(+-1/sqrt(in)), B = 0, scaling alpha / rank (alpha default: rank). Returns the adapted module names."""
    if rank < 1:
        raise UserInputError(f"lora_rank must be at least 1, got {rank}")
    alpha = float(rank if alpha is None else alpha)
    names = []
    for linear, module, _ in target_linears(model, targets).values():
        n_in, n_out = linear.kernel.shape[-2:]
        lead = linear.kernel.shape[:-2]
        bound = 1.0 / math.sqrt(n_in)
        a = jax.random.uniform(rngs.params(), lead + (n_in, rank), jnp.float32, -bound, bound)
        linear.lora = LoRAAdapter(a.astype(linear.param_dtype), jnp.zeros(lead + (rank, n_out), linear.param_dtype),
                                  jnp.full(lead + (rank,), alpha / rank, jnp.float32), _kernel_names(linear))
        names.append(module)
    return names


# --------------------------------------------------------------------------------------------------
def _adapter_file(path: str | Path) -> SafetensorsReader:
    path = Path(path)
    if path.is_file():
        return SafetensorsReader([path])
    if path.is_dir():
        return SafetensorsReader.open(path, WEIGHTS_STEM)
    raise UserInputError(f"LoRA {path}: no such file or folder")


def _read_adapter(path, linears: dict, scale: float) -> dict[tuple, dict[int, tuple]]:
    """{linear path: {block: (a (in, r), b (r, out), scale * alpha / r)}} of one saved adapter."""
    reader = _adapter_file(path)
    where = reader.files[0] if len(reader.files) == 1 else path
    modules = {}
    for lpath, (linear, template, stacked) in linears.items():
        for i in range(_layers(linear, stacked)):
            modules[template.format(i=i)] = (lpath, i)
    keys = reader.keys()
    odd = [k for k in keys if not (k.endswith(_A) or k.endswith(_B))]
    if odd:
        raise UserInputError(f"{where}: not a LoRA adapter of the release's format (keys {odd[:3]} are neither "
                             "*.lora_A.weight nor *.lora_B.weight)")
    unknown = sorted({k[: -len(_A)] for k in keys} - set(modules))
    if unknown:
        raise UserInputError(f"{where}: LoRA keys match no module of the model: {unknown[:4]}"
                             f"{' ...' if len(unknown) > 4 else ''}")
    b_keys = [k for k in keys if k.endswith(_B)]
    if not b_keys:
        raise UserInputError(f"{where}: no lora_B weights")
    alpha = reader.shapes[b_keys[0]][1]  # the reference: lora_alpha = the first module's rank
    out: dict[tuple, dict[int, tuple]] = {}
    for module in sorted({k[: -len(_A)] for k in keys}):
        a_key, b_key = module + _A, module + _B
        if a_key not in reader.shapes or b_key not in reader.shapes:
            raise UserInputError(f"{where}: {module} has only one of lora_A / lora_B")
        lpath, i = modules[module]
        linear = linears[lpath][0]
        n_in, n_out = linear.kernel.shape[-2:]
        (r_a, a_in), (b_out, r_b) = reader.shapes[a_key], reader.shapes[b_key]
        if r_a != r_b:
            raise UserInputError(f"{where}: LoRA rank mismatch at {module}: lora_A has rank {r_a}, lora_B {r_b}")
        if (a_in, b_out) != (n_in, n_out):
            raise UserInputError(f"{where}: {module}: the adapter maps {a_in} -> {b_out} features, the model's "
                                 f"linear {n_in} -> {n_out}")
        a = reader.read(a_key).astype(np.float32).T
        b = reader.read(b_key).astype(np.float32).T
        out.setdefault(lpath, {})[i] = (a, b, scale * alpha / r_a)
    return out


def _normalise_spec(spec) -> dict[str, tuple[str, float]]:
    if isinstance(spec, (str, Path)):
        spec = {"default": spec}
    if not isinstance(spec, Mapping) or not spec:
        raise UserInputError("load_lora: give {name: path} or {name: (path, scale)}")
    out = {}
    for name, value in spec.items():
        if isinstance(value, (str, Path)):
            out[name] = (value, 1.0)
        else:
            try:
                path, scale = value
                out[name] = (path, float(scale))
            except (TypeError, ValueError) as e:
                raise UserInputError(f"load_lora {name!r}: expected a path or (path, scale), got {value!r}") from e
    return out


def load_lora(model: nnx.Module, spec, fuse: bool = False) -> None:
    """The reference's ``load_lora({name: path or (path, scale)}, fuse)``; ``path`` is a folder holding
    diffusion_pytorch_model.safetensors or a .safetensors file with peft keys."""
    linears = adaptable_linears(model)
    remove_lora(model)  # peft's set_adapters: only this call's adapters are active
    per_linear: dict[tuple, list[dict[int, tuple]]] = {}
    for path, scale in _normalise_spec(spec).values():
        for lpath, blocks in _read_adapter(path, linears, scale).items():
            per_linear.setdefault(lpath, []).append(blocks)
    for lpath, adapters in per_linear.items():
        linear, _, stacked = linears[lpath]
        layers, (n_in, n_out) = _layers(linear, stacked), linear.kernel.shape[-2:]
        ranks = [max(a.shape[1] for a, _, _ in blocks.values()) for blocks in adapters]
        a = np.zeros((layers, n_in, sum(ranks)), np.float32)
        b = np.zeros((layers, sum(ranks), n_out), np.float32)
        s = np.zeros((layers, sum(ranks)), np.float32)
        offset = 0
        for blocks, rank in zip(adapters, ranks, strict=True):
            for i, (a_i, b_i, s_i) in blocks.items():
                r = a_i.shape[1]
                a[i, :, offset:offset + r], b[i, offset:offset + r], s[i, offset:offset + r] = a_i, b_i, s_i
            offset += rank
        _attach(linear, stacked, a, b, s)
    if fuse:
        fuse_lora(model)


def fused_delta(a_ir, scale_r, b_ro) -> jax.Array:
    """a diag(scale) b in float32 at full precision, whatever the platform's default: a GPU's TF32 default moved
    the fused model 1.4e-4 off the reference (H100). Leading (layer) axes broadcast."""
    return jnp.einsum("...ir,...r,...ro->...io", a_ir.astype(jnp.float32), scale_r.astype(jnp.float32),
                      b_ro.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)


def fuse_lora(model: nnx.Module) -> None:
    """Merges every active adapter into its kernel (W += a diag(scale) b) and removes it."""
    for linear, _, _ in adaptable_linears(model).values():
        if linear.lora is None:
            continue
        adapter = linear.lora
        delta = fused_delta(adapter.a[...], adapter.scale[...], adapter.b[...])
        linear.kernel[...] = (linear.kernel[...].astype(jnp.float32) + delta).astype(linear.kernel.dtype)
        linear.lora = nnx.data(None)


def lora_state_dict(model: nnx.Module) -> dict[str, np.ndarray]:
    """The active adapters as the release's peft state dict (float32 numpy); scale folded into lora_B."""
    tensors = {}
    for linear, template, stacked in adaptable_linears(model).values():
        if linear.lora is None:
            continue
        a, b, s = (np.asarray(jax.device_get(v[...]), np.float32)
                   for v in (linear.lora.a, linear.lora.b, linear.lora.scale))
        if not stacked:
            a, b, s = a[None], b[None], s[None]
        for i in range(a.shape[0]):
            module = template.format(i=i)
            tensors[module + _A] = np.ascontiguousarray(a[i].T)
            tensors[module + _B] = np.ascontiguousarray((b[i] * s[i][:, None]).T)
    if not tensors:
        raise UserInputError("the model has no LoRA adapters to save")
    return tensors


def save_lora(model: nnx.Module, directory: str | Path) -> Path:
    """Writes ``directory/diffusion_pytorch_model.safetensors`` (what the release's load_lora reads)."""
    return save_flat(lora_state_dict(model), directory, WEIGHTS_STEM)[0]
