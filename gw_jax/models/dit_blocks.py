"""Building blocks of the GigaWorld-0 DiT: attention, (MoE) MLP, adaLN-LoRA modulated sub-blocks.

Token layout inside a block: x (B, T, S, D) with S = H*W tokens per latent frame, so per-frame
modulation (B, T, 1, D) broadcasts; attention sees (B, T*S, D).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from gw_jax.models.attention import attention, frame_causal_mask
from gw_jax.models.neighborhood_attention import scheduled_attention
from gw_jax.models.layers import RMSNorm, gelu, layer_norm, linear, project
from gw_jax.models.rope import apply_rope
from gw_jax.parallel.logical import axis_shards, constrain

SELF_ATTENTION = ("fa", "full_attn")
CROSS_ATTENTION = ("ca", "cross_attn")
MLP = ("mlp", "ff")


def constrain_btsd(x_btsd: jax.Array) -> jax.Array:
    """Shards (B, T, S, D) activations over ``context`` by frames when the frames divide evenly: the same
    split as the sub-blocks' flattened frame-major (t s) tokens, so the residual stream and the tokens need
    no all-to-all between them (split by S, the 2B train step on v5p-64 ran 1,292 all-to-alls; docs/scale.md).
    Otherwise by the tokens within each frame."""
    if x_btsd.shape[1] % axis_shards("act_length") == 0:
        return constrain(x_btsd, ("act_batch", "act_length", None, "act_embed"))
    return constrain(x_btsd, ("act_batch", None, "act_length", "act_embed"))


def replicate_features(modulation_btd: jax.Array) -> jax.Array:
    """Gathers the (small) adaLN modulation over ``tensor`` before it is split into shift/scale/gate.

    Left sharded like its ``modulation`` weights, XLA's SPMD partitioner (jax/jaxlib 0.10.2) miscompiles
    ``gate * mlp(x)`` on a data x fsdp x tensor mesh: resharding the batch for the (tensor, fsdp) second
    matmul, it swaps batch shards (data 0, fsdp 1) and (data 1, fsdp 0) with a collective-permute and
    multiplies them by each other's gate (plain-JAX repro: tests/test_xla_spmd_repro.py).
    """
    return constrain(modulation_btd, ("act_batch", None, None))


class Attention(nnx.Module):
    """Bias-free multi-head attention with RMSNorm on q and k per head; RoPE on self-attention only.
    ``temporal_causal`` (self-attention): a token sees the tokens of its own and earlier latent frames only."""

    def __init__(self, dim: int, context_dim: int | None, num_heads: int, *, attention_impl: str,
                 rngs: nnx.Rngs, dtype, param_dtype, natten_options: tuple = (), temporal_causal: bool = False):
        self.is_self = context_dim is None
        self.temporal_causal = temporal_causal and self.is_self
        self.natten_options = tuple(natten_options) if self.is_self else ()  # distinct NATTEN configs
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        inner = self.num_heads * self.head_dim
        kv_in = dim if self.is_self else context_dim
        kv_names = ("embed", "heads") if self.is_self else ("text_embed", "heads")
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.to_q = linear(dim, inner, ("embed", "heads"), **kw)
        self.to_k = linear(kv_in, inner, kv_names, **kw)
        self.to_v = linear(kv_in, inner, kv_names, **kw)
        self.to_out = linear(inner, dim, ("heads", "embed"), **kw)
        self.q_norm = RMSNorm(self.head_dim, names=("head_dim",), param_dtype=param_dtype)
        self.k_norm = RMSNorm(self.head_dim, names=("head_dim",), param_dtype=param_dtype)
        # cross-attention keys are a handful of text tokens: never context-parallel
        self.attention_impl = attention_impl if self.is_self or not attention_impl.startswith("context") else "xla"

    def __call__(self, x_bld, context_bmc=None, rope_angles=None, sparse=None, frames: int = 1):
        split = lambda t: rearrange(t, "b l (h d) -> b l h d", h=self.num_heads)
        if self.is_self:
            q, k, v = map(split, project(x_bld, [self.to_q, self.to_k, self.to_v]))
        else:
            q, (k, v) = split(self.to_q(x_bld)), map(split, project(context_bmc, [self.to_k, self.to_v]))
        q, k = self.q_norm(q), self.k_norm(k)
        if self.is_self and rope_angles is not None:
            q, k = apply_rope(q, rope_angles), apply_rope(k, rope_angles)
        q = constrain(q, ("act_batch", "act_length", "act_heads", None))
        if self.natten_options and sparse is not None:  # sparse = (code, latent grid) of this block
            dense = lambda q, k, v: attention(q, k, v, impl=self.attention_impl)
            out = scheduled_attention(q, k, v, code=sparse[0], grid=sparse[1], options=self.natten_options,
                                      impl=self.attention_impl, dense=dense)
        else:
            mask = frame_causal_mask(frames, q.shape[1]) if self.temporal_causal else None
            out = attention(q, k, v, impl=self.attention_impl, mask=mask)
        return self.to_out(rearrange(out, "b l h d -> b l (h d)"))


class FeedForward(nnx.Module):
    def __init__(self, dim: int, hidden: int, *, rngs, dtype, param_dtype):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.layer1 = linear(dim, hidden, ("embed", "mlp"), **kw)
        self.layer2 = linear(hidden, dim, ("mlp", "embed"), **kw)

    def __call__(self, x):
        h = gelu(self.layer1(x))
        h = constrain(h, ("act_batch", "act_length", "act_mlp"))
        return self.layer2(h)


class MoEFeedForward(nnx.Module):
    """Top-k softmax-gated mixture of experts (the reference's routed path, eval-mode routing).

    The gate picks ``num_activated_experts`` of ``num_routed_experts`` per token with softmax scores
    (not renormalised when k > 1, renormalised when k == 1, as the reference). Experts are stacked
    (E, ...) and evaluated densely with an einsum, weighted by the (mostly zero) routing weights: exact,
    simple to shard over an ``experts`` axis, and E/k times the FLOPs of a dispatching kernel.
    ``shared_experts=True`` adds one always-on expert to the routed output (built correctly here; the
    reference's shared path does not run).
    """

    def __init__(self, dim: int, hidden: int, *, num_routed_experts: int = 4, num_activated_experts: int = 2,
                 shared_experts: bool = False, rngs, dtype, param_dtype):
        self.num_experts, self.top_k = num_routed_experts, num_activated_experts
        self.dtype = dtype
        init = nnx.initializers.lecun_normal(in_axis=-2, out_axis=-1, batch_axis=(0,))
        gate_init = nnx.initializers.normal(dim ** -0.5)
        self.gate = nnx.Param(gate_init(rngs.params(), (dim, num_routed_experts), param_dtype),
                              out_sharding=("embed", None))
        self.w1 = nnx.Param(init(rngs.params(), (num_routed_experts, dim, hidden), param_dtype),
                            out_sharding=("experts", "embed", "mlp"))
        self.w2 = nnx.Param(init(rngs.params(), (num_routed_experts, hidden, dim), param_dtype),
                            out_sharding=("experts", "mlp", "embed"))
        self.shared = (FeedForward(dim, hidden, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
                       if shared_experts else None)

    def routing_weights(self, x_bld):
        """(B, L, E) weights: softmax scores on the top-k experts, zero elsewhere."""
        logits = jnp.einsum("bld,de->ble", x_bld.astype(jnp.float32), self.gate[...].astype(jnp.float32))
        scores = jax.nn.softmax(logits, axis=-1)
        top_scores, top_index = jax.lax.top_k(scores, self.top_k)
        if self.top_k == 1:
            top_scores = top_scores / (top_scores.sum(-1, keepdims=True) + 1e-20)
        one_hot = jax.nn.one_hot(top_index, self.num_experts, dtype=jnp.float32)  # (B, L, k, E)
        return jnp.einsum("blk,blke->ble", top_scores, one_hot)

    def __call__(self, x_bld):
        weights = self.routing_weights(x_bld)
        x = x_bld.astype(self.dtype)
        h = gelu(jnp.einsum("bld,edf->blef", x, self.w1[...].astype(self.dtype)))
        y = jnp.einsum("blef,efd->bled", h, self.w2[...].astype(self.dtype))
        out = jnp.einsum("bled,ble->bld", y.astype(jnp.float32), weights).astype(x_bld.dtype)
        if self.shared is not None:
            out = out + self.shared(x_bld)
        return out


class ModulatedSubBlock(nnx.Module):
    """LayerNorm -> x*(1+scale)+shift -> f -> x + gate*f, with (shift, scale, gate) from adaLN-LoRA."""

    def __init__(self, kind: str, dim: int, context_dim: int, num_heads: int, mlp_ratio: float,
                 adaln_lora_dim: int, moe_parameters: dict | None, *, attention_impl: str, rngs, dtype, param_dtype,
                 natten_options: tuple = (), temporal_causal: bool = False):
        kind = kind.lower()
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.kind = kind
        if kind in SELF_ATTENTION:
            self.block = Attention(dim, None, num_heads, attention_impl=attention_impl,
                                   natten_options=natten_options, temporal_causal=temporal_causal, **kw)
        elif kind in CROSS_ATTENTION:
            self.block = Attention(dim, context_dim, num_heads, attention_impl=attention_impl, **kw)
        elif kind in MLP:
            hidden = int(dim * mlp_ratio)
            self.block = (FeedForward(dim, hidden, **kw) if moe_parameters is None
                          else MoEFeedForward(dim, hidden, **dict(moe_parameters), **kw))
        else:
            raise ValueError(f"unknown block type {kind!r} in block_config")
        self.adaln_down = linear(dim, adaln_lora_dim, ("embed", "adaln"), **kw)
        self.adaln_up = linear(adaln_lora_dim, 3 * dim, ("adaln", "modulation"), **kw)

    def __call__(self, x_btsd, emb_btd, adaln_lora_btd, context_bmc, rope_angles, sparse=None):
        b, t, s, d = x_btsd.shape
        modulation = self.adaln_up(self.adaln_down(jax.nn.silu(emb_btd))) + adaln_lora_btd
        modulation = replicate_features(modulation)
        shift, scale, gate = (m[:, :, None, :] for m in jnp.split(modulation, 3, axis=-1))
        normed = layer_norm(x_btsd) * (1 + scale) + shift
        tokens = constrain(rearrange(normed, "b t s d -> b (t s) d"), ("act_batch", "act_length", "act_embed"))
        if self.kind in MLP:
            out = self.block(tokens)
        else:
            out = self.block(tokens, context_bmc, rope_angles, sparse=sparse, frames=t)
        return constrain_btsd(x_btsd + gate * rearrange(out, "b (t s) d -> b t s d", t=t).astype(x_btsd.dtype))


class TransformerBlock(nnx.Module):
    """The sub-blocks of ``block_config`` (default FA-CA-MLP) applied in order."""

    def __init__(self, block_config: str, dim: int, context_dim: int, num_heads: int, mlp_ratio: float,
                 adaln_lora_dim: int, moe_parameters: dict | None, *, attention_impl: str, rngs, dtype, param_dtype,
                 natten_options: tuple = (), temporal_causal: bool = False):
        self.sub_blocks = nnx.List([
            ModulatedSubBlock(kind, dim, context_dim, num_heads, mlp_ratio, adaln_lora_dim, moe_parameters,
                              attention_impl=attention_impl, rngs=rngs, dtype=dtype, param_dtype=param_dtype,
                              natten_options=natten_options, temporal_causal=temporal_causal)
            for kind in block_config.split("-")
        ])

    def __call__(self, x_btsd, emb_btd, adaln_lora_btd, context_bmc, rope_angles, sparse=None):
        for sub_block in self.sub_blocks:
            x_btsd = sub_block(x_btsd, emb_btd, adaln_lora_btd, context_bmc, rope_angles, sparse=sparse)
        return x_btsd


class FinalLayer(nnx.Module):
    def __init__(self, dim: int, out_features: int, adaln_lora_dim: int, *, rngs, dtype, param_dtype):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.dim = dim
        self.adaln_down = linear(dim, adaln_lora_dim, ("embed", "adaln"), **kw)
        self.adaln_up = linear(adaln_lora_dim, 2 * dim, ("adaln", "modulation"), **kw)
        self.linear = linear(dim, out_features, ("embed", "out"), **kw)

    def __call__(self, x_btsd, emb_btd, adaln_lora_btd):
        modulation = self.adaln_up(self.adaln_down(jax.nn.silu(emb_btd))) + adaln_lora_btd[..., : 2 * self.dim]
        modulation = replicate_features(modulation)
        shift, scale = (m[:, :, None, :] for m in jnp.split(modulation, 2, axis=-1))
        return self.linear(layer_norm(x_btsd) * (1 + scale) + shift)


def timestep_sinusoid(t: jax.Array, channels: int) -> jax.Array:
    """[cos, sin] of raw t (no x1000) with max period 10000, float32; t is any shape."""
    half = channels // 2
    freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)
    angles = t.astype(jnp.float32)[..., None] * freqs
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)
