"""The released GigaWorld-0-Video 2B shape (Cosmos-Predict2 2B): 2048 channels, 28 blocks, 16 heads.

61 frames x 480x640 at 16 fps -> 16 x 60 x 80 latents -> 19,200 tokens; T5 (width 1024) text.
    gw-jax compile --config configs/gigaworld0_2b.py --topology v5p:4x4x4
    gw-jax compile --config configs/gigaworld0_2b.py --topology v5e:16x16 --config.model.scan_blocks=false
(on HBM-bound v5e the scanned blocks' bookkeeping is an estimated 15-97% of the step: docs/scale.md "Scanned or
unrolled blocks on TPU"; the blocks stay scanned by default on TPU until a timed TPU step confirms it)
    gw-jax train --config configs/gigaworld0_2b.py --workdir gs://BUCKET/run --config.data.packed_dir=...
"""

import ml_collections

from gw_jax.train.defaults import base_config


def get_config() -> ml_collections.ConfigDict:
    config = base_config()
    config.model.update(dict(
        max_img_h=240, max_img_w=240, max_frames=128,
        in_channels=17, out_channels=16,
        patch_spatial=2, patch_temporal=1,
        model_channels=2048, num_blocks=28, num_heads=16,
        crossattn_emb_channels=1024, adaln_lora_dim=256,
        # no recomputation: fits v5p-64 (28.5 of 95 GiB per chip) and v5e-256 (11.9 of 16) since the norms and
        # GELU are recomputed in the backward; an estimated ~21% shorter step than "full" (roofline, docs/scale.md)
        scan_blocks="auto", remat_policy="none", dtype="bfloat16", param_dtype="float32",
        attention_impl="auto",  # splash on TPU, cudnn on GPU, exact xla on CPU (gw_jax.models.attention)
    ))
    config.data.update(dict(num_frames=61, height=480, width=640, fps=16.0))
    config.latents = "precomputed"
    config.train.update(dict(global_batch_size=16, num_steps=100_000, learning_rate=2 ** -14.5,
                             warmup_steps=1000, weight_decay=0.1, checkpoint_every=1000))
    config.mesh.axes.update(dict(data=1, fsdp=-1, context=4, tensor=1))
    return config
