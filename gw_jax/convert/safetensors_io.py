"""Reading and writing (sharded) safetensors checkpoints as flat dicts of numpy arrays.

Layouts: one ``NAME.safetensors``, or shards listed in ``NAME.safetensors.index.json``
(``{"weight_map": {key: shard_file}}``) as written by diffusers/transformers. Files are read and written
by ``safetensors.numpy``; the shard index is ours (safetensors itself has none), and so are the files'
SHA-256s: ``save_flat`` records them in ``SHA256SUMS``, ``load_flat`` checks them where that file exists.

:class:`SafetensorsReader` reads *slices* of tensors on demand (``safe_open``, one file open at a time), so a
large checkpoint goes onto devices shard by shard without a full host copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import safetensors
import safetensors.numpy

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


def read_safetensors(file: Path) -> dict[str, np.ndarray]:
    """All tensors of one safetensors file as numpy arrays (safetensors' own loader; bfloat16 through
    ml_dtypes, so bfloat16 checkpoints load without torch)."""
    try:
        return safetensors.numpy.load_file(file)
    except (OSError, ValueError, safetensors.SafetensorError) as e:
        raise UserInputError(f"{file}: unreadable safetensors file ({type(e).__name__}: {e})") from e


class SafetensorsReader:
    """Key -> shape/dtype from the file headers, and slices of one tensor read on demand.

    ``reader.read(key, (slice(0, 4), slice(None)))`` returns that numpy slice only; files are opened per
    read and closed again, so no memory map (and no page of it) outlives the read.
    """

    def __init__(self, files: Sequence[Path]):
        self.files = list(files)
        self.origin: dict[str, Path] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for file in self.files:
            try:
                with safetensors.safe_open(file, framework="numpy") as f:
                    for key in f.keys():
                        self.origin[key] = file
                        self.shapes[key] = tuple(f.get_slice(key).get_shape())
            except (OSError, ValueError, safetensors.SafetensorError) as e:
                raise UserInputError(f"{file}: unreadable safetensors file ({type(e).__name__}: {e})") from e

    @classmethod
    def open(cls, directory: str | Path, stem: str = "diffusion_pytorch_model", *,
             verify: bool = True) -> "SafetensorsReader":
        """The checkpoint in ``directory`` (checked against its SHA256SUMS, when it has one)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise UserInputError(f"{directory}: checkpoint directory not found")
        files = find_weights(directory, stem)[0]
        if verify:
            verify_checksums(directory, files)
        return cls(files)

    def keys(self) -> list[str]:
        return list(self.shapes)

    def read(self, key: str, index: tuple = ()) -> np.ndarray:
        with safetensors.safe_open(self.origin[key], framework="numpy") as f:
            tensor = f.get_slice(key)
            return np.asarray(tensor[index] if index else tensor[:])


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
    for name, shard_keys in zip(names, shards, strict=True):
        tmp = directory / (name + ".tmp")
        safetensors.numpy.save_file({k: np.ascontiguousarray(tensors[k]) for k in shard_keys}, str(tmp),
                                    metadata={"format": "pt"})
        tmp.replace(directory / name)
        written.append(directory / name)
    if len(shards) > 1:
        index = {"metadata": {"total_size": int(sum(t.nbytes for t in tensors.values()))},
                 "weight_map": {k: name for name, ks in zip(names, shards, strict=True) for k in ks}}
        (directory / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2))
    record_checksums(directory, written)
    return written
