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
    def __init__(self, workdir: str | Path, *, console: bool = True):
        self.enabled = jax.process_index() == 0
        self.console = console
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

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


def read_metrics(workdir: str | Path) -> list[dict]:
    path = Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
