"""Metric lines and a running tqdm bar share one terminal: each metric line must start on its own line."""

import io
import re
import sys

from tqdm.auto import tqdm

from gw_jax.train.metrics import MetricsWriter


def test_metric_lines_print_above_the_progress_bar_not_through_it(tmp_path, monkeypatch):
    terminal = io.StringIO()  # stdout and stderr on one terminal, as a user sees them
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    writer = MetricsWriter(tmp_path)
    bar = tqdm(total=20, desc="train", file=sys.stderr, mininterval=0, ascii=True)
    for step in range(1, 21):
        bar.update(1)
        if step % 5 == 0:
            writer.write(step, {"loss": 1.0 / step})
    bar.close()
    writer.close()
    # what stays on screen: each \r returns to the line start, so the text after the last \r of a line shows
    shown = [line.split("\r")[-1] for line in terminal.getvalue().split("\n")]
    metric_lines = [line for line in shown if "loss=" in line]
    assert len(metric_lines) == 4
    assert all(re.fullmatch(r"step +\d+  loss=\S+", line) for line in metric_lines), metric_lines
