"""The codec and text encoder a config names, built in one place for training, sampling, packing and the demo.

    codec = load_codec(config)                  # config.codec.name: "pixel" | "patch_vae" | "wan_vae"
    text = load_text_encoder(config)            # config.text_encoder.name: "hash" | "minilm" | "t5:<path>"
    text = text_encoder_from_spec("minilm", max_length=64)   # the `gw-jax pack --text-encoder` spelling
"""

from __future__ import annotations

from gw_jax.errors import UserInputError
from gw_jax.models.patch_vae import PatchVAE
from gw_jax.models.pixel_codec import PixelCodec
from gw_jax.models.text import load_text_encoder as load_text_encoder_from_spec
from gw_jax.models.text_hash import HashTextEncoder
from gw_jax.models.vae import WanLatentCodec, vae_from_config


def load_codec(config):
    if config.codec.name == "pixel":
        return PixelCodec(pool=config.codec.pool, fold=config.codec.fold)
    if config.codec.name == "patch_vae":  # the demo's learned codec: a folder written by PatchVAE.save
        if not config.codec.get("path"):
            raise UserInputError("--config.codec.path: the patch_vae codec needs its folder "
                                 "(gw-jax demo writes OUT/codec)")
        return PatchVAE.load(config.codec.path)
    if config.codec.name == "wan_vae":
        return WanLatentCodec(vae_from_config(config.vae))
    raise UserInputError(f"codec {config.codec.name!r} is not available to `gw-jax sample` in this build")


def text_encoder_from_spec(spec: str, *, max_length: int | None = None, width: int = 32):
    """"hash" (tiny, weight-free: CPU demos), "minilm" (embedded default) or a T5 checkpoint folder."""
    if spec == "hash":
        return HashTextEncoder(width=width, max_length=max_length or 16)
    return load_text_encoder_from_spec(spec, max_length=max_length)


def load_text_encoder(config):
    """The text encoder a config names (``config.text_encoder.name``; "t5:<path>" or a path for T5)."""
    name = config.text_encoder.name
    spec = name[3:] if name.startswith("t5:") else name
    return text_encoder_from_spec(spec, max_length=config.text_encoder.get("max_length"),
                                  width=config.text_encoder.get("width", 32))
