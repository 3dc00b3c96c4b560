"""GigaWorld-0 2B with Cosmos-Predict2's published 2B sparse-attention (NATTEN) configuration.

One neighbourhood per block (28 entries), tuned on a 44 x 80 token grid (720p) and rescaled by
``base_size`` to the clip's grid: at 61 x 480 x 640 (16 x 30 x 40 tokens) every block keeps all frames
and a local (or dilated, "sparse global") window in H and W. Sparse blocks run the block-sparse kernel
(``attention_impl="blocksparse"``); memory per chip and FLOPs next to dense are in docs/scale.md.

    gw-jax compile --config configs/gigaworld0_2b_sparse.py --topology v5p:4x4x4
"""

import importlib.util
from pathlib import Path

import ml_collections

BASE = (-1, 44, 80)
# Cosmos-Predict2 (nvidia-cosmos/cosmos-predict2, configs/base/config_natten.py), sparsity at 720p:
GLOBAL_HW = dict(window_size=(-1, 4, 16), dilation=(1, 11, 5), base_size=BASE)  # 98%: dilated over H and W
GLOBAL_W = dict(window_size=(-1, 12, 16), stride=(1, 4, 1), dilation=(1, 1, 5), base_size=BASE)  # 95%
LOCAL_92 = dict(window_size=(-1, 12, 24), stride=(1, 4, 8), base_size=BASE)  # 92%
LOCAL_77 = dict(window_size=(-1, 20, 40), stride=(1, 4, 8), base_size=BASE)  # 77%
LOCAL_55 = dict(window_size=(-1, 28, 56), stride=(1, 4, 8), base_size=BASE)  # 55%

NATTEN_PARAMETERS_2B = (
    [GLOBAL_HW, GLOBAL_HW, GLOBAL_W, LOCAL_92, LOCAL_92, GLOBAL_W, LOCAL_92, LOCAL_92, LOCAL_92, LOCAL_92,
     GLOBAL_W]  # blocks 0-10
    + [LOCAL_77] * 12  # blocks 11-22
    + [LOCAL_55]  # block 23
    + [LOCAL_77] * 3  # blocks 24-26
    + [LOCAL_92]  # block 27
)


def get_config() -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location("gigaworld0_2b", Path(__file__).with_name("gigaworld0_2b.py"))
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    config = base.get_config()
    config.model.natten_parameters = [dict(entry) for entry in NATTEN_PARAMETERS_2B]
    config.model.attention_impl = "blocksparse"
    return config
