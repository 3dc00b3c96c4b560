"""Tiny GigaWorld-0-shaped world model for CPU: trains and samples on a laptop in minutes.

    gw-jax train --config configs/tiny.py --workdir runs/tiny --config.data.packed_dir=runs/packed

17 frames at 64x64 -> 5 x 8 x 8 latents (tiny Wan VAE, 16 channels) -> 80 tokens after 2x2 patches.
The text encoder is the embedded all-MiniLM-L6-v2 (width 384).
"""

import ml_collections

from gw_jax.train.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()
    # DiT: the reference constructor kwargs (names as in GigaWorld0Transformer3DModel's config.json).
    config.model.update(dict(
        max_img_h=16, max_img_w=16, max_frames=8,
        in_channels=17, out_channels=16,
        patch_spatial=2, patch_temporal=1,
        model_channels=64, num_blocks=2, num_heads=4,
        crossattn_emb_channels=384, adaln_lora_dim=16,
        # gw_jax options (not in the reference config)
        scan_blocks="auto", remat_policy="none", dtype="float32", param_dtype="float32",
        attention_impl="xla",
    ))
    config.vae.update(dict(base_dim=8, dim_mult=(1, 2, 2, 2)))
    config.train.update(dict(global_batch_size=8, num_steps=300, learning_rate=1e-3, warmup_steps=20,
                             log_every=10, checkpoint_every=100, weight_decay=0.0))
    config.sample.update(dict(steps=20, guidance=1.0))
    return config
