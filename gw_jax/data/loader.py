"""The resumable Grain loader over packed TFRecords.

    batches = make_loader("runs/packed", batch_size=8, num_frames=17, height=64, width=64, seed=0)
    batch = next(batches)          # video (B,3,T,H,W) in [-1,1], text_emb (B,L,C), text_mask, fps, episode
    state = batches.get_state()    # JSON-serialisable; set_state(state) continues with the next batch

Records are read by index (shard + byte offset from ``index.json``), split across processes, shuffled
with a seed (a new order each epoch), decoded and transformed in the reference way (frames by
``linspace(0, F - 1, T)``, bilinear resize to cover, random crop, [-1, 1]) — in worker processes when
``worker_count > 0``.
"""

from __future__ import annotations

from pathlib import Path

import grain
import jax
import numpy as np
from absl import flags

from gw_jax.data.pack import read_index
from gw_jax.data.records import decode_example, read_record_at
from gw_jax.data.transforms import clip_from_record
from gw_jax.errors import UserInputError


class PackedRecords:
    """Random access to the records of a packed dataset: ``len`` and ``[i] -> Example bytes``."""

    def __init__(self, packed_dir):
        self.packed_dir = Path(packed_dir)
        self.index = read_index(self.packed_dir)
        self._where = [(shard["file"], i, offset) for shard in self.index["shards"]
                       for i, offset in enumerate(shard["offsets"])]
        self._files: dict[str, object] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, i: int) -> bytes:
        file, record, offset = self._where[i]
        if file not in self._files:
            path = self.packed_dir / file
            if not path.is_file():
                raise UserInputError(f"{path}: shard listed in index.json is missing")
            self._files[file] = open(path, "rb")
        return read_record_at(self._files[file], offset, where=f"{self.packed_dir / file} record {record}")

    def __getstate__(self):  # file handles stay in the process that opened them
        return {**self.__dict__, "_files": {}}


class ClipTransform:
    """Example bytes + rng -> one training example (a Grain random map)."""

    def __init__(self, num_frames: int, height: int, width: int, text_encoder: dict, *, max_ref_frames: int = 1,
                 ref_start: int = 1):
        self.size = dict(num_frames=num_frames, height=height, width=width)
        self.text = dict(max_text_length=text_encoder["max_length"], text_width=text_encoder["width"])
        self.ref = dict(max_ref_frames=max_ref_frames, ref_start=ref_start)

    def random_map(self, data: bytes, rng: np.random.Generator) -> dict:
        return clip_from_record(decode_example(data), rng, **self.size, **self.text, **self.ref)

    __call__ = random_map


def make_loader(packed_dir, *, batch_size: int, num_frames: int, height: int, width: int, seed: int = 0,
                shuffle: bool = True, num_epochs: int | None = None, worker_count: int = 0,
                process_index: int | None = None, process_count: int | None = None, drop_remainder: bool = True,
                max_ref_frames: int = 1, ref_start: int = 1):
    """A Grain iterator of batches (dicts of numpy arrays) with ``get_state`` / ``set_state``.

    Batches: video (B, 3, T, H, W) in [-1, 1], text_emb (B, L, D) with zeros past each prompt, text_mask,
    fps, episode and ref_mask (B, T), the reference-frame masks of the seed's MaskGenerator(max_ref_frames,
    start=ref_start, factor=4), drawn per clip."""
    if process_index is None or process_count is None:
        process_index, process_count = jax.process_index(), jax.process_count()
    source = PackedRecords(packed_dir)
    if len(source) < process_count * (batch_size if drop_remainder else 1):
        raise UserInputError(f"{packed_dir}: {len(source)} records are too few for {process_count} process(es) "
                             f"x batch {batch_size}")
    dataset = grain.MapDataset.source(source)[process_index::process_count]
    if shuffle:
        dataset = dataset.shuffle(seed=seed)
    dataset = dataset.repeat(num_epochs)
    transform = ClipTransform(num_frames, height, width, source.index["text_encoder"],
                              max_ref_frames=max_ref_frames, ref_start=ref_start)
    dataset = dataset.random_map(transform, seed=seed).batch(batch_size, drop_remainder=drop_remainder)
    # Read ahead a couple of batches on threads (Grain's default buffer is hundreds of elements).
    iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=2))
    if worker_count > 0:
        if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; outside an absl app, use defaults
            flags.FLAGS.mark_as_parsed()
        iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(iterable)
