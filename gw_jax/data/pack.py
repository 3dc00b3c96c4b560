"""Packing episodes (``i.mp4`` + ``i.txt`` [+ ``i.npz``]) into sharded TFRecords with text embeddings.

One record per episode: the mp4 bytes as they are (decoded later, in loader workers), frame count /
size / fps, the prompt, its text embeddings (computed once here, float16, real tokens only) and, when
the npz exists, joints and actions; ``verify(OUT)`` re-reads every shard and record. Files in OUT::

    shard-00000-of-00004.tfrecord   records
    shard-00000-of-00004.json       that shard's manifest: records, offsets, sha256, episodes
    index.json                      the dataset: schema, text encoder, shards, skipped inputs

A shard's manifest is written after its records and the index after every shard, each through a
temporary name, so a crash leaves nothing that looks complete; a re-run keeps the shards whose manifest
and checksum agree with their inputs and redoes the rest.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import re
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gw_jax.data.records import CorruptRecordError, RecordWriter, decode_example, encode_example, iter_records
from gw_jax.data.video import decode_video_bytes
from gw_jax.errors import UserInputError, load_json

SCHEMA_VERSION = 1
INDEX_FILE = "index.json"
# what `verify` checks every record for
REQUIRED_FIELDS = ("episode", "video", "num_frames", "height", "width", "fps", "prompt", "text_emb", "text_len")


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.tfrecord"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    tmp.replace(path)


def find_episodes(raw_dir: Path) -> list[str]:
    """Episode stems (``i`` of ``i.mp4``) in natural order."""
    if not raw_dir.is_dir():
        raise UserInputError(f"{raw_dir}: input folder not found")
    stems = [p.stem for p in raw_dir.glob("*.mp4") if not p.name.endswith(".tmp.mp4")]
    if not stems:
        raise UserInputError(f"{raw_dir}: no episodes (i.mp4 + i.txt) found")
    return sorted(stems, key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)])


def read_prompts(raw_dir: Path, stems: list[str]) -> tuple[dict[str, str], list[dict]]:
    """(stem -> prompt, skipped) where a missing or empty prompt file skips its episode."""
    prompts, skipped = {}, []
    for stem in stems:
        path = raw_dir / f"{stem}.txt"
        if not path.is_file():
            skipped.append(dict(file=str(path), reason="missing prompt file"))
            continue
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if not text:
            skipped.append(dict(file=str(path), reason="empty prompt"))
            continue
        prompts[stem] = text
    return prompts, skipped


def _episode_record(raw_dir: Path, stem: str, episode_id: int, prompt: str, text: tuple) -> bytes:
    """One Example; raises UserInputError (naming the file) when the video cannot be decoded."""
    video_path = raw_dir / f"{stem}.mp4"
    data = video_path.read_bytes()
    frames, fps = decode_video_bytes(data, where=str(video_path))
    emb, length = text
    features = dict(episode=episode_id, name=stem, video=data, num_frames=frames.shape[0],
                    height=frames.shape[1], width=frames.shape[2], fps=fps, prompt=prompt,
                    text_emb=emb[:length].astype(np.float16), text_len=int(length))
    npz = raw_dir / f"{stem}.npz"
    if npz.is_file():
        with np.load(npz) as arrays:
            for key in ("joints", "actions"):
                if key in arrays.files:
                    value = np.asarray(arrays[key], np.float32)
                    features[key], features[f"{key}_shape"] = value, list(value.shape)
            if "fps" in arrays.files and not fps:
                features["fps"] = float(arrays["fps"])
    return encode_example(features)


def pack_shard(job: dict) -> dict:
    """Writes one shard (through a temporary file) and returns its manifest."""
    raw_dir, out_dir = Path(job["raw_dir"]), Path(job["out_dir"])
    final = out_dir / job["file"]
    tmp = final.with_name(final.name + ".tmp")
    skipped, episodes = [], []
    with RecordWriter(tmp) as writer:
        for episode_id, stem in job["episodes"]:
            try:
                record = _episode_record(raw_dir, stem, episode_id, job["prompts"][stem], job["text"][stem])
            except UserInputError as e:
                skipped.append(dict(file=str(raw_dir / f"{stem}.mp4"), reason=str(e).split(": ", 1)[-1]))
                continue
            writer.write(record)
            episodes.append(stem)
    manifest = dict(file=job["file"], records=len(writer.offsets), offsets=writer.offsets,
                    bytes=tmp.stat().st_size, sha256=sha256_of(tmp), episodes=episodes,
                    inputs=[stem for _, stem in job["episodes"]], text_encoder=job["text_encoder"],
                    skipped=skipped, schema_version=SCHEMA_VERSION)
    tmp.replace(final)
    write_json_atomic(final.with_suffix(".json"), manifest)
    return manifest


def _shard_is_done(out_dir: Path, job: dict) -> dict | None:
    """The existing manifest when that shard was already packed from the same inputs and is intact."""
    final = out_dir / job["file"]
    try:
        manifest = json.loads(final.with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same_inputs = (manifest.get("inputs") == [stem for _, stem in job["episodes"]]
                   and manifest.get("text_encoder") == job["text_encoder"]
                   and manifest.get("schema_version") == SCHEMA_VERSION)
    if same_inputs and final.is_file() and final.stat().st_size == manifest["bytes"] \
            and sha256_of(final) == manifest["sha256"]:
        return manifest
    return None


def pack(raw_dir, out_dir, *, text_encoder, shards: int = 1, workers: int = 1, strict: bool = False,
         progress: bool = True, skipped_before: list[dict] = ()) -> dict:
    """Packs RAW into OUT and returns the index. ``text_encoder``: ``encode(prompts) -> (emb, mask)``;
    ``skipped_before``: inputs an earlier stage (an import) skipped, counted in the index too."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    stems = find_episodes(raw_dir)
    if shards < 1:
        raise UserInputError("--shards must be at least 1")
    prompts, skipped = read_prompts(raw_dir, stems)
    skipped = list(skipped_before) + skipped
    if strict and skipped:
        raise UserInputError(f"--strict: {skipped[0]['file']}: {skipped[0]['reason']} "
                             f"({len(skipped)} bad input(s); nothing written)")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX_FILE).unlink(missing_ok=True)  # the dataset is incomplete until the index is back
    kept = [s for s in stems if s in prompts]
    emb, mask = text_encoder.encode([prompts[s] for s in kept]) if kept else (np.zeros((0, 1, 1)), np.zeros((0, 1)))
    text = {s: (emb[i], int(mask[i].sum())) for i, s in enumerate(kept)}
    encoder_info = dict(name=getattr(text_encoder, "name", type(text_encoder).__name__),
                        width=int(emb.shape[-1]), max_length=int(emb.shape[1]))
    ids = {s: i for i, s in enumerate(stems)}
    jobs = [dict(raw_dir=str(raw_dir), out_dir=str(out_dir), file=shard_name(k, shards),
                 episodes=[(ids[s], s) for s in kept[k::shards]], prompts=prompts, text=text,
                 text_encoder=encoder_info) for k in range(shards)]
    manifests = {}
    bar = tqdm(total=len(kept), desc="pack", unit="episode", disable=not progress)
    todo = []
    for job in jobs:
        done = _shard_is_done(out_dir, job)
        if done is None:
            todo.append(job)
        else:
            manifests[job["file"]] = done
            bar.update(len(job["episodes"]))
    if workers > 1 and len(todo) > 1:
        with mp.get_context("spawn").Pool(min(workers, len(todo))) as pool:
            for manifest in pool.imap_unordered(pack_shard, todo):
                manifests[manifest["file"]] = manifest
                bar.update(len(manifest["inputs"]))
    else:
        for job in todo:
            manifests[job["file"]] = pack_shard(job)
            bar.update(len(job["episodes"]))
    bar.close()
    ordered = [manifests[job["file"]] for job in jobs]
    skipped += [s for m in ordered for s in m["skipped"]]
    if strict and skipped:
        raise UserInputError(f"--strict: {skipped[0]['file']}: {skipped[0]['reason']} "
                             f"({len(skipped)} bad input(s); no index written)")
    index = dict(schema_version=SCHEMA_VERSION, text_encoder=encoder_info, inputs=len(stems),
                 num_records=sum(m["records"] for m in ordered), skipped=skipped,
                 shards=[{k: m[k] for k in ("file", "records", "bytes", "sha256", "offsets", "episodes")}
                         for m in ordered])
    write_json_atomic(out_dir / INDEX_FILE, index)
    return index


