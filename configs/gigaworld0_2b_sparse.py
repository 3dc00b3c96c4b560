"""GigaWorld-0 2B with Cosmos-Predict2's published 2B sparse-attention (NATTEN) configuration.

One neighbourhood per block (28 entries, ``gw_jax.models.neighborhood_attention.COSMOS_PREDICT2_2B_NATTEN``),
tuned on a 44 x 80 token grid (720p) and rescaled by ``base_size`` to the clip's grid: at 61 x 480 x 640
(16 x 30 x 40 tokens) every block keeps all frames and a local (or dilated, "sparse global") window in
H and W, 16.8% of dense attention on average. Sparse blocks run the block-sparse kernel
(``attention_impl="blocksparse"``); per-chip memory and FLOPs next to dense are in docs/scale.md.

    gw-jax compile --config configs/gigaworld0_2b_sparse.py --topology v5p:4x4x4
"""

from pathlib import Path

import ml_collections

from gw_jax.config import load_config_file
from gw_jax.models.neighborhood_attention import COSMOS_PREDICT2_2B_NATTEN


def get_config() -> ml_collections.ConfigDict:
    config = load_config_file(Path(__file__).with_name("gigaworld0_2b.py"))
    config.model.natten_parameters = [dict(entry) for entry in COSMOS_PREDICT2_2B_NATTEN]
    config.model.attention_impl = "blocksparse"
    # kept: without recomputation v5e-256 needs 13.8 of 16 GiB per chip (v5p-64 36.3 of 95; docs/scale.md)
    config.model.remat_policy = "full"
    return config
