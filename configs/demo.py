"""The demo's world model: tiny DiT on the learned PatchVAE latents (32x32 frames -> 8x8x16), 9-frame clips.

    gw-jax demo --quick --out runs/demo          # simulates, packs, trains the codec and this model
    gw-jax train --config configs/demo.py --workdir runs/demo_train \\
        --config.codec.path=runs/demo/codec --config.data.raw_dir=runs/demo/episodes/train

`gw-jax demo --quick` (2 CPU cores): about 10 minutes end to end; the numbers are in README.md and
docs/demo.md (why each setting: a learned codec, log-sigma centred at 1, EMA weights).
"""

import ml_collections

from gw_jax.train.defaults import QUICK, demo_config


def get_config() -> ml_collections.ConfigDict:
    return demo_config(dict(QUICK))