def read_index(packed_dir) -> dict:
    path = Path(packed_dir) / INDEX_FILE
    index = load_json(path, what="the index of a complete `gw-jax pack` output")
    if index.get("schema_version") != SCHEMA_VERSION:
        raise UserInputError(f"{path}: schema version {index.get('schema_version')}, this build reads "
                             f"{SCHEMA_VERSION}; re-run `gw-jax pack`")
    return index


def verify(packed_dir) -> list[str]:
    """Problems found (empty when the dataset is intact), each naming the shard and the record."""
    packed_dir = Path(packed_dir)
    index = read_index(packed_dir)
    problems = []
    for shard in index["shards"]:
        path = packed_dir / shard["file"]
        if not path.is_file():
            problems.append(f"{path}: shard missing")
            continue
        offsets = []
        try:
            for i, (offset, data) in enumerate(iter_records(path)):
                offsets.append(offset)
                missing = [k for k in REQUIRED_FIELDS if k not in decode_example(data)]
                if missing:
                    problems.append(f"{path} record {i}: missing fields {missing}")
        except CorruptRecordError as e:
            problems.append(str(e))
            continue
        except Exception as e:  # an undecodable protobuf
            problems.append(f"{path} record {len(offsets) - 1}: not a tf.train.Example ({e})")
            continue
        if offsets != shard["offsets"]:
            problems.append(f"{path}: {len(offsets)} records found, the index lists {shard['records']}")
        elif path.stat().st_size != shard["bytes"] or sha256_of(path) != shard["sha256"]:
            problems.append(f"{path}: size or sha256 differs from the index")
    return problems
