"""Fixed-length tokenization with the Hugging Face ``tokenizers`` package (no transformers at run time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from gw_jax.errors import UserInputError


class FixedLengthTokenizer:
    """Tokenizes prompts to exactly ``max_length`` ids (truncated, right-padded) plus a bool mask.

    Special tokens ([CLS]/[SEP] for BERT, </s> for T5) come from the tokenizer.json post-processor;
    truncation keeps room for them, as transformers does.
    """

    def __init__(self, file: str | Path, max_length: int, pad_token: str):
        file = Path(file)
        if not file.is_file():
            raise UserInputError(f"{file}: tokenizer file not found (need a tokenizers tokenizer.json; "
                                 f"transformers writes one: AutoTokenizer.from_pretrained(dir).save_pretrained(dir))")
        try:
            self.tokenizer = Tokenizer.from_file(str(file))
        except Exception as e:  # tokenizers raises a bare Exception on malformed files
            raise UserInputError(f"{file}: unreadable tokenizer.json ({e})") from e
        pad_id = self.tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise UserInputError(f"{file}: the vocabulary has no padding token {pad_token!r}")
        self.max_length = max_length
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)

    def __call__(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Returns (ids int32 (N, max_length), mask bool (N, max_length))."""
        encodings = self.tokenizer.encode_batch(list(prompts))
        ids = np.array([e.ids for e in encodings], np.int32).reshape(len(prompts), self.max_length)
        mask = np.array([e.attention_mask for e in encodings], bool).reshape(len(prompts), self.max_length)
        return ids, mask
