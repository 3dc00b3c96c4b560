"""Importing Open X-Embodiment (RLDS) datasets from their TFDS folders, without TensorFlow.

An RLDS dataset prepared by TFDS (e.g. ``gsutil cp -r gs://gresearch/robotics/bridge/0.1.0 DIR/bridge/``)
is a folder ``NAME/[CONFIG/]VERSION/`` holding ``features.json`` (the feature tree, protobuf JSON),
``dataset_info.json`` (splits) and ``NAME-SPLIT.tfrecord-00000-of-000NN`` files of ``tf.train.Example``
records, one per episode. TFDS flattens the tree into keys (``steps/observation/image``) and stores each
per-step feature as one list over the episode: encoded images one bytes entry per step, tensors flattened
step after step, text as bytes, booleans as int64. This module reads that layout with the project's own
TFRecord reader and writes each episode in the seed's layout (``i.mp4``, ``i.txt``, ``i.npz`` with
``actions`` and, where the dataset has a proprioceptive state, ``joints``), which ``gw-jax pack`` then packs.
Both the TFDS folder and the output may be ``gs://`` URIs (e.g. ``--tfds-data-dir gs://gresearch/robotics``).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from typing import Iterator

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from gw_jax.data.records import decode_example, iter_records
from gw_jax.data.sim import write_episode
from gw_jax.errors import UserInputError, load_json
from gw_jax.storage import as_path, is_remote, rglob, write_json

PROMPT_KEYS = ("steps/language_instruction", "steps/observation/natural_language_instruction",
               "episode_metadata/language_instruction")
STATE_KEYS = ("steps/observation/state", "steps/observation/joint_state", "steps/observation/joint_pos",
              "steps/observation/joint_positions", "steps/observation/proprio")


@dataclasses.dataclass(frozen=True)
class Leaf:
    """One flattened feature: ``kind`` is image, tensor or text; ``per_step`` for features under steps/."""
    key: str
    kind: str
    shape: tuple
    per_step: bool
    encoding: str = "none"


def _expand(path, flag: str):
    path = as_path(path, flag=flag)
    return path if is_remote(path) else path.expanduser()


def default_data_dir():
    return _expand(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"), "TFDS_DATA_DIR")


def _version_key(path):
    return [int(p) if p.isdigit() else -1 for p in path.name.split(".")]


def find_dataset_dir(name: str, data_dir=None):
    """NAME (``bridge``, ``bridge/0.1.0``, ``name/config/version``) or a folder path -> the version folder
    holding features.json; without a version, the highest one present."""
    folder = _expand(name, "--from-tfds")
    candidates = [folder] if folder.is_dir() else []
    candidates.append(_expand(data_dir, "--tfds-data-dir") / name if data_dir else default_data_dir() / name)
    for root in candidates:
        if (root / "features.json").is_file():
            return root
        versions = sorted((p.parent for p in rglob(root, "features.json")), key=_version_key)
        if versions:
            return versions[-1]
    where = ", ".join(str(c) for c in candidates)
    raise UserInputError(f"--from-tfds {name}: no TFDS dataset (a folder with features.json) under {where}; "
                         "copy one there (e.g. gsutil cp -r gs://gresearch/robotics/<name>/<version> "
                         "<data dir>/<name>/) or pass --tfds-data-dir")


def flatten_features(tree: dict, prefix: str = "", per_step: bool = False) -> list[Leaf]:
    """features.json (protobuf JSON of TFDS's feature tree) -> the leaves as TFDS names them in Examples."""
    leaves = []
    if "featuresDict" in tree:
        for name, sub in tree["featuresDict"]["features"].items():
            leaves += flatten_features(sub, f"{prefix}{name}/", per_step)
    elif "sequence" in tree:  # tfds Dataset / Sequence: every leaf below gains a leading step axis
        leaves += flatten_features(tree["sequence"]["feature"], prefix, True)
    elif "image" in tree:
        info = tree["image"]
        leaves.append(Leaf(prefix[:-1], "image", _shape(info), per_step, info.get("encodingFormat", "png")))
    elif "text" in tree:
        leaves.append(Leaf(prefix[:-1], "text", (), per_step))
    elif "tensor" in tree:
        info = tree["tensor"]
        kind = "text" if info.get("dtype") == "string" else "tensor"
        leaves.append(Leaf(prefix[:-1], kind, _shape(info), per_step, info.get("encoding", "none")))
    return leaves


def _shape(info: dict) -> tuple:
    return tuple(int(d) for d in info.get("shape", {}).get("dimensions", []))


@dataclasses.dataclass
class RldsDataset:
    """An RLDS dataset folder: its leaves, split files and the keys chosen for video, prompt, actions."""
    path: object  # epath.Path: a local folder or a gs:// URI
    leaves: dict[str, Leaf]
    files: list
    image_key: str
    prompt_key: str | None
    action_keys: list[str]
    state_key: str | None

    @classmethod
    def open(cls, path, *, split: str = "train", image_key: str | None = None) -> "RldsDataset":
        features = load_json(path / "features.json", what="a TFDS features.json")
        leaves = {leaf.key: leaf for leaf in flatten_features(features)}
        files = sorted(p for p in path.glob(f"*-{split}.tfrecord*") if not p.name.endswith(".tmp"))
        if not files and any(path.glob(f"*-{split}.array_record*")):
            raise UserInputError(f"{path}: split {split!r} is stored as array_record; only TFRecord datasets "
                                 "(as Open X-Embodiment ships them) are read")
        if not files:
            splits = sorted({m.group(1) for p in path.glob("*.tfrecord*")
                             if (m := re.search(r"-([^-.]+)\.tfrecord", p.name))})
            raise UserInputError(f"{path}: no TFRecord files for split {split!r} (splits here: {splits or 'none'}; "
                                 "--split chooses one)")
        images = [k for k, leaf in leaves.items() if leaf.kind == "image" and leaf.per_step]
        if image_key is None:
            if not images:
                raise UserInputError(f"{path / 'features.json'}: no per-step image feature to make a video from")
            image_key = images[0]
        elif image_key not in images:
            raise UserInputError(f"--image-key {image_key}: not a per-step image of {path.name}; "
                                 f"images: {images}")
        prompt_key = next((k for k in PROMPT_KEYS if k in leaves and leaves[k].kind == "text"), None)
        action_keys = sorted(k for k, leaf in leaves.items() if leaf.per_step and leaf.kind == "tensor"
                             and (k == "steps/action" or k.startswith("steps/action/")))
        state_key = next((k for k in STATE_KEYS if k in leaves and leaves[k].kind == "tensor"), None)
        return cls(path, leaves, files, image_key, prompt_key, action_keys, state_key)

    def episodes(self) -> Iterator[tuple[str, dict]]:
        """(``file:record``, raw feature lists) for every record of the split, in file order."""
        for file in self.files:
            for number, (_, data) in enumerate(iter_records(file)):
                yield f"{file.name}:{number}", decode_example(data)

    def decode(self, where: str, raw: dict) -> dict:
        """One episode's features -> frames (T, H, W, 3) uint8, prompt (str, may be empty), actions (T, A),
        joints (T, S) or None; a malformed episode is a UserInputError naming ``where``."""
        encoded = raw.get(self.image_key, [])
        if not encoded:
            raise UserInputError(f"{where}: no frames under {self.image_key}")
        try:
            frames = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in encoded])
        except Exception as e:
            raise UserInputError(f"{where}: undecodable image in {self.image_key} ({type(e).__name__}: {e})") from e
        steps = len(frames)
        prompt = ""
        if self.prompt_key and raw.get(self.prompt_key):
            prompt = next((t.decode("utf-8", "replace").strip() for t in raw[self.prompt_key] if t.strip()), "")
        actions = [self._per_step(where, raw, k, steps) for k in self.action_keys]
        joints = self._per_step(where, raw, self.state_key, steps) if self.state_key else None
        return dict(frames=frames, prompt=prompt, joints=joints,
                    actions=np.concatenate(actions, axis=1) if actions else np.zeros((steps, 0), np.float32))

    def _per_step(self, where: str, raw: dict, key: str, steps: int) -> np.ndarray:
        leaf = self.leaves[key]
        if leaf.encoding != "none":
            raise UserInputError(f"{where}: {key} uses tensor encoding {leaf.encoding!r}; only 'none' is read")
        values = np.asarray(raw.get(key, []), np.float32)  # floats, or bools / ints stored as int64
        width = int(np.prod(leaf.shape)) if leaf.shape else 1
        if values.size != steps * width:
            raise UserInputError(f"{where}: {key} holds {values.size} values, expected {steps} steps x {width}")
        return values.reshape(steps, width)

    def describe(self) -> dict:
        return dict(path=str(self.path), files=len(self.files), video=self.image_key, prompt=self.prompt_key,
                    actions=self.action_keys, joints=self.state_key)


