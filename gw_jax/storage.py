"""Local paths and ``gs://`` URIs through one path library (``etils.epath``, the one Orbax and Grain use).

Every path a user gives goes through :func:`as_path` (a workdir, packed data, raw episodes, ``--out`` /
``--json`` files), so ``gs://bucket/run`` stays a bucket URI instead of turning into a local ``gs:/bucket/run``
folder the way ``pathlib.Path`` would have it::

    workdir = as_path("gs://my-bucket/run1")          # epath.Path; local paths come back as local epath paths
    make_output_dir(workdir, flag="--workdir")        # one line (UserInputError) when the bucket is missing...
    write_text(workdir / "notes.json", text)          # atomic locally (temp + rename); one object write on GCS
    chunks = read_ranges(shard, [(0, 100), (100, 250)])  # byte ranges, fetched concurrently from a bucket

Cloud Storage goes through gcsfs (fsspec). Its listings cache is off: a long run must see the objects another
process or host wrote (a resumed run's checkpoints), which a cached listing hides. Only ``gs://`` is supported;
other schemes (``s3://``, ``foo://``) and the one-slash typo ``gs:/bucket`` are refused in one line.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile
from typing import Iterable

import fsspec
from etils import epath

from gw_jax.errors import UserInputError

# Before any gcsfs instance exists (epath and Orbax cache theirs): never trust a cached listing.
fsspec.config.conf.setdefault("gcs", {}).setdefault("use_listings_cache", False)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
SUPPORTED_SCHEMES = ("gs",)
CREDENTIALS_HINT = "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"


def is_remote(path) -> bool:
    """Whether ``path`` names an object store location (``gs://...``) rather than a local file."""
    return _SCHEME.match(os.fspath(path)) is not None


def as_path(path, *, flag: str = "") -> epath.Path:
    """A user's path as an ``epath.Path``: a local path as given, or a ``gs://BUCKET/...`` URI.

    ``flag`` names the argument in the one-line error for an unsupported scheme or a mistyped URI."""
    text = os.fspath(path)
    where = f"{flag} {text}" if flag else text
    match = _SCHEME.match(text)
    if match and match.group(1).lower() not in SUPPORTED_SCHEMES:
        raise UserInputError(f"{where}: unsupported URI scheme {match.group(1)}:// "
                             "(use a local path or gs://BUCKET/...)")
    if re.match(r"^gs:/(?!/)", text, re.IGNORECASE):
        raise UserInputError(f"{where}: did you mean gs://{text[4:].lstrip('/')}?")
    if match and not text[len(match.group(0)):].split("/")[0]:
        raise UserInputError(f"{where}: no bucket name (expected gs://BUCKET/...)")
    if match and match.group(1) != "gs":  # GS://, Gs:// -> the form gcsfs and tensorstore accept
        text = "gs://" + text[len(match.group(0)):]
    return epath.Path(text)


def local_path(path, *, flag: str, command: str) -> epath.Path:
    """For commands that read and write local files only: a ``gs://`` URI is one line naming the flag."""
    path = as_path(path, flag=flag)
    if is_remote(path):
        raise UserInputError(f"{flag} {path}: `gw-jax {command}` works on local folders only "
                             "(copy the data with `gcloud storage cp -r` first)")
    return path


def local_args(args, flags: dict[str, str], *, command: str) -> None:
    """``local_path`` for each argparse attribute in ``flags`` (attribute -> flag) that was given, in place."""
    for attribute, flag in flags.items():
        value = getattr(args, attribute, None)
        if value is not None:
            setattr(args, attribute, os.fspath(local_path(value, flag=flag, command=command)))


def absolute(path) -> epath.Path:
    """A local path made absolute (what Orbax wants); a URI as it is (``absolute()`` would make it local)."""
    path = as_path(path)
    return path if is_remote(path) else path.absolute()


def native(path):
    """A local path as a ``pathlib.Path`` (what callers of a function that returned one expect), a URI as an
    ``epath.Path``."""
    path = as_path(path)
    return path if is_remote(path) else pathlib.Path(os.fspath(path))


def rglob(root, name: str) -> list[epath.Path]:
    """Files called ``name`` anywhere under ``root`` (epath refuses ``**`` patterns: one listing per folder
    on GCS; fsspec lists a bucket prefix recursively in one go)."""
    root = as_path(root)
    if is_remote(root):
        fs, base = fsspec.core.url_to_fs(os.fspath(root))
        return sorted(epath.Path("gs://" + p) for p in fs.glob(f"{base.rstrip('/')}/**/{name}"))
    return sorted(epath.Path(p) for p in pathlib.Path(os.fspath(root)).rglob(name))


def bucket_of(path) -> str:
    return os.fspath(path)[len("gs://"):].split("/")[0]


def check_bucket(path, *, flag: str = "") -> None:
    """For ``gs://`` paths: credentials found and the bucket listable, else one line (UserInputError).

    Fast where the libraries are slow to fail (gcsfs retries an unreachable endpoint for a minute; an
    Orbax save to a missing bucket fails inside its async thread). A bucket that passed is not asked again."""
    if is_remote(path) and bucket_of(path) not in _REACHABLE:
        _check_bucket(bucket_of(path), f"{flag} {path}" if flag else os.fspath(path))
        _REACHABLE.add(bucket_of(path))


_REACHABLE: set[str] = set()


def _check_bucket(bucket: str, where: str) -> None:
    from google.api_core import exceptions as api_errors
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):  # a local emulator (tests): anonymous
        client = storage.Client()
    else:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, project = google.auth.default()
        except DefaultCredentialsError:
            raise UserInputError(f"{where}: no Google Cloud credentials ({CREDENTIALS_HINT})") from None
        client = storage.Client(credentials=credentials, project=project)
    try:  # objects.list needs only storage.objects.list; buckets.get would need more than object roles give
        list(client.list_blobs(bucket, max_results=1, timeout=20, retry=None))
    except api_errors.NotFound:
        raise UserInputError(f"{where}: bucket gs://{bucket} does not exist") from None
    except (api_errors.Forbidden, api_errors.Unauthorized) as e:
        reason = (getattr(e, "message", "") or str(e)).splitlines()[0]
        raise UserInputError(f"{where}: access to gs://{bucket} denied ({reason}; {CREDENTIALS_HINT})") from None
    except Exception as e:  # DNS, connection refused, timeout
        raise UserInputError(f"{where}: cannot reach Cloud Storage ({type(e).__name__})") from None


