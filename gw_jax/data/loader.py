"""The resumable Grain loader over packed TFRecords.

    batches = make_loader("runs/packed", batch_size=8, num_frames=17, height=64, width=64, seed=0)
    batch = next(batches)          # video (B,3,T,H,W) in [-1,1], text_emb (B,L,C), text_mask, fps, episode
    state = batches.get_state()    # JSON-serialisable; set_state(state) continues with the next batch

Records are read by index (shard + byte offset from ``index.json``), split across processes, shuffled
with a seed (a new order each epoch), decoded and transformed in the reference way (frames by
``linspace(0, F - 1, T)``, bilinear resize to cover, random crop, [-1, 1]) — in worker processes when
``worker_count > 0``. ``packed_dir`` is a local folder or a ``gs://`` URI: a batch's records are fetched
as byte ranges all at once (concurrently from a bucket), and the next batches are read ahead on threads
while the current one trains, so a step never waits on one record at a time.
"""

from __future__ import annotations

import collections

import grain
import jax
import numpy as np
from absl import flags

from gw_jax.data.pack import read_index
from gw_jax.data.records import decode_example, parse_record
from gw_jax.data.transforms import clip_from_record
from gw_jax.errors import UserInputError
from gw_jax.storage import as_path, is_remote, read_ranges


class PackedRecords:
    """Random access to the records of a packed dataset: ``len``, ``[i] -> Example bytes`` and
    ``read(indices)`` (a batch of records, one ranged read each, fetched together)."""

    def __init__(self, packed_dir):
        self.packed_dir = as_path(packed_dir)
        self.index = read_index(self.packed_dir)
        self._where = []  # (file, record number in it, start byte, end byte)
        for shard in self.index["shards"]:
            ends = list(shard["offsets"][1:]) + [shard["bytes"]]  # a record runs to the next one's offset
            spans = enumerate(zip(shard["offsets"], ends, strict=True))
            self._where += [(shard["file"], i, start, end) for i, (start, end) in spans]
        self._present: set[str] = set()

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, i: int) -> bytes:
        return self.read([i])[0]

    def read(self, indices) -> list[bytes]:
        """The records at ``indices`` (checksums verified), in that order."""
        by_file = collections.defaultdict(list)
        for position, i in enumerate(indices):
            by_file[self._where[int(i)][0]].append((position, self._where[int(i)]))
        out: list[bytes] = [b""] * len(indices)
        for file, wanted in by_file.items():
            path = self.packed_dir / file
            if file not in self._present:
                if not path.is_file():
                    raise UserInputError(f"{path}: shard listed in index.json is missing")
                self._present.add(file)
            chunks = read_ranges(path, [(start, end) for _, (_, _, start, end) in wanted])
            for (position, (_, record, start, _)), chunk in zip(wanted, chunks, strict=True):
                out[position] = parse_record(chunk, start, where=f"{path} record {record}")
        return out


def packed_action_stats(source: PackedRecords, where) -> dict:
    """The pack's action statistics, or a UserInputError when the packed episodes have no actions."""
    stats = source.index.get("actions")
    if not stats:
        raise UserInputError(f"{where}: the packed episodes have no actions (no i.npz with 'actions' when packed, "
                             "or packed before actions were recorded), and the config conditions on actions "
                             "(config.model.action_dim); re-pack episodes with actions or unset action_dim")
    return stats


class ClipTransform:
    """Example bytes + rng -> one training example (a Grain random map)."""

    def __init__(self, num_frames: int, height: int, width: int, text_encoder: dict, *, max_ref_frames: int = 1,
                 ref_start: int = 1, action_stats: dict | None = None):
        self.size = dict(num_frames=num_frames, height=height, width=width)
        self.text = dict(max_text_length=text_encoder["max_length"], text_width=text_encoder["width"])
        self.ref = dict(max_ref_frames=max_ref_frames, ref_start=ref_start, action_stats=action_stats)

    def random_map(self, data: bytes, rng: np.random.Generator) -> dict:
        return clip_from_record(decode_example(data), rng, **self.size, **self.text, **self.ref)

    __call__ = random_map


class _ReadBatch:
    """A batch of record indices + rng -> the batch of training examples: the records fetched together, then
    each transformed with its own generator (a Grain random map over batches)."""

    def __init__(self, source: PackedRecords, transform: ClipTransform):
        self.source, self.transform = source, transform

    def random_map(self, indices: np.ndarray, rng: np.random.Generator) -> dict:
        records = self.source.read(np.atleast_1d(indices).tolist())
        rngs = rng.spawn(len(records))
        clips = [self.transform.random_map(data, clip_rng) for data, clip_rng in zip(records, rngs, strict=True)]
        return {key: np.stack([clip[key] for clip in clips]) for key in clips[0]}

    __call__ = random_map


def make_loader(packed_dir, *, batch_size: int, num_frames: int, height: int, width: int, seed: int = 0,
                shuffle: bool = True, num_epochs: int | None = None, worker_count: int = 0,
                process_index: int | None = None, process_count: int | None = None, drop_remainder: bool = True,
                max_ref_frames: int = 1, ref_start: int = 1, read_ahead: int | None = None, actions: bool = False):
    """A Grain iterator of batches (dicts of numpy arrays) with ``get_state`` / ``set_state``.

    Batches: video (B, 3, T, H, W) in [-1, 1], text_emb (B, L, D) with zeros past each prompt, text_mask,
    fps, episode and ref_mask (B, T), the reference-frame masks of the seed's MaskGenerator(max_ref_frames,
    start=ref_start, factor=4), drawn per clip; with ``actions`` also actions (B, T, A), normalised by the pack's
    statistics (``packed_action_stats``). ``read_ahead``: batches read ahead on threads (default 2, 4
    from a bucket, where a read is a network round trip)."""
    if process_index is None or process_count is None:
        process_index, process_count = jax.process_index(), jax.process_count()
    source = PackedRecords(packed_dir)
    if len(source) < process_count * (batch_size if drop_remainder else 1):
        raise UserInputError(f"{packed_dir}: {len(source)} records are too few for {process_count} process(es) "
                             f"x batch {batch_size}")
    indices = grain.MapDataset.range(len(source))[process_index::process_count]
    if shuffle:
        indices = indices.shuffle(seed=seed)
    indices = indices.repeat(num_epochs).batch(batch_size, drop_remainder=drop_remainder)
    transform = ClipTransform(num_frames, height, width, source.index["text_encoder"],
                              max_ref_frames=max_ref_frames, ref_start=ref_start,
                              action_stats=packed_action_stats(source, packed_dir) if actions else None)
    dataset = indices.random_map(_ReadBatch(source, transform), seed=seed)
    # Batches in flight on threads (Grain's default buffer is hundreds of elements); each reads its records at once.
    ahead = read_ahead or (4 if is_remote(source.packed_dir) else 2)
    iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=ahead, prefetch_buffer_size=ahead))
    if worker_count > 0:
        if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; outside an absl app, use defaults
            flags.FLAGS.mark_as_parsed()
        iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return iter(iterable)
