"""Packing episodes (``i.mp4`` + ``i.txt`` [+ ``i.npz``]) into sharded TFRecords with text embeddings.

One record per episode: the mp4 bytes as they are (decoded later, in loader workers), frame count /
size / fps, the prompt, its text embeddings (computed once here, float16, real tokens only) and, when
the npz exists, joints and actions; ``verify(OUT)`` re-reads every shard and record. Files in OUT::

    shard-00000-of-00004.tfrecord   records
    shard-00000-of-00004.json       that shard's manifest: records, offsets, sha256, episodes, inputs, action sums
    index.json                      the dataset: schema, text encoder, shards, skipped inputs, action statistics

``index["actions"]`` (None when no episode has actions): per action dimension the ``mean`` and ``std`` over
every frame of every packed episode, which the loader normalises actions with (``action_stats``).

Each episode's inputs are fingerprinted (SHA-256 of its mp4, npz, prompt and prompt embedding) and the
fingerprints kept in its shard's manifest. A run writes the shards whose inputs changed into
``OUT/.partial/`` (each through a temporary name, its manifest after it) and only once all are written
moves them into place, removes shard files of an earlier layout and writes the index: until then an
earlier complete pack in OUT stays readable, an interrupted run resumes from ``.partial``, and a run that
fails (``--strict``, nothing to pack) leaves OUT as it found it.

RAW and OUT are local folders or ``gs://`` URIs (``gw_jax.storage``); on GCS shards are written straight to
their names under ``.partial/`` (an object appears whole or not at all) and moved into place at the end.
"""

from __future__ import annotations

import hashlib
import io
import json
import re

import numpy as np
from tqdm.auto import tqdm

from gw_jax.convert.checksums import sha256_of
from gw_jax.data.records import CorruptRecordError, RecordWriter, decode_example, encode_example, iter_records
from gw_jax.data.video import decode_video_bytes
from gw_jax.data.workers import imap_unordered
from gw_jax.errors import UserInputError, load_json
from gw_jax.storage import as_path, check_bucket, is_remote, make_output_dir, move, remove_tree, write_json

SCHEMA_VERSION = 1
INDEX_FILE = "index.json"
PARTIAL_DIR = ".partial"  # shards of an unfinished run
MAX_PROMPT_BYTES = 16384  # a prompt file past this is not a prompt (T5's 512 tokens are ~2-3 KB of text)
SHARD_FILE = re.compile(r"shard-\d{5}-of-\d{5}\.(tfrecord|json)(\.tmp)?")
# what `verify` checks every record for
REQUIRED_FIELDS = ("episode", "video", "num_frames", "height", "width", "fps", "prompt", "text_emb", "text_len")


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.tfrecord"


def _natural(stem: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem)]


def find_episodes(raw_dir) -> list[str]:
    """Episode stems (``i`` of ``i.mp4``) in natural order."""
    check_bucket(raw_dir, flag="RAW")
    if not raw_dir.is_dir():
        raise UserInputError(f"{raw_dir}: input folder not found")
    stems = [p.stem for p in raw_dir.glob("*.mp4") if not p.name.endswith(".tmp.mp4")]
    if not stems:
        prompts = len(list(raw_dir.glob("*.txt")))
        raise UserInputError(f"{raw_dir}: no episodes (i.mp4 + i.txt) found"
                             + (f" ({prompts} .txt file(s) without videos)" if prompts else ""))
    return sorted(stems, key=_natural)


def read_prompt(path) -> tuple[str | None, str | None]:
    """(prompt, None) or (None, why the file is not a usable prompt)."""
    if not path.is_file():
        return None, "missing prompt file"
    size = path.stat().length
    if size > MAX_PROMPT_BYTES:
        return None, f"prompt file is {size} bytes, more than {MAX_PROMPT_BYTES} (not a prompt?)"
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        return None, f"prompt is not UTF-8 text (byte {e.start})"
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        return None, "prompt holds binary data (control characters)"
    if not text:
        return None, "empty prompt"
    return text, None


def read_prompts(raw_dir, stems: list[str]) -> tuple[dict[str, str], list[dict]]:
    """(stem -> prompt, skipped): an episode without a usable prompt is skipped, and so is (reported) a
    prompt file without its video."""
    prompts, skipped = {}, []
    for stem in stems:
        path = raw_dir / f"{stem}.txt"
        text, reason = read_prompt(path)
        if reason:
            skipped.append(dict(file=str(path), reason=reason))
        else:
            prompts[stem] = text
    videos = set(stems)
    for orphan in sorted((p for p in raw_dir.glob("*.txt") if p.stem not in videos), key=lambda p: _natural(p.stem)):
        skipped.append(dict(file=str(orphan), reason=f"no video {orphan.stem}.mp4 for this prompt"))
    return prompts, skipped


