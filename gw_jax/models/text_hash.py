"""A tiny, deterministic text encoder for CPU demos: each lower-cased word maps to a fixed random vector.

Same interface as the other text encoders (``encode(prompts) -> (emb (N, L, C), mask (N, L))``, zeros
past each prompt). It needs no weights and carries exactly what the demo prompts vary in (task, colour,
side) to the DiT; the released model's T5 and the MiniLM encoder are the real thing for real data.
"""

from __future__ import annotations

import re
import zlib

import numpy as np


class HashTextEncoder:
    name = "hash"

    def __init__(self, width: int = 32, max_length: int = 16):
        self.width, self.max_length = width, max_length

    def _word_vector(self, word: str) -> np.ndarray:
        rng = np.random.default_rng(zlib.crc32(word.encode("utf-8")))
        return rng.normal(size=self.width).astype(np.float32) / np.sqrt(self.width) * 4.0

    def encode(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        emb = np.zeros((len(prompts), self.max_length, self.width), np.float32)
        mask = np.zeros((len(prompts), self.max_length), bool)
        for i, prompt in enumerate(prompts):
            words = re.findall(r"[a-z0-9]+", prompt.lower())[: self.max_length]
            for j, word in enumerate(words):
                emb[i, j] = self._word_vector(word)
                mask[i, j] = True
        return emb, mask
