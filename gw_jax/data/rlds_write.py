"""Writing an RLDS dataset in TensorFlow Datasets' on-disk layout, without TensorFlow.

    write_rlds(out_root, "gw_engine", episodes)   # -> out_root/gw_engine/1.0.0/{features.json, dataset_info.json,
                                                  #    gw_engine-train.tfrecord-0000i-of-0000n}
    tfds.builder_from_directory("out_root/gw_engine/1.0.0").as_dataset(split="train")   # where TF is installed

Each episode: ``frames`` uint8 (T, H, W, 3), ``state`` float32 (T, S), ``action`` float32 (T, A), ``prompt``
str and ``metadata`` {name: str | float | 1-D float array}. The layout is the one ``gw_jax.data.rlds`` reads
(and TFDS writes, see tests/fixtures/tfds_rlds): one ``tf.train.Example`` per episode, per-step features
flattened into lists under ``steps/...``, images PNG-encoded, booleans as int64, text as bytes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from gw_jax.data.records import RecordWriter, encode_example

VERSION = "1.0.0"


def _tensor(shape, dtype="float32") -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
            "tensor": {"dtype": dtype, "encoding": "none", "shape": {"dimensions": [str(d) for d in shape]}}}


def _scalar(dtype) -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.scalar.Scalar",
            "tensor": {"dtype": dtype, "encoding": "none", "shape": {}}}


def _text() -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.text_feature.Text", "text": {}}


def _dict(features: dict) -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
            "featuresDict": {"features": features}}


def features_json(image_shape, state_dim: int, action_dim: int, metadata: dict) -> dict:
    """The feature tree (TFDS's protobuf JSON) of the episodes' fields."""
    image = {"pythonClassName": "tensorflow_datasets.core.features.image_feature.Image",
             "image": {"dtype": "uint8", "shape": {"dimensions": [str(d) for d in image_shape]},
                       "encodingFormat": "png"}}
    step = _dict({"observation": _dict({"image": image, "state": _tensor((state_dim,))}),
                  "action": _tensor((action_dim,)), "language_instruction": _text(),
                  "is_first": _scalar("bool"), "is_last": _scalar("bool"), "is_terminal": _scalar("bool"),
                  "reward": _scalar("float32"), "discount": _scalar("float32")})
    meta = {k: _text() if isinstance(v, str) else _tensor(np.shape(v)) for k, v in metadata.items()}
    return _dict({"steps": {"pythonClassName": "tensorflow_datasets.core.features.dataset_feature.Dataset",
                            "sequence": {"feature": step, "length": "-1"}},
                  "episode_metadata": _dict(meta)})


def _png(frame) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def episode_example(episode: dict) -> bytes:
    frames = np.asarray(episode["frames"], np.uint8)
    steps = len(frames)
    last = [t == steps - 1 for t in range(steps)]
    features = {
        "steps/observation/image": [_png(f) for f in frames],
        "steps/observation/state": [float(v) for v in np.asarray(episode["state"], np.float32).reshape(-1)],
        "steps/action": [float(v) for v in np.asarray(episode["action"], np.float32).reshape(-1)],
        "steps/language_instruction": [episode["prompt"]] * steps,
        "steps/is_first": [int(t == 0) for t in range(steps)],
        "steps/is_last": [int(x) for x in last],
        "steps/is_terminal": [int(x) for x in last],
        "steps/reward": [float(x) for x in last],
        "steps/discount": [1.0] * steps,
    }
    for key, value in episode.get("metadata", {}).items():
        features[f"episode_metadata/{key}"] = value if isinstance(value, str) else [
            float(v) for v in np.asarray(value, np.float32).reshape(-1)]
    return encode_example(features)


def write_rlds(out_root: str | Path, name: str, episodes: list[dict], *, shards: int = 1) -> Path:
    """Writes the ``train`` split; returns the version folder (what ``builder_from_directory`` takes)."""
    if not episodes:
        raise ValueError("write_rlds: no episodes")
    folder = Path(out_root) / name / VERSION
    folder.mkdir(parents=True, exist_ok=True)
    first = episodes[0]
    features = features_json(np.shape(first["frames"])[1:], np.shape(first["state"])[1],
                             np.shape(first["action"])[1], first.get("metadata", {}))
    (folder / "features.json").write_text(json.dumps(features, indent=1))
    shards = max(1, min(shards, len(episodes)))
    lengths, sizes = [], 0
    for shard in range(shards):
        path = folder / f"{name}-train.tfrecord-{shard:05d}-of-{shards:05d}"
        part = episodes[shard::shards]
        with RecordWriter(path) as writer:
            for episode in part:
                writer.write(episode_example(episode))
        lengths.append(len(part))
        sizes += path.stat().st_size
    info = {"fileFormat": "tfrecord", "moduleName": "gw_jax.data.rlds_write", "name": name, "version": VERSION,
            "description": "gw-jax engine output: seed episodes and generated variants that passed the gates",
            "splits": [{"filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", "name": "train",
                        "numBytes": str(sizes), "shardLengths": [str(n) for n in lengths]}]}
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=1))
    return folder
