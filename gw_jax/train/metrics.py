"""Training metrics to TensorBoard, a JSON-lines file (for plots) and the console; process 0 only.

The workdir may be a ``gs://`` URI. GCS objects cannot be appended to (gcsfs silently turns ``open("a")`` into
an overwrite), so there ``metrics.jsonl`` is kept in memory and rewritten as one object every ``flush_secs``
and at every :meth:`MetricsWriter.flush` (the train loop flushes with each checkpoint, so whatever a resumed
run restarts from is in the bucket), and TensorBoard event files go through an epath writer that re-uploads
the file on each flush (tensorboardX's own ``gs`` writer retries for minutes after close at interpreter exit).

Console lines go through ``tqdm.write`` so they print above a running progress bar instead of through it.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import sys
import time
from pathlib import Path

import jax
from tqdm.auto import tqdm

from gw_jax.storage import as_path, is_remote, write_text


_WRITERS = itertools.count()


class MetricsWriter:
    """``resume_step``: the step a resumed run restarts from; what an interrupted run logged after it (and
    will log again) is dropped from metrics.jsonl, and TensorBoard purges it too."""

    def __init__(self, workdir: str | Path, *, console: bool = True, resume_step: int | None = None,
                 flush_secs: float = 30.0):
        self.enabled = jax.process_index() == 0
        self.console = console
        workdir = as_path(workdir)
        self.path = workdir / "metrics.jsonl"
        self.remote = is_remote(self.path)
        self.flush_secs = flush_secs
        self._text: str | None = None  # remote: the whole file, rewritten on flush
        self._flushed_at = time.monotonic()
        self._tb = None
        if self.enabled:
            # Imported here: tensorboardX imports torch when it is installed (seconds), and only process 0 needs it.
            from tensorboardX import SummaryWriter

            if not self.remote:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            if resume_step is not None:
                truncate_metrics(self.path, resume_step)
            if self.remote:
                self._text = self.path.read_text() if self.path.exists() else ""
                _use_epath_for_gcs_events()
            # pid and count in the name: a run resumed within the same second must not replace the file before it
            self._tb = SummaryWriter(str(workdir / "tensorboard"), filename_suffix=f".{os.getpid()}.{next(_WRITERS)}",
                                     purge_step=None if resume_step is None else resume_step + 1)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in metrics.items()}
        for name, value in values.items():
            self._tb.add_scalar(name, value, step)
        line = json.dumps({"step": step, **values}) + "\n"
        if self.remote:
            self._text += line
            if time.monotonic() - self._flushed_at > self.flush_secs:
                self.flush()
        else:
            with self.path.open("a") as f:
                f.write(line)
        if self.console:
            text = "  ".join(f"{k}={v:.4g}" for k, v in values.items())
            tqdm.write(f"step {step:>6}  {text}")
            sys.stdout.flush()  # logs redirected to files show progress as it happens

    def flush(self) -> None:
        """Everything written so far is in the workdir (locally every line already is)."""
        if not self.enabled:
            return
        if self.remote:
            write_text(self.path, self._text)
            self._tb.flush()
        self._flushed_at = time.monotonic()

    def close(self) -> None:
        if self._tb is not None:
            self.flush()
            self._tb.close()
            self._tb = None


def truncate_metrics(path, step: int) -> None:
    """Keeps the lines of ``step`` and before (and drops a line a kill cut short), rewriting atomically."""
    path = as_path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    write_text(path, "".join(line + "\n" for line in kept))


def read_metrics(workdir: str | Path) -> list[dict]:
    path = as_path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _EpathEventFile:
    """A TensorBoard event file on GCS: records buffered, the whole file uploaded on flush (objects cannot
    be appended to); flushing nothing new and closing twice are no-ops."""

    def __init__(self, path):
        self.path, self.buffer, self.uploaded, self.closed = as_path(path), io.BytesIO(), 0, False

    def write(self, data: bytes) -> None:
        self.buffer.write(data)

    def flush(self) -> None:
        if self.buffer.tell() != self.uploaded:
            self.path.write_bytes(self.buffer.getvalue())
            self.uploaded = self.buffer.tell()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.flush()


class _EpathEventFiles:
    """tensorboardX writer factory (``open`` / ``directory_check``) for ``gs://`` logdirs."""

    def open(self, path):
        return _EpathEventFile(path)

    def directory_check(self, path):
        pass  # buckets have no folders to make


def _use_epath_for_gcs_events() -> None:
    from tensorboardX import record_writer

    record_writer.register_writer_factory("gs", _EpathEventFiles())
