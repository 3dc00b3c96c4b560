"""One attention entry point with interchangeable kernels, chosen by name.

All kernels take q (B, Lq, H, D), k and v (B, Lk, H, D) and return (B, Lq, H, D), softmax scale
1/sqrt(D), no mask (GigaWorld-0 attends to every token; padded text tokens are zero vectors).
- ``xla``: softmax attention as two einsums in float32 (every platform; the parity reference);
- ``cudnn``: ``jax.nn.dot_product_attention(..., implementation="cudnn")`` (flash attention, GPU);
- ``splash``: Pallas splash attention (TPU);
- ``auto``: ``splash`` on TPU, ``cudnn`` on an NVIDIA GPU (bf16/f16 inputs), ``xla`` otherwise (the 2B
  configs' default);
- ``context_ring`` / ``context_allgather``: context-parallel attention over the ``context`` mesh axis
  (gw_jax.parallel.context_attention);
- ``blocksparse``: ``xla`` here; it selects the block-sparse kernel for NATTEN (sparse) DiT blocks.
A boolean ``mask`` (broadcastable to (B, H, Lq, Lk), True = attend; the DiT's ``temporal_causal`` option) is taken
by ``xla`` only (XLA's SPMD partitioner shards it with q, k, v); the other kernels refuse it rather than ignore it.
``cudnn`` and ``splash`` run under ``shard_map`` on the active mesh (batch over data/fsdp, heads over tensor,
queries over context with K/V all-gathered: gw_jax.parallel.context_attention). New kernels register with
:func:`register_attention` without touching the model.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from gw_jax.parallel.context_attention import context_parallel_attention, mesh_sharded_attention
from gw_jax.parallel.logical import compute_platform

AttentionFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
_KERNELS: dict[str, AttentionFn] = {}


def register_attention(name: str, fn: AttentionFn) -> None:
    _KERNELS[name] = fn


def available_attention() -> list[str]:
    return sorted(_KERNELS)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, impl: str = "xla", mask: jax.Array | None = None
              ) -> jax.Array:
    try:
        kernel = _KERNELS[impl]
    except KeyError:
        raise ValueError(f"unknown attention impl {impl!r}; available: {available_attention()}") from None
    if mask is None:
        return kernel(q, k, v)
    if impl not in MASKED_IMPLS:
        raise ValueError(f"attention impl {impl!r} takes no mask (temporal_causal): use one of {MASKED_IMPLS}")
    return xla_attention(q, k, v, mask=mask)


# kernels that take a mask (the others would drop it: refused in ``attention``)
MASKED_IMPLS = ("xla",)


def xla_attention(q, k, v, mask=None):
    """The parity reference: softmax(q k^T / sqrt(D)) v with everything in float32, as two einsums (what
    ``jax.nn.dot_product_attention``'s XLA path computes; written out, its gradient is ~12% cheaper on
    XLA:CPU in the DiT's train step, docs/benchmarks.md). ``mask`` (bool, broadcastable to (B, H, Lq, Lk)):
    False logits get the float32 minimum, as ``jax.nn.dot_product_attention`` does."""
    f32 = jnp.float32
    logits_bhqk = jnp.einsum("bqhd,bkhd->bhqk", q.astype(f32) * q.shape[-1] ** -0.5, k.astype(f32))
    if mask is not None:
        logits_bhqk = jnp.where(mask, logits_bhqk, jnp.finfo(f32).min)
    out_bqhd = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits_bhqk, axis=-1), v.astype(f32))
    return out_bqhd.astype(q.dtype)


def frame_causal_mask(frames: int, length: int) -> jax.Array:
    """(1, 1, L, L) bool: token i (of ``length`` = frames x tokens-per-frame, frame-major) attends to token j when
    j's frame is not after i's (block-causal over frames, full within a frame)."""
    frame = jnp.arange(length) // (length // frames)
    return (frame[:, None] >= frame[None, :])[None, None]


def cudnn_attention(q, k, v):
    """cuDNN flash attention; odd sequence lengths go to ``xla`` instead: JAX's cuDNN path refuses them in the
    gradient ("Unsupported sequence length Q 1200, KV 7", jax 0.11.2 on an H100), and padding keys would
    change the softmax without a mask. Odd lengths are rare (a text prompt of odd length, or an odd token
    grid); ``xla``'s logits for a short text are small."""
    if q.shape[1] % 2 or k.shape[1] % 2:
        return xla_attention(q, k, v)
    return jax.nn.dot_product_attention(q, k, v, implementation="cudnn")


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _pad_length(x_bhld, length: int):
    return jnp.pad(x_bhld, ((0, 0), (0, 0), (0, length - x_bhld.shape[2]), (0, 0)))


def splash_attention(q, k, v, *, interpret: bool = False):
    """Pallas splash attention on one device (TPU; ``interpret=True`` runs the same kernel on CPU, slowly).

    Splash tiles must be multiples of 128 tokens: queries are zero-padded to a multiple of 128 (their rows
    are dropped) and keys/values too, with segment ids that hide the padded keys. Tiles of 512, 384, 256 or
    128 tokens, the largest that divides (19,200 tokens: 384; a context shard of 4,800: padded to 4,864, 256).
    """
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    _, lq, h, d = q.shape
    lk = k.shape[1]
    lq_pad, lk_pad = _round_up(lq, 128), _round_up(lk, 128)
    block = lambda n: next(size for size in (512, 384, 256, 128) if n % size == 0)  # noqa: E731
    block_q, block_kv = block(lq_pad), block(lk_pad)
    mask = sm.MultiHeadMask([sm.FullMask((lq_pad, lk_pad)) for _ in range(h)])
    sizes = sk.BlockSizes(block_q=block_q, block_kv=block_kv, block_kv_compute=block_kv,
                          block_q_dkv=block_q, block_kv_dkv=block_kv, block_kv_dkv_compute=block_kv,
                          block_q_dq=block_q, block_kv_dq=block_kv)
    kernel = sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, block_sizes=sizes, interpret=interpret)
    segments = None
    if lk_pad != lk:  # padded keys get their own segment, which no query belongs to
        segments = sk.SegmentIds(q=jnp.zeros((lq_pad,), jnp.int32),
                                 kv=(jnp.arange(lk_pad) >= lk).astype(jnp.int32))
    to_bhld = lambda x: jnp.einsum("blhd->bhld", x)  # noqa: E731
    q_bhld = _pad_length(to_bhld(q * d ** -0.5), lq_pad)
    k_bhld, v_bhld = _pad_length(to_bhld(k), lk_pad), _pad_length(to_bhld(v), lk_pad)
    out = jax.vmap(lambda a, b, c: kernel(a, b, c, segment_ids=segments))(q_bhld, k_bhld, v_bhld)
    return jnp.einsum("bhld->blhd", out[:, :, :lq])


