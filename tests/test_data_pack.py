"""Packed TFRecords: pack / verify / resume / bad inputs, and the resumable, per-process Grain loader."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest

from gw_jax.cli import main
from gw_jax.data.loader import make_loader
from gw_jax.data.pack import pack, read_index, verify
from gw_jax.data.records import CorruptRecordError, decode_example, iter_records
from gw_jax.data.video import write_video
from gw_jax.errors import UserInputError
from gw_jax.models.text_hash import HashTextEncoder

PROMPTS = ["push the red cube to the left", "pick up the blue cube", "place the green cube on the right"]


def make_episodes(folder, count=8, frames=9, size=24, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        # a moving bright square: frames differ, so frame sampling is visible in the pixels
        video = np.full((frames, size, size, 3), 40, np.uint8)
        for t in range(frames):
            video[t, 4:10, 2 + t:8 + t] = 220
        write_video(folder / f"{i}.mp4", video, fps=8)
        (folder / f"{i}.txt").write_text(PROMPTS[i % 3] + "\n")
        joints = (rng.normal(size=(frames, 7)) + np.arange(frames)[:, None]).astype(np.float32)
        np.savez(folder / f"{i}.npz", joints=joints,
                 actions=rng.normal(size=(frames, 7)).astype(np.float32))
    return folder


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    raw = make_episodes(root / "raw")
    index = pack(raw, root / "packed", text_encoder=HashTextEncoder(), shards=3, progress=False)
    return raw, root / "packed", index


def loader(packed_dir, **kw):
    args = dict(batch_size=2, num_frames=5, height=16, width=16, seed=0, process_index=0, process_count=1)
    return make_loader(packed_dir, **{**args, **kw})


def test_pack_writes_examples_an_index_and_verifies(packed):
    raw, out, index = packed
    assert index["num_records"] == 8 and [s["records"] for s in index["shards"]] == [3, 3, 2]
    assert index["text_encoder"] == dict(name="hash", width=32, max_length=16)
    _, first = next(iter_records(out / index["shards"][0]["file"]))
    example = decode_example(first)
    assert example["video"][0] == (raw / "0.mp4").read_bytes()  # the mp4 as it was, decoded later
    assert example["prompt"][0].decode() == PROMPTS[0] and example["num_frames"] == [9]
    joints = np.frombuffer(example["joints"][0], np.float32).reshape(example["joints_shape"])
    np.testing.assert_array_equal(joints, np.load(raw / "0.npz")["joints"])
    assert verify(out) == []
    assert main(["verify", str(out)]) == 0


def test_loader_batches_follow_the_reference_transform(packed):
    raw, out, _ = packed
    batch = next(loader(out, shuffle=False))
    assert batch["video"].shape == (2, 3, 5, 16, 16) and batch["video"].dtype == np.float32
    assert -1.0 <= batch["video"].min() and batch["video"].max() <= 1.0
    assert batch["text_emb"].shape == (2, 16, 32)
    length = int(batch["text_mask"][0].sum())
    assert length == len(PROMPTS[0].split())
    assert np.all(batch["text_emb"][0, length:] == 0) and np.all(np.abs(batch["text_emb"][0, :length]).sum(-1) > 0)
    np.testing.assert_allclose(batch["fps"], 8 * 4 / 8)  # 9 frames at 8 fps sampled down to 5
    episode = int(batch["episode"][0])
    expected = np.load(raw / f"{episode}.npz")["joints"][np.linspace(0, 8, 5).astype(int)]
    np.testing.assert_array_equal(batch["joints"][0], expected)
    np.testing.assert_array_equal(batch["ref_mask"], [[1, 0, 0, 0, 0]] * 2)  # released config: the first frame
    batches = itertools.islice(loader(out, num_frames=9, max_ref_frames=9, ref_start=0), 6)
    masks = {tuple(b["ref_mask"][i]) for b in batches for i in range(2)}
    prefixes = {tuple(float(t < n) for t in range(9)) for n in (0, 1, 5, 9)}  # n latents -> 1 + 4(n-1) frames
    assert masks <= prefixes and len(masks) >= 3


def test_loader_is_deterministic_resumes_exactly_and_splits_processes(packed):
    _, out, _ = packed
    run = loader(out, num_epochs=None)
    first = [next(run)["episode"].tolist() for _ in range(3)]
    state = json.loads(json.dumps(run.get_state()))  # what the checkpoint stores
    rest = [next(run) for _ in range(3)]
    again = loader(out)
    assert [next(again)["episode"].tolist() for _ in range(3)] == first
    resumed = loader(out)
    resumed.set_state(state)
    for expected in rest:
        batch = next(resumed)
        np.testing.assert_array_equal(batch["episode"], expected["episode"])
        np.testing.assert_array_equal(batch["video"], expected["video"])  # same random crops too
    halves = [loader(out, batch_size=1, num_epochs=1, process_index=p, process_count=2) for p in range(2)]
    seen = [sorted(int(b["episode"][0]) for b in half) for half in halves]
    assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(8))


def test_bad_inputs_are_skipped_and_counted_or_fail_with_strict(tmp_path):
    raw = make_episodes(tmp_path / "raw", count=5)
    (raw / "1.txt").unlink()  # missing prompt
    (raw / "2.txt").write_text("   \n")  # empty prompt
    (raw / "3.mp4").write_bytes(b"not a video")  # broken mp4
    index = pack(raw, tmp_path / "out", text_encoder=HashTextEncoder(), progress=False)
    assert index["num_records"] == 2 and index["inputs"] == 5
    reasons = {os.path.basename(s["file"]): s["reason"] for s in index["skipped"]}
    assert set(reasons) == {"1.txt", "2.txt", "3.mp4"} and "undecodable" in reasons["3.mp4"]
    with pytest.raises(UserInputError, match="--strict: .*1.txt"):
        pack(raw, tmp_path / "strict", text_encoder=HashTextEncoder(), strict=True, progress=False)
    assert not (tmp_path / "strict" / "index.json").exists()
    assert main(["pack", str(tmp_path / "nowhere"), str(tmp_path / "o"), "--text-encoder", "hash"]) == 2


def test_corrupted_shard_is_named_by_verify_and_the_loader(packed, tmp_path):
    import shutil

    _, out, index = packed
    copy = tmp_path / "packed"
    shutil.copytree(out, copy)
    shard = copy / index["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[index["shards"][1]["offsets"][1] + 200] ^= 0xFF  # one byte inside record 1's video
    shard.write_bytes(bytes(data))
    problems = verify(copy)
    assert len(problems) == 1 and f"{shard.name} record 1" in problems[0] and "checksum" in problems[0]
    assert main(["verify", str(copy)]) == 1
    with pytest.raises(CorruptRecordError, match=f"{shard.name} record 1"):
        for _ in loader(copy, batch_size=1, num_epochs=1, shuffle=False):
            pass


def test_pack_resumes_and_keeps_finished_shards(packed, tmp_path):
    import shutil

    raw, out, index = packed
    copy = tmp_path / "packed"
    shutil.copytree(out, copy)
    # an interrupted run: index not yet written, shard 2 half-written under its temporary name
    (copy / "index.json").unlink()
    (copy / index["shards"][2]["file"]).rename(copy / (index["shards"][2]["file"] + ".tmp"))
    (copy / index["shards"][2]["file"]).with_suffix(".json").unlink()
    before = {s["file"]: (copy / s["file"]).stat().st_mtime_ns for s in index["shards"][:2]}
    again = pack(raw, copy, text_encoder=HashTextEncoder(), shards=3, progress=False)
    assert {s["file"]: (copy / s["file"]).stat().st_mtime_ns for s in index["shards"][:2]} == before
    assert again["shards"] == index["shards"] and read_index(copy)["num_records"] == 8
    assert verify(copy) == []


def test_records_are_readable_by_tensorflow(packed):
    tf = pytest.importorskip("tensorflow")
    _, out, index = packed
    files = [str(out / s["file"]) for s in index["shards"]]
    records = list(tf.data.TFRecordDataset(files))
    assert len(records) == 8
    example = tf.train.Example.FromString(records[0].numpy())
    assert example.features.feature["prompt"].bytes_list.value[0].decode() == PROMPTS[0]


@pytest.mark.slow  # spawns worker processes (~15 s)
def test_worker_processes_give_the_same_batches_and_resume(packed):
    _, out, _ = packed
    in_process = loader(out)
    expected = [next(in_process)["episode"].tolist() for _ in range(4)]
    workers = loader(out, worker_count=2)
    assert [next(workers)["episode"].tolist() for _ in range(2)] == expected[:2]
    state = json.loads(json.dumps(workers.get_state()))
    resumed = loader(out, worker_count=2)
    resumed.set_state(state)
    assert [next(resumed)["episode"].tolist() for _ in range(2)] == expected[2:]
