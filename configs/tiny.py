"""Tiny GigaWorld-0-shaped world model for CPU: trains and samples on a laptop in minutes.

    gw-jax train --config configs/tiny.py --workdir /tmp/gw_tiny
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    # DiT: the reference constructor kwargs (names as in GigaWorld0Transformer3DModel's config.json).
    config.model = ml_collections.ConfigDict(dict(
        max_img_h=16, max_img_w=16, max_frames=8,
        in_channels=17, out_channels=16,
        patch_spatial=2, patch_temporal=1,
        model_channels=64, num_blocks=2, num_heads=4,
        crossattn_emb_channels=384, adaln_lora_dim=16,
        # gw_jax options (not in the reference config)
        scan_blocks=True, remat_policy="none", dtype="float32", param_dtype="float32",
        attention_impl="xla",
    ))
    return config
