"""A fixed, invertible pixel-space codec: the demo's latent space until the Wan VAE is trained.

encode: video (B, 3, T, H, W) in [-1, 1] -> average-pool by ``pool`` -> space-to-depth by ``fold``
-> (B, 3 * fold^2, T, H / (pool*fold), W / (pool*fold)), scaled to unit-ish variance.
decode is the exact inverse of the space-to-depth (so decode(encode(x)) is the pooled video).
No temporal compression: one latent frame per video frame.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from einops import rearrange, reduce


class PoolFold:
    """For codecs that average-pool frames by ``self.pool`` and cut them into ``self.fold``-square patches."""

    @property
    def spatial_factor(self) -> int:
        return self.pool * self.fold

    def pooled(self, video):
        """(B, C, T, H, W) -> (B, C, T, H / pool, W / pool): the video the codec reconstructs."""
        return reduce(video, "b c t (h p) (w q) -> b c t h w", "mean", p=self.pool, q=self.pool)


@dataclasses.dataclass(frozen=True)
class PixelCodec(PoolFold):
    pool: int = 2
    fold: int = 2
    scale: float = 2.0  # pixels in [-1, 1] have std ~0.5: x2 puts latents near unit variance

    @property
    def channels(self) -> int:
        return 3 * self.fold ** 2

    def encode(self, video):
        folded = rearrange(self.pooled(video), "b c t (h m) (w n) -> b (c m n) t h w", m=self.fold, n=self.fold)
        return folded * self.scale

    def decode(self, latents):
        video = rearrange(latents / self.scale, "b (c m n) t h w -> b c t (h m) (w n)", m=self.fold, n=self.fold)
        return jnp.clip(video, -1.0, 1.0)
