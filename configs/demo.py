"""The demo's world model: tiny DiT on pixel-codec latents (32x32 frames -> 8x8x48), 9-frame clips.

    gw-jax demo --quick --out runs/demo          # builds the data, then trains with this config
    gw-jax train --config configs/demo.py --workdir runs/demo_train ...   (needs latents batches)

`gw-jax demo --quick` (2 CPU cores): ~10 minutes end to end; see runs/demo/report.json.
"""

import ml_collections

from gw_jax.train.defaults import QUICK, demo_config


def get_config() -> ml_collections.ConfigDict:
    return demo_config(dict(QUICK))
