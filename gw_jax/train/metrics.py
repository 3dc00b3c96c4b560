"""Training metrics to TensorBoard, a JSON-lines file (for plots) and the console; process 0 only.

Console lines go through ``tqdm.write`` so they print above a running progress bar instead of through it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
from tqdm.auto import tqdm


class MetricsWriter:
    """``resume_step``: the step a resumed run restarts from; what an interrupted run logged after it (and
    will log again) is dropped from metrics.jsonl, and TensorBoard purges it too."""

    def __init__(self, workdir: str | Path, *, console: bool = True, resume_step: int | None = None):
        self.enabled = jax.process_index() == 0
        self.console = console
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = None
        if self.enabled:
            # Imported here: tensorboardX imports torch when it is installed (seconds), and only process 0 needs it.
            from tensorboardX import SummaryWriter

            self.path.parent.mkdir(parents=True, exist_ok=True)
            if resume_step is not None:
                truncate_metrics(self.path, resume_step)
            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"),
                                     purge_step=None if resume_step is None else resume_step + 1)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in metrics.items()}
        for name, value in values.items():
            self._tb.add_scalar(name, value, step)
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.console:
            text = "  ".join(f"{k}={v:.4g}" for k, v in values.items())
            tqdm.write(f"step {step:>6}  {text}")
            sys.stdout.flush()  # logs redirected to files show progress as it happens

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def truncate_metrics(path: Path, step: int) -> None:
    """Keeps the lines of ``step`` and before (and drops a line a kill cut short), rewriting atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def read_metrics(workdir: str | Path) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
