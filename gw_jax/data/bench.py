"""Loader throughput from a packed dataset (a folder or ``gs://`` URI): raw record reads (MB/s, a batch of byte
ranges at a time, what the storage gives) and decoded, transformed clips per second (and per core)."""

from __future__ import annotations

import os
import time

import numpy as np

from gw_jax.data.loader import PackedRecords, make_loader


def bench_reads(packed_dir, *, batch_size: int = 8, seconds: float = 10.0) -> dict:
    """Random batches of records fetched as the loader fetches them (one ``read`` per batch), not decoded."""
    source = PackedRecords(packed_dir)
    rng = np.random.default_rng(0)
    source.read(rng.choice(len(source), batch_size))  # first contact (connections, shard checks) is not throughput
    records = size = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        chunk = source.read(rng.choice(len(source), batch_size))
        records, size = records + len(chunk), size + sum(map(len, chunk))
    elapsed = time.perf_counter() - start
    return dict(records_per_s=records / elapsed, read_mb_per_s=size / elapsed / 2**20,
                mean_record_kb=size / max(records, 1) / 1024)


def bench_data(packed_dir, *, batch_size: int = 8, num_frames: int = 17, height: int = 64, width: int = 64,
               workers: int = 0, seconds: float = 10.0) -> dict:
    """Raw reads for ``seconds``, then the Grain loader for about ``seconds`` after one warm-up batch."""
    reads = bench_reads(packed_dir, batch_size=batch_size, seconds=seconds)
    batches = make_loader(packed_dir, batch_size=batch_size, num_frames=num_frames, height=height, width=width,
                          seed=0, worker_count=workers, process_index=0, process_count=1)
    next(batches)  # start-up (worker processes, first reads) is not throughput
    clips, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        clips += len(next(batches)["episode"])
    elapsed = time.perf_counter() - start
    cores = max(1, workers) if workers else 1
    return dict(packed=os.fspath(packed_dir), clips=clips, seconds=elapsed, clips_per_s=clips / elapsed,
                clips_per_s_per_core=clips / elapsed / cores, **reads, workers=workers, cpu_count=os.cpu_count(),
                clip=[3, num_frames, height, width], batch_size=batch_size)


def markdown_table(report: dict) -> str:
    return "\n".join([f"Loader throughput from {report['packed']}, clips {report['clip']} (C, T, H, W), "
                      f"batch {report['batch_size']}", "",
                      "| workers | raw reads (records/s) | raw reads (MB/s) | clips/s | clips/s per core |",
                      "|---|---|---|---|---|",
                      f"| {report['workers']} | {report['records_per_s']:.0f} | {report['read_mb_per_s']:.1f} | "
                      f"{report['clips_per_s']:.1f} | {report['clips_per_s_per_core']:.1f} |"])
