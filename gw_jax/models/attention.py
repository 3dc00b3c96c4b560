"""One attention entry point with interchangeable kernels, chosen by name.

All kernels take q (B, Lq, H, D), k and v (B, Lk, H, D) and return (B, Lq, H, D), softmax scale
1/sqrt(D), no mask (GigaWorld-0 attends to every token; padded text tokens are zero vectors).
- ``xla``: ``jax.nn.dot_product_attention`` (XLA path) in float32 (every platform; the parity reference; the
  VAE and the text encoders call the same function);
- ``cudnn``: ``jax.nn.dot_product_attention(..., implementation="cudnn")`` (flash attention, GPU);
- ``splash``: Pallas splash attention (TPU);
- ``context_ring`` / ``context_allgather``: context-parallel attention over the ``context`` mesh axis
  (gw_jax.parallel.context_attention);
- ``blocksparse``: ``xla`` here; it selects the block-sparse kernel for NATTEN (sparse) DiT blocks.
New kernels register with :func:`register_attention` without touching the model.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gw_jax.parallel.context_attention import context_parallel_attention

AttentionFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
_KERNELS: dict[str, AttentionFn] = {}


def register_attention(name: str, fn: AttentionFn) -> None:
    _KERNELS[name] = fn


def available_attention() -> list[str]:
    return sorted(_KERNELS)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, impl: str = "xla") -> jax.Array:
    try:
        kernel = _KERNELS[impl]
    except KeyError:
        raise ValueError(f"unknown attention impl {impl!r}; available: {available_attention()}") from None
    return kernel(q, k, v)


def xla_attention(q, k, v):
    """The parity reference: ``jax.nn.dot_product_attention``'s XLA path with everything in float32."""
    f32 = jnp.float32
    return jax.nn.dot_product_attention(q.astype(f32), k.astype(f32), v.astype(f32),
                                        implementation="xla").astype(q.dtype)


def cudnn_attention(q, k, v):
    return jax.nn.dot_product_attention(q, k, v, implementation="cudnn")


def splash_attention(q, k, v):
    """Pallas splash attention (TPU only); blocks of 512, 384, 256 or 128 tokens, whichever divides the
    sequence first (19,200 tokens of 61x480x640: 384), or the whole sequence when none does."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    b, lq, h, d = q.shape
    lk = k.shape[1]
    block = lambda n: next((size for size in (512, 384, 256, 128) if n % size == 0), n)  # noqa: E731
    block_q, block_kv = block(lq), block(lk)
    mask = sm.MultiHeadMask([sm.FullMask((lq, lk)) for _ in range(h)])
    sizes = sk.BlockSizes(block_q=block_q, block_kv=block_kv, block_kv_compute=block_kv,
                          block_q_dkv=block_q, block_kv_dkv=block_kv, block_kv_dkv_compute=block_kv,
                          block_q_dq=block_q, block_kv_dq=block_kv)
    kernel = sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, block_sizes=sizes)
    to_bhld = lambda x: jnp.einsum("blhd->bhld", x)
    out = jax.vmap(kernel)(to_bhld(q * d ** -0.5), to_bhld(k), to_bhld(v))
    return jnp.einsum("bhld->blhd", out)


def _context_ring(q, k, v):
    return context_parallel_attention(q, k, v, schedule="ring", fallback=xla_attention)


def _context_allgather(q, k, v):
    return context_parallel_attention(q, k, v, schedule="allgather", fallback=xla_attention)


register_attention("xla", xla_attention)
register_attention("cudnn", cudnn_attention)
register_attention("splash", splash_attention)
register_attention("context_ring", _context_ring)
register_attention("context_allgather", _context_allgather)
# for models with NATTEN blocks: dense blocks run ``xla``, sparse ones the block-sparse kernel
# (gw_jax.models.neighborhood_attention)
register_attention("blocksparse", xla_attention)