def fingerprint(raw_dir, stem: str, prompt: str, text_emb: np.ndarray) -> str:
    """SHA-256 over everything an episode's record is made of: mp4 and npz bytes, prompt, embedding."""
    parts = [sha256_of(p) if p.is_file() else "-" for p in (raw_dir / f"{stem}.mp4", raw_dir / f"{stem}.npz")]
    parts += [hashlib.sha256(prompt.encode("utf-8")).hexdigest(), hashlib.sha256(text_emb.tobytes()).hexdigest()]
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()


def _episode_record(raw_dir, stem: str, episode_id: int, prompt: str, text_emb: np.ndarray) -> tuple[bytes, dict]:
    """One Example; raises UserInputError (naming the file) when the video cannot be decoded."""
    video_path = raw_dir / f"{stem}.mp4"
    data = video_path.read_bytes()
    frames, fps = decode_video_bytes(data, where=str(video_path))
    features = dict(episode=episode_id, name=stem, video=data, num_frames=frames.shape[0],
                    height=frames.shape[1], width=frames.shape[2], fps=fps, prompt=prompt,
                    text_emb=text_emb, text_len=len(text_emb))
    npz = raw_dir / f"{stem}.npz"
    if npz.is_file():
        with np.load(io.BytesIO(npz.read_bytes())) as arrays:
            for key in ("joints", "actions"):
                if key in arrays.files:
                    value = np.asarray(arrays[key], np.float32)
                    features[key], features[f"{key}_shape"] = value, list(value.shape)
            if "fps" in arrays.files and not fps:
                features["fps"] = float(arrays["fps"])
    return encode_example(features), features


def add_action_sums(sums: dict | None, features: dict) -> dict | None:
    """Running per-dimension count / sum / sum of squares of the episodes' actions (float64), for the index."""
    actions = features.get("actions")
    if actions is None or actions.ndim != 2 or not len(actions):
        return sums
    a = actions.astype(np.float64)
    if sums is None:
        sums = dict(count=0, sum=[0.0] * a.shape[1], sumsq=[0.0] * a.shape[1], episodes=0)
    if len(sums["sum"]) != a.shape[1]:
        raise UserInputError(f"episode {features['name']}: {a.shape[1]} action values per frame, other episodes "
                             f"have {len(sums['sum'])}")
    sums["count"] += len(a)
    sums["episodes"] += 1
    sums["sum"] = (np.asarray(sums["sum"]) + a.sum(0)).tolist()
    sums["sumsq"] = (np.asarray(sums["sumsq"]) + np.square(a).sum(0)).tolist()
    return sums


def action_stats(manifests: list[dict]) -> dict | None:
    """Mean / std per action dimension over every packed frame (None: no actions); std floored at 1e-6."""
    parts = [m["action_sums"] for m in manifests if m.get("action_sums")]
    if not parts:
        return None
    dims = {len(p["sum"]) for p in parts}
    if len(dims) != 1:
        raise UserInputError(f"episodes disagree on the number of action values per frame: {sorted(dims)}")
    count = sum(p["count"] for p in parts)
    mean = np.sum([p["sum"] for p in parts], axis=0) / count
    var = np.maximum(np.sum([p["sumsq"] for p in parts], axis=0) / count - np.square(mean), 0.0)
    return dict(dim=int(dims.pop()), mean=mean.tolist(), std=np.maximum(np.sqrt(var), 1e-6).tolist(),
                frames=int(count), episodes=int(sum(p["episodes"] for p in parts)))


def episodes_action_stats(actions, names) -> dict | None:
    """``action_stats`` of in-memory episodes: ``actions`` a list of (F, A) arrays, ``names`` one per episode
    (for the error when their widths differ)."""
    sums = None
    for episode_actions, name in zip(actions, names, strict=True):
        sums = add_action_sums(sums, dict(actions=episode_actions, name=name))
    return action_stats([dict(action_sums=sums)])


