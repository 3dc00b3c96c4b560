"""Every shipped config loads, and overrides are typed."""

from pathlib import Path

import pytest

from gw_jax.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads(path):
    config = load_config(path)
    assert "model" in config


def test_override_keeps_types(tmp_path):
    path = Path(__file__).parents[1] / "configs" / "tiny.py"
    config = load_config(path, ["--config.model.num_blocks=3", "--config.model.dtype=bfloat16"])
    assert config.model.num_blocks == 3 and config.model.dtype == "bfloat16"
    with pytest.raises(ConfigError, match="model.num_blocks"):
        load_config(path, ["--config.model.num_blocks=abc"])
    with pytest.raises(ConfigError, match="model.nope"):
        load_config(path, ["--config.model.nope=1"])
