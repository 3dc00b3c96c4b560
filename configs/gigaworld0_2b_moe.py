"""GigaWorld-0 2B with the top-2-of-4 routed MoE MLP (the reference's MoE option).

    gw-jax compile --config configs/gigaworld0_2b_moe.py --topology v5p:4x4x4
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
