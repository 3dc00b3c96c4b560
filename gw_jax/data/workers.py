"""Worker processes for ``sim`` and ``pack`` that stay quiet on Ctrl-C.

    for result in imap_unordered(fn, jobs, workers=2):   # fn: a module-level function (pickled by name)
        ...

Workers are *spawned* (fresh interpreters: forking a process that runs JAX's threads can deadlock) with
SIGINT ignored from birth, then move to their own process group, so Ctrl-C reaches only the main process:
it raises KeyboardInterrupt there, the pool is terminated, and the CLI prints one line instead of a
traceback per worker. The process group matters for the ffmpeg processes the workers start: a Ctrl-C that
reached them would cut a video short while the worker, unaware, went on to write a truncated record.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from typing import Callable, Iterable, Iterator


def imap_unordered(fn: Callable, jobs: Iterable, *, workers: int) -> Iterator:
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    # A signal ignored at exec stays ignored, and Python then installs no KeyboardInterrupt handler: set it
    # while the pool starts its processes (their own imports included), restore it for ourselves after.
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread (notebooks' worker threads): signals are not ours to change
        previous = None
    try:
        pool = mp.get_context("spawn").Pool(min(workers, len(jobs)), initializer=_own_process_group)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    with pool:  # __exit__ terminates the workers, also on KeyboardInterrupt
        yield from pool.imap_unordered(fn, jobs)


def _own_process_group() -> None:
    if hasattr(os, "setpgrp"):
        os.setpgrp()