def import_rlds(name: str, raw_dir, *, data_dir=None, split: str = "train",
                image_key: str | None = None, fps: float = 10.0, max_episodes: int | None = None,
                progress: bool = True) -> dict:
    """Writes the split's episodes into RAW_DIR in the seed's layout (resumable: complete episodes are
    kept). Episodes without frames or with undecodable ones are skipped and listed; an episode without a
    prompt gets an empty ``i.txt``, which ``pack`` reports and skips like any other bad input."""
    dataset = RldsDataset.open(find_dataset_dir(name, data_dir), split=split, image_key=image_key)
    raw_dir = as_path(raw_dir)
    if not is_remote(raw_dir):
        raw_dir.mkdir(parents=True, exist_ok=True)
    skipped, written = [], 0
    bar = tqdm(desc=f"import {os.path.basename(name.rstrip('/'))}", unit="episode", total=max_episodes,
               disable=not progress)
    for index, (where, raw) in enumerate(dataset.episodes()):
        if max_episodes is not None and index >= max_episodes:
            break
        bar.update()
        if (raw_dir / f"{index}.mp4").is_file() and (raw_dir / f"{index}.npz").is_file():
            written += 1
            continue
        try:
            episode = dataset.decode(where, raw)
        except UserInputError as e:
            skipped.append(dict(file=where, reason=str(e).split(": ", 1)[-1]))
            continue
        arrays = dict(frames=episode["frames"], prompt=episode["prompt"], fps=float(fps),
                      actions=episode["actions"], source=where)
        if episode["joints"] is not None:
            arrays["joints"] = episode["joints"]
        write_episode(raw_dir, index, arrays)
        written += 1
    bar.close()
    summary = dict(dataset.describe(), split=split, episodes=written, skipped=skipped, fps=fps)
    write_json(raw_dir / "rlds_import.json", summary)
    return summary
