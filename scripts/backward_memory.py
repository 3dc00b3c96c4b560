"""What one 2B-width DiT block keeps for its backward: JAX vs diffusers' Cosmos model under torch.autocast.

Both at the released 2B width (2048 channels, 16 heads, 512 T5 tokens of width 1024), one block, one latent frame
of 60x80 (1,200 tokens), bfloat16 compute over float32 weights, no recomputation. JAX: the arrays
``jax.ad_checkpoint.print_saved_residuals`` lists for the train loss (weights excluded; their bf16 casts
included, as PyTorch's autocast cache); PyTorch: every tensor autograd saves (``saved_tensors_hooks``, storages
counted once, parameters excluded). No GPU needed: this counts what is saved, it does not allocate it.

    python scripts/backward_memory.py            # attention as on a GPU (what cuDNN flash attention saves)
    python scripts/backward_memory.py --xla      # JAX's XLA attention (saves the probabilities)

On a GPU JAX runs cuDNN flash attention, which saves q, k, v, the output and the log-sum-exp; on the CPU the
script stands in a function that saves exactly those, so the count is the GPU's. Result (2026-11-26,
docs/benchmarks.md): JAX 522 MiB before the norms and GELU were recomputed in the backward, 347 MiB after;
PyTorch 385 MiB.
"""

from __future__ import annotations

import argparse
import collections
import re

import numpy as np

from gw_jax.bench import dit_bench

SHAPE = dict(dit_bench.PRESETS["2b"], num_blocks=1, frames=1)  # 60x80 latents: 1,200 tokens
DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "i32": 4, "u32": 4, "bool": 1}


def jax_saved_mib(attention_impl: str) -> dict:
    import jax
    import jax.numpy as jnp

    from gw_jax.models.attention import register_attention, xla_attention

    @jax.custom_vjp
    def flash_like(q, k, v):  # saves what cuDNN's flash attention saves (the backward is not run here)
        return xla_attention(q, k, v)

    def flash_like_fwd(q, k, v):
        out = xla_attention(q, k, v)
        return out, (q, k, v, out, jnp.zeros(q.shape[:-1], jnp.float32))

    flash_like.defvjp(flash_like_fwd, lambda residuals, g: residuals[:3])
    register_attention("flash_like", flash_like)
    forward, params = dit_bench.jax_forward(SHAPE, "bfloat16", attention_impl=attention_impl)
    totals = collections.Counter()
    for line in dit_bench.saved_residual_lines(lambda p: jnp.mean(forward(p).astype(jnp.float32) ** 2), params):
        match = re.match(r"(\w+)\[([\d,]*)\]", line)
        if match and "from the argument" not in line:
            shape = [int(n) for n in match.group(2).split(",") if n]
            totals[match.group(1)] += int(np.prod(shape)) * DTYPE_BYTES[match.group(1)] / 2 ** 20
    return dict(totals)


def torch_saved_mib() -> dict:
    import torch

    model = dit_bench.torch_cosmos(SHAPE)
    parameters = {id(t) for t in model.parameters()}
    seen, totals = set(), collections.Counter()

    def pack(tensor):
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if id(tensor) not in parameters and key not in seen:
            seen.add(key)
            totals[str(tensor.dtype).removeprefix("torch.")] += storage.nbytes() / 2 ** 20
        return tensor

    x = torch.randn(1, 18, 1, SHAPE["height"], SHAPE["width"])
    context = torch.randn(1, SHAPE["text_len"], SHAPE["crossattn"])
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x, torch.rand(1), context, fps=16, return_dict=False)[0].float().pow(2).mean()
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xla", action="store_true", help="JAX's XLA attention instead of the flash-attention set")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args()
    rows = {"jax": jax_saved_mib("xla" if args.xla else "flash_like")}
    if not args.no_torch:
        rows["pytorch autocast"] = torch_saved_mib()
    for name, totals in rows.items():
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(totals.items()))
        print(f"{name:17s} {sum(totals.values()):7.1f} MiB saved for the backward ({parts})")


if __name__ == "__main__":
    main()
