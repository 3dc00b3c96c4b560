"""GigaWorld-0 2B with the top-2-of-4 routed MoE MLP (the reference's MoE option).

    gw-jax compile --config configs/gigaworld0_2b_moe.py --topology v5p:4x4x4
"""

import importlib.util
from pathlib import Path

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location("gigaworld0_2b", Path(__file__).with_name("gigaworld0_2b.py"))
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    config = base.get_config()
    config.model.moe_parameters = ml_collections.ConfigDict(dict(
        num_routed_experts=4, num_activated_experts=2, shared_experts=False,
    ))
    return config