def _sharded(local_fn: AttentionFn) -> AttentionFn:
    """``local_fn`` under ``shard_map`` on the active mesh (batch, heads, context; K/V all-gathered)."""
    return functools.partial(mesh_sharded_attention, local_fn=local_fn)


# attention_impl="auto": the fast exact kernel of the platform the mesh (or the default backend) runs on
AUTO_KERNELS = {"tpu": "splash", "gpu": "cudnn", "cuda": "cudnn"}


def resolve_auto(dtype=jnp.bfloat16) -> str:
    """The kernel ``auto`` picks for inputs of ``dtype``: ``splash`` on TPU, ``cudnn`` on an NVIDIA GPU (it
    takes bf16/f16 only), ``xla`` elsewhere. The platform is the active mesh's (an ahead-of-time TPU
    compile on a CPU host sees TPU devices), else the default backend's."""
    impl = AUTO_KERNELS.get(compute_platform(), "xla")
    return "xla" if impl == "cudnn" and jnp.dtype(dtype) not in (jnp.bfloat16, jnp.float16) else impl


def _auto(q, k, v):
    return attention(q, k, v, impl=resolve_auto(q.dtype))


def _context_ring(q, k, v):
    return context_parallel_attention(q, k, v, schedule="ring", fallback=xla_attention)


def _context_allgather(q, k, v):
    return context_parallel_attention(q, k, v, schedule="allgather", fallback=xla_attention)


register_attention("xla", xla_attention)
register_attention("cudnn", _sharded(cudnn_attention))
register_attention("splash", _sharded(splash_attention))
register_attention("auto", _auto)
register_attention("context_ring", _context_ring)
register_attention("context_allgather", _context_allgather)
# for models with NATTEN blocks: dense blocks run ``xla``, sparse ones the block-sparse kernel
# (gw_jax.models.neighborhood_attention)
register_attention("blocksparse", xla_attention)
