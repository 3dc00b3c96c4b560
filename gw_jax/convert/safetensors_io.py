"""Reading and writing (sharded) safetensors checkpoints as flat dicts of numpy arrays.

Layouts: one ``NAME.safetensors``, or shards listed in ``NAME.safetensors.index.json``
(``{"weight_map": {key: shard_file}}``) as written by diffusers/transformers. ``save_flat`` records the
files' SHA-256s in ``SHA256SUMS``; ``load_flat`` checks them where that file exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gw_jax.convert.checksums import record_checksums, verify_checksums
from gw_jax.errors import UserInputError


def find_weights(directory: Path, stem: str) -> tuple[list[Path], dict[str, Path]]:
    """Returns (files, key -> file) for ``stem`` in ``directory`` (single file, index, or any *.safetensors)."""
    single = directory / f"{stem}.safetensors"
    index = directory / f"{stem}.safetensors.index.json"
    if single.is_file():
        return [single], {}
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise UserInputError(f"{index}: not a safetensors index ({e})") from e
        files = sorted({directory / name for name in weight_map.values()})
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise UserInputError(f"{index}: lists shard files that do not exist: {missing}")
        return files, {key: directory / name for key, name in weight_map.items()}
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise UserInputError(f"{directory}: no {stem}.safetensors, no index, no *.safetensors files")
    return files, {}


_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def read_safetensors(file: Path) -> dict[str, np.ndarray]:
    """Parses one safetensors file (8-byte header size, JSON header, raw little-endian data).

    Read directly with numpy (memory-mapped) so bfloat16 checkpoints load without torch.
    """
    import ml_dtypes

    try:
        with open(file, "rb") as f:
            header_size = int.from_bytes(f.read(8), "little")
            if not 0 < header_size <= min(file.stat().st_size - 8, 100 * 2**20):
                raise ValueError(f"header size {header_size} does not fit the file")
            header = json.loads(f.read(header_size))
        data = np.memmap(file, dtype=np.uint8, mode="r", offset=8 + header_size)
        tensors = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            name = _DTYPES[info["dtype"]]
            dtype = ml_dtypes.bfloat16 if name == "bfloat16" else np.dtype(name)
            begin, end = info["data_offsets"]
            tensors[key] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"])
        return tensors
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserInputError(f"{file}: unreadable safetensors file ({type(e).__name__}: {e})") from e


def load_flat(directory: str | Path, stem: str = "diffusion_pytorch_model", *,
              verify: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """All tensors of a (sharded) checkpoint, and the file each key came from (for error messages).
    ``verify``: check the files against the folder's SHA256SUMS, when it has one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserInputError(f"{directory}: checkpoint directory not found")
    files, _ = find_weights(directory, stem)
    if verify:
        verify_checksums(directory, files)
    tensors, origin = {}, {}
    for file in files:
        for key, value in read_safetensors(file).items():
            tensors[key] = value
            origin[key] = file
    return tensors, origin


def save_flat(tensors: dict[str, np.ndarray], directory: str | Path, stem: str = "diffusion_pytorch_model",
              max_shard_bytes: int | None = None) -> list[Path]:
    """Writes one file, or shards of at most ``max_shard_bytes`` plus an index. Atomic per file."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    keys = sorted(tensors)
    shards: list[list[str]] = [[]]
    size = 0
    for key in keys:
        nbytes = tensors[key].nbytes
        if max_shard_bytes and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    written = []
    if len(shards) == 1:
        names = [f"{stem}.safetensors"]
    else:
        names = [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    for name, shard_keys in zip(names, shards):
        tmp = directory / (name + ".tmp")
        save_file({k: np.ascontiguousarray(tensors[k]) for k in shard_keys}, str(tmp), metadata={"format": "pt"})
        tmp.replace(directory / name)
        written.append(directory / name)
    if len(shards) > 1:
        index = {"metadata": {"total_size": int(sum(t.nbytes for t in tensors.values()))},
                 "weight_map": {k: name for name, ks in zip(names, shards) for k in ks}}
        (directory / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2))
    record_checksums(directory, written)
    return written
