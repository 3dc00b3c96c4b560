"""Small shared layers: bias-free linear with logical axis names (and a slot for a LoRA adapter), RMSNorm,
LayerNorm without affine, exact GELU (the last three recomputed in the backward)."""

from __future__ import annotations

import functools
import itertools
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from gw_jax.parallel.logical import compute_platform

DEFAULT_KERNEL_INIT = nnx.initializers.lecun_normal()


def matmul_precision(compute_dtype):
    """The context a model computes in: float32 compute means float32 matmuls and convolutions. GPUs default
    to TF32 and TPUs to one bfloat16 pass for float32 dots (on an H200 the DiT was ~1e-3 off the reference
    and flipped MoE top-1 routes); bfloat16 compute keeps the platform's fast default."""
    return jax.default_matmul_precision("highest" if jnp.dtype(compute_dtype) == jnp.float32 else None)


@jax.custom_vjp
def _cpu_matmul(x_nk, w_km):
    return x_nk @ w_km


def _cpu_matmul_fwd(x_nk, w_km):
    return x_nk @ w_km, (x_nk, w_km)


def _cpu_matmul_bwd(residuals, g_nm):
    x_nk, w_km = residuals
    # The kernel gradient x^T g contracts the tokens, x's major axis, which XLA:CPU's YNNPACK dots refuse: it
    # ran in Eigen at about a third of their speed. A transposed copy of x (the barrier keeps XLA from folding
    # the transpose back into the dot) makes it a plain (k, n) @ (n, m) product: -5% CPU train step.
    x_kn = jax.lax.optimization_barrier(x_nk.T)
    return g_nm @ w_km.T, x_kn @ g_nm


_cpu_matmul.defvjp(_cpu_matmul_fwd, _cpu_matmul_bwd)


class Linear(nnx.Linear):
    """nnx.Linear plus an optional low-rank adapter (``gw_jax.models.lora``): y = x W + adapter(x)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lora = nnx.data(None)  # a LoRAAdapter once one is attached

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self._cpu_call(x) if compute_platform() == "cpu" else super().__call__(x)
        if self.lora is not None:
            y = y + self.lora(x, self.dtype or x.dtype).astype(y.dtype)
        return y

    def _cpu_call(self, x: jax.Array) -> jax.Array:
        # XLA:CPU: one (tokens, in) @ (in, out) matmul. With several leading axes the kernel gradient contracts
        # over all of them, and XLA:CPU transposes the output gradient into a copy and runs a slower
        # doubly-transposed dot (docs/benchmarks.md: ~8-12% of the CPU DiT train step). Not on TPU/GPU: there,
        # merging a data-sharded batch with a context-sharded length would reshard (all-to-alls) every layer.
        y = _tokens_matmul(self, x, self.kernel[...])
        return y if self.bias is None else y + self.bias[...].astype(y.dtype)


def _tokens_matmul(layer: Linear, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x (..., in) @ kernel (in, out) as one (tokens, in) @ (in, out) matmul in ``layer``'s compute dtype."""
    x_nk, kernel = layer.promote_dtype((x.reshape(-1, x.shape[-1]), kernel), dtype=layer.dtype)
    return _cpu_matmul(x_nk, kernel).reshape(*x.shape[:-1], kernel.shape[-1])


def project(x: jax.Array, linears: Sequence[Linear]) -> list[jax.Array]:
    """``[layer(x) for layer in linears]``. On XLA:CPU, plain bias-free layers (no adapter) of one input run as
    one matmul on their concatenated kernels: attention's q, k and v as one (tokens, in) @ (in, 3 inner) product,
    and one of each gradient, instead of three: -4% CPU train step (docs/benchmarks.md "Session 37"). With an adapter
    attached the layers run one by one: that program matches the fused one bit for bit (a scale-0 adapter gives the
    base output exactly), while the fused product plus adapters rounded 3 ulp away from it."""
    first = linears[0]
    plain = all(layer.lora is None and layer.bias is None and layer.dtype == first.dtype for layer in linears)
    if compute_platform() != "cpu" or len(linears) == 1 or not plain:
        return [layer(x) for layer in linears]
    y = _tokens_matmul(first, x, jnp.concatenate([layer.kernel[...] for layer in linears], axis=1))
    return jnp.split(y, list(itertools.accumulate(layer.kernel.shape[1] for layer in linears[:-1])), axis=-1)


def linear(in_features: int, out_features: int, names: Sequence[str | None], *, rngs: nnx.Rngs,
           dtype=jnp.float32, param_dtype=jnp.float32, use_bias: bool = False,
           kernel_init=DEFAULT_KERNEL_INIT) -> Linear:
    """A :class:`Linear` whose kernel (in, out) carries the logical axis ``names``."""
    return Linear(in_features, out_features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
                  kernel_init=nnx.with_partitioning(kernel_init, tuple(names)),
                  bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (names[-1],)),
                  rngs=rngs)


class RMSNorm(nnx.Module):
    """x * rsqrt(mean(x^2) + eps) * scale over the last axis, computed in float32 (torch.nn.RMSNorm)."""

    def __init__(self, features: int, *, eps: float = 1e-6, names: Sequence[str | None] = ("norm",),
                 param_dtype=jnp.float32):
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((features,), param_dtype), out_sharding=tuple(names))

    def __call__(self, x: jax.Array) -> jax.Array:
        return _rms_norm(x, self.scale[...], self.eps)


# The norms and GELU below are recomputed in the backward from their input (jax.checkpoint) instead of saving
# their float32 / element-wise intermediates: a bf16 2B block at 1,200 tokens saved 522 MiB for its backward
# against PyTorch autocast's 385 MiB, 347 MiB with these three (docs/benchmarks.md), and the 2B step fits TPU pods
# without block recomputation (docs/scale.md); the recomputed element-wise work did not show in the CPU step.
@functools.partial(jax.checkpoint, static_argnums=(2,))
def _rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + eps)
    return (y * scale.astype(jnp.float32)).astype(x.dtype)


def layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """LayerNorm over the last axis without affine parameters, computed in float32."""
    return _layer_norm(x, eps)


@functools.partial(jax.checkpoint, static_argnums=(1,))
def _layer_norm(x: jax.Array, eps: float) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)


@jax.checkpoint
def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, as torch.nn.GELU()."""
    return jax.nn.gelu(x, approximate=False)
