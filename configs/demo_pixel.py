"""The demo's DiT on the fixed pixel codec (no trained codec needed): what the demo used before the PatchVAE
(docs/demo.md compares the two), and a small config for tests and quick trials on any 32x32 or 64x64 data.

    gw-jax train --config configs/demo_pixel.py --workdir runs/pixel --config.data.raw_dir=runs/demo/episodes/train
"""

import ml_collections

from gw_jax.train.defaults import QUICK, demo_config


def get_config() -> ml_collections.ConfigDict:
    return demo_config(dict(QUICK, codec="pixel", action_dim=0))  # the demo as it was: no actions