def check_output_dir(path, *, flag: str) -> None:
    """Raises UserInputError (one line naming ``flag``) when ``path`` cannot be a writable folder: a file is in
    the way, a parent is a file, the nearest existing folder is not writable, or (``gs://``) the bucket is
    missing or out of reach. Creates nothing."""
    path = as_path(path, flag=flag)
    if is_remote(path):
        check_bucket(path, flag=flag)
        if path.is_file():
            raise UserInputError(f"{flag} {path}: exists and is not a folder")
        return
    path = path.absolute()
    if path.exists() and not path.is_dir():
        raise UserInputError(f"{flag} {path}: exists and is not a folder")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserInputError(f"{flag} {path}: cannot be created ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserInputError(f"{flag} {path}: {existing} is not writable")


def make_output_dir(path, *, flag: str) -> bool:
    """Creates the output folder ``path`` (and parents) if needed; returns whether it was created here (on
    ``gs://``: whether nothing was stored under it yet; buckets have no folders to create). Anything in the
    way is one line naming ``flag`` (see :func:`check_output_dir`)."""
    path = as_path(path, flag=flag)
    check_output_dir(path, flag=flag)
    existed = path.is_dir()
    if is_remote(path):
        return not existed
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a read-only file system, a race
        raise UserInputError(f"{flag} {path}: cannot be created ({e.strerror or e})") from None
    return not existed


def check_output_file(path, *, flag: str) -> epath.Path:
    """An output file the user named (``--out``, ``--json``), checked before the work that ends in writing it:
    its folder can be created (or the bucket is there) and no folder is in its way. Creates nothing."""
    path = as_path(path, flag=flag)
    check_output_dir(path.parent if is_remote(path) else path.absolute().parent, flag=flag)
    if path.is_dir():
        raise UserInputError(f"{flag} {path}: is a folder, a file name is expected")
    return path


def write_bytes(path, data: bytes) -> None:
    """Writes a whole file at once: locally through a temporary name and a rename, so a reader never sees half
    of it; on GCS as one object write (already all or nothing; a rename there is a copy and a delete)."""
    path = as_path(path)
    if is_remote(path):
        path.write_bytes(data)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, value) -> None:
    write_text(path, json.dumps(value, indent=1))


def move(src, dst) -> None:
    """Renames a file, replacing ``dst`` (on GCS: a server-side copy and delete)."""
    src, dst = as_path(src), as_path(dst)
    if is_remote(src):
        fs, _ = fsspec.core.url_to_fs(os.fspath(src))
        fs.mv(os.fspath(src), os.fspath(dst))
    else:
        src.replace(dst)


def remove_tree(path) -> None:
    """Removes a folder (a prefix on GCS) and everything under it; nothing there is not an error."""
    path = as_path(path)
    if path.exists():
        path.rmtree()


def read_ranges(path, ranges: Iterable[tuple[int, int]]) -> list[bytes]:
    """The bytes ``[start, end)`` of each range. From a bucket the ranges are fetched concurrently, one
    ranged GET each (gcsfs ``cat_ranges``): what a batch of random-access records costs is one round trip."""
    ranges = list(ranges)
    if is_remote(path):
        fs, name = fsspec.core.url_to_fs(os.fspath(path))
        chunks = fs.cat_ranges([name] * len(ranges), [s for s, _ in ranges], [e for _, e in ranges])
        for chunk in chunks:
            if isinstance(chunk, Exception):
                raise chunk
        return list(chunks)
    with open(path, "rb") as f:
        out = []
        for start, end in ranges:
            f.seek(start)
            out.append(f.read(end - start))
        return out


class LocalCopy:
    """A local file or folder for libraries that only write locally (ffmpeg, ``jax.profiler``), uploaded on a
    clean exit when ``path`` is a URI::

        with LocalCopy(out, suffix=".mp4") as local:   # ``local`` is ``out`` itself when ``out`` is local
            write_video_file(local, frames)
    """

    def __init__(self, path, *, suffix: str = ""):
        self.path, self.suffix = as_path(path), suffix
        self._tmp = None

    def __enter__(self) -> epath.Path:
        if not is_remote(self.path):
            return self.path
        self._tmp = tempfile.TemporaryDirectory(prefix="gw_jax_")
        return epath.Path(self._tmp.name) / ("upload" + self.suffix)

    def __exit__(self, exc_type, *exc):
        if self._tmp is None:
            return False
        try:
            local = epath.Path(self._tmp.name) / ("upload" + self.suffix)
            if exc_type is None and local.is_file():
                self.path.write_bytes(local.read_bytes())
            elif exc_type is None and local.is_dir():
                for root, _, files in os.walk(local):
                    for name in files:
                        file = epath.Path(root) / name
                        (self.path / os.path.relpath(file, local)).write_bytes(file.read_bytes())
        finally:
            self._tmp.cleanup()
        return False
