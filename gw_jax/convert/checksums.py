"""SHA-256 checksums of weights files (safetensors has none of its own).

``save_flat`` records each file it writes in ``SHA256SUMS`` next to it (the ``sha256sum`` format, so
``sha256sum -c SHA256SUMS`` checks a folder by hand); ``load_flat`` verifies the files it reads against it.
Folders without ``SHA256SUMS`` (e.g. downloaded releases) are read unchecked.

    record_checksums(folder, [folder / "model.safetensors"])
    verify_checksums(folder, files)       # UserInputError naming the file whose bytes changed
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gw_jax.errors import UserInputError
from gw_jax.storage import as_path

CHECKSUM_FILE = "SHA256SUMS"


def sha256_of(path) -> str:
    """The SHA-256 of a local file or ``gs://`` object, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with as_path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(directory) -> dict[str, str]:
    """{file name: sha256} from ``directory/SHA256SUMS`` (empty when there is none)."""
    path = Path(directory) / CHECKSUM_FILE
    if not path.is_file():
        return {}
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            digest, _, name = line.partition("  ")
            if len(digest) != 64 or not name:
                raise UserInputError(f"{path} line {number}: expected '<sha256>  <file name>'")
            sums[name.strip()] = digest.lower()
    return sums


def record_checksums(directory, files) -> None:
    """Adds (or replaces) the SHA-256 of each of ``files`` in ``directory/SHA256SUMS`` (written atomically)."""
    directory = Path(directory)
    sums = read_checksums(directory)
    sums.update({Path(f).name: sha256_of(f) for f in files})
    tmp = directory / (CHECKSUM_FILE + ".tmp")
    tmp.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())))
    tmp.replace(directory / CHECKSUM_FILE)


def verify_checksums(directory, files) -> None:
    """Raises UserInputError naming the first of ``files`` whose SHA-256 differs from ``SHA256SUMS``."""
    sums = read_checksums(directory)
    for file in files:
        expected = sums.get(Path(file).name)
        if expected is not None and sha256_of(file) != expected:
            raise UserInputError(f"{file}: SHA-256 differs from {Path(directory) / CHECKSUM_FILE} (corrupted or "
                                 f"changed since it was written; verify_checksums=False skips the check)")
