"""GigaWorld-0 2B with the top-2-of-4 routed MoE MLP (the reference's MoE option).

    gw-jax compile --config configs/gigaworld0_2b_moe.py --topology v5p:4x4x4
    gw-jax compile --config configs/gigaworld0_2b_moe.py --topology v5p:4x4x4 --config.model.remat_policy=none

Recomputation: "full" because v5e-256 needs it; on v5p-64 the step fits without (49.8 of 95 GiB) and the
roofline estimate drops from 0.64 to 0.50 s (docs/scale.md, "MoE and sparse").
"""

from pathlib import Path

import ml_collections

from gw_jax.config import load_config_file


def get_config() -> ml_collections.ConfigDict:
    config = load_config_file(Path(__file__).with_name("gigaworld0_2b.py"))
    config.model.remat_policy = "full"  # without recomputation v5e-256 needs 20.0 GiB of 16 (docs/scale.md)
    config.model.moe_parameters = ml_collections.ConfigDict(dict(
        num_routed_experts=4, num_activated_experts=2, shared_experts=False,
    ))
    return config