def pack_shard(job: dict) -> dict:
    """Writes one shard into ``job["dir"]`` (through a temporary file) and returns its manifest."""
    raw_dir, out_dir = as_path(job["raw_dir"]), as_path(job["dir"])
    final = out_dir / job["file"]
    tmp = final if is_remote(final) else final.with_name(final.name + ".tmp")  # GCS objects appear whole
    skipped, episodes, sums = [], [], None
    with RecordWriter(tmp) as writer:
        for episode_id, stem, _ in job["inputs"]:
            try:
                record, features = _episode_record(raw_dir, stem, episode_id, job["prompts"][stem], job["text"][stem])
            except UserInputError as e:
                skipped.append(dict(file=str(raw_dir / f"{stem}.mp4"), reason=str(e).split(": ", 1)[-1]))
                continue
            writer.write(record)
            episodes.append(stem)
            sums = add_action_sums(sums, features)
    manifest = dict(file=job["file"], records=len(writer.offsets), offsets=writer.offsets,
                    bytes=writer.size, sha256=writer.sha256, episodes=episodes, inputs=job["inputs"],
                    text_encoder=job["text_encoder"], skipped=skipped, schema_version=SCHEMA_VERSION,
                    action_sums=sums)
    if tmp != final:
        move(tmp, final)
    write_json(final.with_suffix(".json"), manifest)
    return manifest


