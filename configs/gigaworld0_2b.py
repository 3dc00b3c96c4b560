"""The released GigaWorld-0-Video 2B shape (Cosmos-Predict2 2B): 2048 channels, 28 blocks, 16 heads.

61 frames x 480x640 at 16 fps -> 16 x 60 x 80 latents -> 19,200 tokens.
    gw-jax compile --config configs/gigaworld0_2b.py --topology v5p:4x4x4
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.model = ml_collections.ConfigDict(dict(
        max_img_h=240, max_img_w=240, max_frames=128,
        in_channels=17, out_channels=16,
        patch_spatial=2, patch_temporal=1,
        model_channels=2048, num_blocks=28, num_heads=16,
        crossattn_emb_channels=1024, adaln_lora_dim=256,
        scan_blocks=True, remat_policy="full", dtype="bfloat16", param_dtype="float32",
        attention_impl="xla",
    ))
    return config
