"""The demo's world model: tiny DiT on the learned PatchVAE latents (32x32 frames -> 8x8x16), 9-frame clips.

    gw-jax demo --quick --out runs/demo          # simulates, packs, trains the codec and this model
    gw-jax train --config configs/demo.py --workdir runs/demo_train \\
        --config.codec.path=runs/demo/codec --config.data.raw_dir=runs/demo/episodes/train

`gw-jax demo --quick` (2 CPU cores, 256 training episodes, 2500 steps): 508-531 s end to end at seeds 0-2;
seed 0 held-out PSNR 19.34 dB image + text (copying the first frame 18.82), 25.36 dB driven by the true actions,
SSIM 0.606 / 0.811. All numbers in README.md and docs/demo.md (why each setting: a learned codec, log-sigma
centred at 1, EMA weights, 256 episodes).
"""

import ml_collections

from gw_jax.train.defaults import QUICK, demo_config


def get_config() -> ml_collections.ConfigDict:
    return demo_config(dict(QUICK))