def _done_manifest(directory, job: dict) -> dict | None:
    """The manifest in ``directory`` when that shard was packed from exactly these inputs and is intact."""
    final = directory / job["file"]
    try:
        manifest = json.loads(final.with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same_inputs = (manifest.get("inputs") == job["inputs"] and manifest.get("text_encoder") == job["text_encoder"]
                   and manifest.get("schema_version") == SCHEMA_VERSION and "action_sums" in manifest)
    if same_inputs and final.is_file() and final.stat().length == manifest["bytes"] \
            and sha256_of(final) == manifest["sha256"]:
        return manifest
    return None


def _discard(out_dir, created: bool) -> None:
    """After a failed run: this run's shards go; so does OUT itself when this run created it."""
    remove_tree(out_dir if created else out_dir / PARTIAL_DIR)


def _commit(out_dir, jobs: list[dict], pending: list[str]) -> None:
    """Moves the shards written into .partial into place and removes shard files the new layout lacks."""
    partial = out_dir / PARTIAL_DIR
    keep = {name for job in jobs for name in (job["file"], _manifest_name(job["file"]))}
    stale = [p for p in out_dir.iterdir() if SHARD_FILE.fullmatch(p.name) and p.name not in keep]
    if pending or stale:
        (out_dir / INDEX_FILE).unlink(missing_ok=True)  # the dataset is incomplete until the index is back
    for file in pending:  # the records first, then the manifest that vouches for them
        move(partial / file, out_dir / file)
        move(partial / _manifest_name(file), out_dir / _manifest_name(file))
    for path in stale:
        path.unlink(missing_ok=True)
    remove_tree(partial)


def _manifest_name(shard_file: str) -> str:
    return shard_file.removesuffix(".tfrecord") + ".json"


def pack(raw_dir, out_dir, *, text_encoder, shards: int = 1, workers: int = 1, strict: bool = False,
         progress: bool = True, skipped_before: list[dict] = ()) -> dict:
    """Packs RAW into OUT and returns the index. ``text_encoder``: ``encode(prompts) -> (emb, mask)``;
    ``skipped_before``: inputs an earlier stage (an import) skipped, counted in the index too."""
    raw_dir, out_dir = as_path(raw_dir, flag="RAW"), as_path(out_dir, flag="OUT")
    stems = find_episodes(raw_dir)
    if shards < 1:
        raise UserInputError("--shards must be at least 1")
    prompts, skipped = read_prompts(raw_dir, stems)
    skipped = list(skipped_before) + skipped
    if strict and skipped:
        raise UserInputError(f"--strict: {skipped[0]['file']}: {skipped[0]['reason']} "
                             f"({len(skipped)} bad input(s); nothing written)")
    kept = [s for s in stems if s in prompts]
    if not kept:
        raise _nothing_to_pack(raw_dir, skipped)
    created = make_output_dir(out_dir, flag="OUT")
    emb, mask = text_encoder.encode([prompts[s] for s in kept])
    lengths = mask.sum(1).astype(int)
    text = {s: emb[i, :lengths[i]].astype(np.float16) for i, s in enumerate(kept)}
    encoder_info = dict(name=getattr(text_encoder, "name", type(text_encoder).__name__),
                        width=int(emb.shape[-1]), max_length=int(emb.shape[1]))
    ids = {s: i for i, s in enumerate(stems)}
    inputs = {s: [ids[s], s, fingerprint(raw_dir, s, prompts[s], text[s])] for s in kept}
    partial = out_dir / PARTIAL_DIR
    parts = [kept[k::shards] for k in range(shards)]
    jobs = [dict(raw_dir=str(raw_dir), dir=str(partial), file=shard_name(k, shards), text_encoder=encoder_info,
                 inputs=[inputs[s] for s in part], prompts={s: prompts[s] for s in part},
                 text={s: text[s] for s in part}) for k, part in enumerate(parts)]
    manifests, pending, todo = {}, [], []
    with tqdm(total=len(kept), desc="pack", unit="episode", disable=not progress) as bar:  # closed on Ctrl-C too
        for job in jobs:
            in_place, earlier_run = _done_manifest(out_dir, job), _done_manifest(partial, job)
            if in_place is None and earlier_run is None:
                todo.append(job)
                continue
            manifests[job["file"]] = in_place or earlier_run
            if in_place is None:
                pending.append(job["file"])
            bar.update(len(job["inputs"]))
        if todo and not is_remote(partial):  # buckets have no folders to make
            partial.mkdir(exist_ok=True)
        for manifest in imap_unordered(pack_shard, todo, workers=workers):
            manifests[manifest["file"]] = manifest
            pending.append(manifest["file"])
            bar.update(len(manifest["inputs"]))
    ordered = [manifests[job["file"]] for job in jobs]
    skipped += [s for m in ordered for s in m["skipped"]]
    if strict and skipped:
        _discard(out_dir, created)
        raise UserInputError(f"--strict: {skipped[0]['file']}: {skipped[0]['reason']} "
                             f"({len(skipped)} bad input(s); nothing written)")
    if not any(m["records"] for m in ordered):
        _discard(out_dir, created)
        raise _nothing_to_pack(raw_dir, skipped)
    _commit(out_dir, jobs, pending)
    index = dict(schema_version=SCHEMA_VERSION, text_encoder=encoder_info, inputs=len(stems),
                 num_records=sum(m["records"] for m in ordered), skipped=skipped,
                 prompts_at_max_length=int((lengths >= encoder_info["max_length"]).sum()),
                 actions=action_stats(ordered),
                 shards=[{k: m[k] for k in ("file", "records", "bytes", "sha256", "offsets", "episodes")}
                         for m in ordered])
    write_json(out_dir / INDEX_FILE, index)
    return index


def _nothing_to_pack(raw_dir, skipped: list[dict]) -> UserInputError:
    first = f"; first: {skipped[0]['file']}: {skipped[0]['reason']}" if skipped else ""
    return UserInputError(f"{raw_dir}: nothing to pack, every episode was skipped ({len(skipped)} bad input(s)"
                          f"{first}); nothing written")


def read_index(packed_dir) -> dict:
    path = as_path(packed_dir) / INDEX_FILE
    index = load_json(path, what="the index a complete `gw-jax pack` writes")
    if not isinstance(index, dict) or not isinstance(index.get("shards"), list):
        raise UserInputError(f"{path}: not a `gw-jax pack` index (no shard list); re-run `gw-jax pack`")
    if index.get("schema_version") != SCHEMA_VERSION:
        raise UserInputError(f"{path}: schema version {index.get('schema_version')}, this build reads "
                             f"{SCHEMA_VERSION}; re-run `gw-jax pack`")
    return index


def verify(packed_dir) -> list[str]:
    """Problems found (empty when the dataset is intact), each naming the shard and the record."""
    packed_dir = as_path(packed_dir)
    index = read_index(packed_dir)
    problems = [] if index.get("num_records") else [f"{packed_dir / INDEX_FILE}: the dataset has no records"]
    listed = {n for shard in index["shards"] for n in (shard["file"], _manifest_name(shard["file"]))}
    strays = [p for p in sorted(packed_dir.iterdir()) if SHARD_FILE.fullmatch(p.name) and p.name not in listed]
    problems += [f"{path}: shard file not in the index (left over from another pack?)" for path in strays]
    for shard in index["shards"]:
        path = packed_dir / shard["file"]
        if not path.is_file():
            problems.append(f"{path}: shard missing")
            continue
        offsets, digest = [], hashlib.sha256()  # the checksum from the same pass (one download from a bucket)
        try:
            for i, (offset, data) in enumerate(iter_records(path, digest=digest)):
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
        elif path.stat().length != shard["bytes"] or digest.hexdigest() != shard["sha256"]:
            problems.append(f"{path}: size or sha256 differs from the index")
    return problems
