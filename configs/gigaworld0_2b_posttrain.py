"""Post-training the released GigaWorld-0-Video 2B as the release does (giga-world-0 configs/giga_world_0_video.py).

    gw-jax train --config configs/gigaworld0_2b_posttrain.py --workdir runs/post \\
        --config.model.pretrained=GigaWorld-0-Video-Pretrain-2b --config.data.packed_dir=data/packed \\
        [--config.train.mode=lora]
    gw-jax export --workdir runs/post --out runs/post/export      # transformer folder, or the peft adapter

The release's settings: CAME-8bit at lr 2^-14.5, constant schedule, no weight decay, EMA, activation
checkpointing of every block, bf16 compute, batch 1 per GPU on 8 GPUs; LoRA rank 64, alpha = rank, on q/k/v/out of
self- and cross-attention. The model's reference kwargs come from the pretrained folder's config.json.
"""

from pathlib import Path

import ml_collections

from gw_jax.config import load_config_file


def get_config() -> ml_collections.ConfigDict:
    config = load_config_file(Path(__file__).with_name("gigaworld0_2b.py"))
    config.model.remat_policy = "full"  # the release checkpoints every block (8 GPUs, batch 1 each)
    config.latents = "vae"  # packed video, encoded by the Wan VAE inside the step (set --config.vae.pretrained)
    config.train.update(dict(optimizer="came8bit", learning_rate=2 ** -14.5, schedule="constant", warmup_steps=0,
                             weight_decay=0.0, global_batch_size=8, mode="full", lora_rank=64, lora_alpha=64.0))
    return config
