"""`gw-jax pack --from-tfds`: an RLDS dataset in TFDS's on-disk layout -> episodes -> packed records.

The dataset is built here the way TFDS writes one (features.json as protobuf JSON, dataset_info.json,
NAME-SPLIT.tfrecord-0000K-of-0000N files whose Examples flatten the feature tree into keys and store every
per-step feature as one list over the episode), shaped like Open X-Embodiment's: PNG frames, a state
and an action per step, a language instruction per step, booleans as int64.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from gw_jax.cli import main
from gw_jax.data.pack import read_index
from gw_jax.data.records import RecordWriter, decode_example, encode_example, iter_records
from gw_jax.data.rlds import RldsDataset, find_dataset_dir, flatten_features
from gw_jax.errors import UserInputError

FD = "tensorflow_datasets.core.features.features_dict.FeaturesDict"


def _tensor(shape, dtype="float32"):
    return {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
            "tensor": {"shape": {"dimensions": [str(d) for d in shape]}, "dtype": dtype, "encoding": "none"}}


def _dict(features):
    return {"pythonClassName": FD, "featuresDict": {"features": features}}


def rlds_features(size=32, action=None):
    image = {"pythonClassName": "tensorflow_datasets.core.features.image_feature.Image",
             "image": {"shape": {"dimensions": [str(size), str(size), "3"]}, "dtype": "uint8",
                       "encodingFormat": "png"}}
    text = {"pythonClassName": "tensorflow_datasets.core.features.text_feature.Text", "text": {}}
    step = _dict({"observation": _dict({"image": image, "wrist_image": image, "state": _tensor([4])}),
                  "action": action or _tensor([3]), "language_instruction": text,
                  "is_first": _tensor([], "bool"), "reward": _tensor([], "float32")})
    return _dict({"steps": {"pythonClassName": "tensorflow_datasets.core.features.dataset_feature.Dataset",
                            "sequence": {"feature": step, "length": "-1"}},
                  "episode_metadata": _dict({"file_path": text})})


def _png(array):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def rlds_episode(rng, steps, size=32, instruction="pick up the red block"):
    frames = np.full((steps, size, size, 3), 30, np.uint8)
    for t in range(steps):
        frames[t, 8:16, 2 + 2 * t:10 + 2 * t] = (220, 40, 40)
    state = rng.normal(size=(steps, 4)).astype(np.float32)
    action = rng.normal(size=(steps, 3)).astype(np.float32)
    example = {"steps/observation/image": [_png(f) for f in frames],
               "steps/observation/wrist_image": [_png(f[::-1]) for f in frames],
               "steps/observation/state": state.ravel().tolist(), "steps/action": action.ravel().tolist(),
               "steps/language_instruction": [instruction] * steps,
               "steps/is_first": [1] + [0] * (steps - 1), "steps/reward": [0.0] * (steps - 1) + [1.0],
               "episode_metadata/file_path": ["/robot/episode.h5"]}
    return example, dict(frames=frames, state=state, action=action)


def write_tiny_rlds(data_dir, name="tiny_rlds", version="1.0.0", episodes=5, shards=2, steps=6):
    """TFDS layout: DATA_DIR/NAME/VERSION/{features.json, dataset_info.json, NAME-train.tfrecord-*}.
    Episode 3 has an empty instruction; episode 4 a corrupt frame."""
    folder = data_dir / name / version
    folder.mkdir(parents=True)
    (folder / "features.json").write_text(json.dumps(rlds_features()))
    rng = np.random.default_rng(0)
    truth, examples = [], []
    for i in range(episodes):
        example, arrays = rlds_episode(rng, steps + i, instruction="" if i == 3 else f"pick up block {i}")
        if i == 4:
            example["steps/observation/image"][2] = b"\x89PNG not really"
        examples.append(example)
        truth.append(arrays)
    lengths = []
    for k in range(shards):
        with RecordWriter(folder / f"{name}-train.tfrecord-{k:05d}-of-{shards:05d}") as writer:
            for example in examples[k::shards]:
                writer.write(encode_example(example))
        lengths.append(len(examples[k::shards]))
    (folder / "dataset_info.json").write_text(json.dumps(
        {"name": name, "version": version, "fileFormat": "tfrecord",
         "splits": [{"name": "train", "shardLengths": [str(n) for n in lengths]}]}))
    # TFDS reads shards in order; the importer numbers episodes shard by shard.
    order = [i for k in range(shards) for i in range(k, episodes, shards)]
    return folder, [truth[i] for i in order], order


def test_flatten_features_names_leaves_as_tfds_does():
    leaves = {leaf.key: leaf for leaf in flatten_features(rlds_features())}
    assert leaves["steps/observation/image"].kind == "image" and leaves["steps/observation/image"].per_step
    assert leaves["steps/observation/state"].shape == (4,) and leaves["steps/action"].per_step
    assert leaves["steps/language_instruction"].kind == "text"
    assert not leaves["episode_metadata/file_path"].per_step


def test_dict_actions_are_concatenated_in_key_order(tmp_path):
    action = _dict({"world_vector": _tensor([3]), "gripper_closedness_action": _tensor([1]),
                    "terminate_episode": _tensor([3], "int32")})
    folder = tmp_path / "fractal_like" / "0.1.0"
    folder.mkdir(parents=True)
    (folder / "features.json").write_text(json.dumps(rlds_features(action=action)))
    (folder / "fractal_like-train.tfrecord-00000-of-00001").write_bytes(b"")
    dataset = RldsDataset.open(folder)
    assert dataset.action_keys == ["steps/action/gripper_closedness_action", "steps/action/terminate_episode",
                                   "steps/action/world_vector"]
    raw = {"steps/observation/image": [_png(np.zeros((32, 32, 3), np.uint8))] * 2,
           "steps/action/world_vector": [1.0, 2, 3, 4, 5, 6], "steps/action/gripper_closedness_action": [7.0, 8],
           "steps/action/terminate_episode": [0, 1, 0, 1, 0, 1], "steps/observation/state": list(range(8))}
    episode = dataset.decode("x", raw)
    np.testing.assert_array_equal(episode["actions"], [[7, 0, 1, 0, 1, 2, 3], [8, 1, 0, 1, 4, 5, 6]])
    np.testing.assert_array_equal(episode["joints"], [[0, 1, 2, 3], [4, 5, 6, 7]])
    assert episode["prompt"] == ""
    del raw["steps/observation/state"]
    with pytest.raises(UserInputError, match="x: steps/observation/state holds 0 values, expected 2 steps x 4"):
        dataset.decode("x", raw)


def test_pack_from_tfds_imports_packs_and_resumes(tmp_path, capsys):
    _, truth, order = write_tiny_rlds(tmp_path / "tfds")
    out = tmp_path / "packed"
    args = ["pack", "--from-tfds", "tiny_rlds", str(out), "--tfds-data-dir", str(tmp_path / "tfds"),
            "--text-encoder", "hash", "--fps", "5"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "video steps/observation/image" in printed and "joints steps/observation/state" in printed
    index = read_index(out)
    # 5 episodes: the corrupt frame is skipped at import, the empty instruction at pack; both are named
    assert index["num_records"] == 3
    skipped = {s["file"].rsplit("/", 1)[-1]: s["reason"] for s in index["skipped"]}
    assert skipped.keys() == {"tiny_rlds-train.tfrecord-00000-of-00002:2", "4.txt"}
    assert skipped["tiny_rlds-train.tfrecord-00000-of-00002:2"].startswith("undecodable image in "
                                                                           "steps/observation/image")
    assert skipped["4.txt"] == "empty prompt" and "skipped tiny_rlds-train.tfrecord-00000-of-00002:2" in printed
    records = [decode_example(r) for s in index["shards"] for _, r in iter_records(out / s["file"])]
    by_prompt = {r["prompt"][0].decode(): r for r in records}
    for position, episode_id in enumerate(order):
        if episode_id in (3, 4):
            continue
        record, arrays = by_prompt[f"pick up block {episode_id}"], truth[position]
        assert record["num_frames"] == [len(arrays["frames"])] and record["fps"] == [5.0]
        actions = np.frombuffer(record["actions"][0], np.float32).reshape(record["actions_shape"])
        joints = np.frombuffer(record["joints"][0], np.float32).reshape(record["joints_shape"])
        np.testing.assert_array_equal(actions, arrays["action"])
        np.testing.assert_array_equal(joints, arrays["state"])
        from gw_jax.data.video import decode_video_bytes

        frames, _ = decode_video_bytes(record["video"][0])
        assert np.abs(frames.astype(float) - arrays["frames"]).mean() < 4  # H.264 of the PNG frames
    mp4 = out / "rlds_episodes" / "0.mp4"
    before = mp4.stat().st_mtime_ns
    assert main(args) == 0  # a re-run keeps the imported episodes and the packed shards
    assert mp4.stat().st_mtime_ns == before and read_index(out)["num_records"] == 3


def test_clear_errors_for_missing_datasets_splits_and_keys(tmp_path):
    folder, _, _ = write_tiny_rlds(tmp_path / "tfds", episodes=2, shards=1)
    with pytest.raises(UserInputError, match="--from-tfds nothing_here: no TFDS dataset"):
        find_dataset_dir("nothing_here", tmp_path / "tfds")
    assert find_dataset_dir("tiny_rlds", tmp_path / "tfds") == folder
    assert find_dataset_dir(str(folder)) == folder
    with pytest.raises(UserInputError, match=r"no TFRecord files for split 'validation' \(splits here: \['train'\]"):
        RldsDataset.open(folder, split="validation")
    with pytest.raises(UserInputError, match="--image-key steps/depth: not a per-step image"):
        RldsDataset.open(folder, image_key="steps/depth")
    assert RldsDataset.open(folder, image_key="steps/observation/wrist_image").image_key.endswith("wrist_image")
    assert main(["pack", "--from-tfds", "tiny_rlds", "--tfds-data-dir", str(tmp_path / "tfds")]) == 2
    assert main(["pack", "--from-tfds", "nothing_here", str(tmp_path / "o"), "--tfds-data-dir", str(tmp_path)]) == 2
    assert not (tmp_path / "o" / "index.json").exists()


def test_reads_a_dataset_written_by_tensorflow_datasets(fixtures_dir):
    """The committed fixture was written by TFDS's own builder (tests/fixtures/tfds_rlds/make_fixture.py)."""
    root = fixtures_dir / "tfds_rlds"
    dataset = RldsDataset.open(find_dataset_dir("tiny_rlds", root))
    assert dataset.describe()["actions"] == ["steps/action"] and dataset.state_key == "steps/observation/state"
    truth = np.load(root / "truth.npz")
    order = [int(i) for i in (root / "order.txt").read_text().split()]
    episodes = [dataset.decode(where, raw) for where, raw in dataset.episodes()]
    assert len(episodes) == len(order) == 3
    for episode, i in zip(episodes, order, strict=True):
        assert episode["prompt"] == f"pick up block {i}"
        np.testing.assert_array_equal(episode["frames"], truth[f"frames_{i}"])
        np.testing.assert_array_equal(episode["joints"], truth[f"state_{i}"])
        np.testing.assert_array_equal(episode["actions"], truth[f"action_{i}"])
