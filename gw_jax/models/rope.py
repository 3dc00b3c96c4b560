"""3D rotary position embedding of GigaWorld-0 (Cosmos-Predict2 ``VideoRopePosition3DEmb``).

head_dim D is split into (t, h, w) parts: dim_h = dim_w = D // 6 * 2, dim_t = D - 2 * dim_h (128 ->
44/42/42). Each part has its own NTK-scaled base theta = 10000 * ratio ** (dim / (dim - 2)); temporal
positions are rescaled by fps (t / fps * 24). Angles are laid out as [t, h, w, t, h, w] over D and used
in the rotate-half form: x * cos + rotate_half(x) * sin.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BASE_FPS = 24.0


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """(dim_t, dim_h, dim_w) of the head dimension split."""
    dim_h = head_dim // 6 * 2
    return head_dim - 2 * dim_h, dim_h, dim_h


def ntk_theta(dim: int, extrapolation_ratio: float) -> float:
    factor = 1.0 if extrapolation_ratio == 1.0 else extrapolation_ratio ** (dim / (dim - 2))
    return 10000.0 * factor


def _inverse_freqs(dim: int, theta: float) -> jax.Array:
    exponents = jnp.arange(0, dim, 2, dtype=jnp.float32)[: dim // 2] / dim
    return 1.0 / (theta ** exponents)


def rope_angles(head_dim: int, t: int, h: int, w: int, fps: jax.Array | float,
                ratios: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> jax.Array:
    """Angles (B or 1, t*h*w, head_dim), float32. ``fps`` is a scalar or one value per sample (B,).

    ``ratios`` are the (h, w, t) extrapolation ratios, as in the reference constructor.
    """
    dim_t, dim_h, dim_w = axis_dims(head_dim)
    h_ratio, w_ratio, t_ratio = ratios
    freqs_t = _inverse_freqs(dim_t, ntk_theta(dim_t, t_ratio))
    freqs_h = _inverse_freqs(dim_h, ntk_theta(dim_h, h_ratio))
    freqs_w = _inverse_freqs(dim_w, ntk_theta(dim_w, w_ratio))
    fps_b = jnp.reshape(jnp.asarray(fps, jnp.float32), (-1,))  # (B,) or (1,)
    pos_bt = jnp.arange(t, dtype=jnp.float32)[None, :] / fps_b[:, None] * BASE_FPS
    angle_bt = pos_bt[..., None] * freqs_t  # (B, t, dim_t/2)
    angle_h = jnp.arange(h, dtype=jnp.float32)[:, None] * freqs_h  # (h, dim_h/2)
    angle_w = jnp.arange(w, dtype=jnp.float32)[:, None] * freqs_w  # (w, dim_w/2)
    b = angle_bt.shape[0]
    half = jnp.concatenate([
        jnp.broadcast_to(angle_bt[:, :, None, None, :], (b, t, h, w, angle_bt.shape[-1])),
        jnp.broadcast_to(angle_h[None, None, :, None, :], (b, t, h, w, angle_h.shape[-1])),
        jnp.broadcast_to(angle_w[None, None, None, :, :], (b, t, h, w, angle_w.shape[-1])),
    ], axis=-1)
    return jnp.concatenate([half, half], axis=-1).reshape(b, t * h * w, head_dim)


def apply_rope(x_blhd: jax.Array, angles_bld: jax.Array) -> jax.Array:
    """Rotate-half RoPE on (B, L, H, D) with angles (B or 1, L, D); computed in float32."""
    x = x_blhd.astype(jnp.float32)
    cos = jnp.cos(angles_bld)[:, :, None, :]
    sin = jnp.sin(angles_bld)[:, :, None, :]
    first, second = jnp.split(x, 2, axis=-1)
    rotated = jnp.concatenate([-second, first], axis=-1)
    return (x * cos + rotated * sin).astype(x_blhd.dtype)
