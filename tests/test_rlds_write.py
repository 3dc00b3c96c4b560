"""The engine's RLDS writer: TFDS's on-disk layout, read back by the project's importer and, where
TensorFlow Datasets is installed, by ``tfds.builder_from_directory``."""

from __future__ import annotations

import numpy as np
import pytest

from gw_jax.data.rlds import RldsDataset
from gw_jax.data.rlds_write import write_rlds


def _episodes():
    rng = np.random.default_rng(0)
    return [dict(frames=rng.integers(0, 256, (4 + i, 16, 16, 3), dtype=np.uint8),
                 state=rng.normal(size=(4 + i, 7)).astype(np.float32),
                 action=rng.normal(size=(4 + i, 7)).astype(np.float32), prompt=f"pick up block {i}",
                 metadata=dict(source="seed" if i else "view_transfer",
                               camera_extrinsics=np.arange(16, dtype=np.float32) + i,
                               gate_scores=np.array([0.5, np.nan], np.float32)))
            for i in range(3)]


def test_written_dataset_reads_back(tmp_path):
    episodes = _episodes()
    folder = write_rlds(tmp_path, "gw_engine", episodes, shards=2)
    assert sorted(p.name for p in folder.iterdir()) == [
        "dataset_info.json", "features.json", "gw_engine-train.tfrecord-00000-of-00002",
        "gw_engine-train.tfrecord-00001-of-00002"]
    dataset = RldsDataset.open(folder)
    assert dataset.state_key == "steps/observation/state" and dataset.action_keys == ["steps/action"]
    got = {}
    for where, raw in dataset.episodes():
        decoded = dataset.decode(where, raw)
        got[decoded["prompt"]] = decoded
    for e in episodes:
        d = got[e["prompt"]]
        np.testing.assert_array_equal(d["frames"], e["frames"])  # PNG: lossless
        np.testing.assert_array_equal(d["actions"], e["action"])
        np.testing.assert_array_equal(d["joints"], e["state"])


def test_tensorflow_datasets_reads_it(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    episodes = _episodes()
    folder = write_rlds(tmp_path, "gw_engine", episodes, shards=2)
    builder = tfds.builder_from_directory(str(folder))
    seen = {}
    for e in builder.as_dataset(split="train", shuffle_files=False):
        steps = list(e["steps"])
        prompt = steps[0]["language_instruction"].numpy().decode()
        seen[prompt] = (np.stack([s["observation"]["image"].numpy() for s in steps]),
                        np.stack([s["action"].numpy() for s in steps]), e["episode_metadata"]["source"].numpy())
        assert bool(steps[0]["is_first"].numpy()) and bool(steps[-1]["is_last"].numpy())
    assert len(seen) == len(episodes)
    for e in episodes:
        frames, actions, source = seen[e["prompt"]]
        np.testing.assert_array_equal(frames, e["frames"])
        np.testing.assert_array_equal(actions, e["action"])
        assert source.decode() == e["metadata"]["source"]
