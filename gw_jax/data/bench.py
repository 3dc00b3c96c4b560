"""Loader throughput: decoded, transformed clips per second (and per core) from a packed dataset."""

from __future__ import annotations

import os
import time

from gw_jax.data.loader import make_loader


def bench_data(packed_dir, *, batch_size: int = 8, num_frames: int = 17, height: int = 64, width: int = 64,
               workers: int = 0, seconds: float = 10.0) -> dict:
    """Iterates the Grain loader for about ``seconds`` after one warm-up batch; clips/s and clips/s/core."""
    batches = make_loader(packed_dir, batch_size=batch_size, num_frames=num_frames, height=height, width=width,
                          seed=0, worker_count=workers, process_index=0, process_count=1)
    next(batches)  # start-up (worker processes, first reads) is not throughput
    clips, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        clips += len(next(batches)["episode"])
    elapsed = time.perf_counter() - start
    cores = max(1, workers) if workers else 1
    return dict(clips=clips, seconds=elapsed, clips_per_s=clips / elapsed, clips_per_s_per_core=clips / elapsed / cores,
                workers=workers, cpu_count=os.cpu_count(), clip=[3, num_frames, height, width], batch_size=batch_size)


def markdown_table(report: dict) -> str:
    return "\n".join([f"Loader throughput, clips {report['clip']} (C, T, H, W), batch {report['batch_size']}", "",
                      "| workers | clips/s | clips/s per core |", "|---|---|---|",
                      f"| {report['workers']} | {report['clips_per_s']:.1f} | {report['clips_per_s_per_core']:.1f} |"])
