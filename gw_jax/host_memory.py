"""Keep the memory an XLA:CPU call frees for the next call, instead of handing it back to the OS each time.

    from gw_jax import host_memory
    host_memory.keep_freed_memory()   # early, before JAX runs anything (the gw-jax command does it first thing)

Why: an XLA:CPU executable allocates its temporaries as one block per call (146 MB for the cpu-preset DiT's
gradient). glibc serves a block that large with a fresh ``mmap`` and unmaps it when it is freed (XLA's worker
threads use their own malloc arenas, which cannot hold it, so they mmap even when told not to), so every call
page-faults its whole temporary block in again: 36k page faults and 70 ms of kernel time per 300 ms gradient
step on one core (docs/benchmarks.md). One malloc arena (the main heap, which grows with ``brk``), no mmap for
large blocks and a high trim threshold keep the block mapped between calls: no faults after the first call.

Process-wide and glibc-only (elsewhere a no-op); ``GW_JAX_SYSTEM_MALLOC=1`` leaves malloc alone. It must run
before the threads it should affect first allocate: XLA's pool starts with the first JAX computation.
"""

from __future__ import annotations

import ctypes
import os
import platform

OPT_OUT_ENV = "GW_JAX_SYSTEM_MALLOC"
# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
# free memory at the top of the heap beyond this goes back to the OS (glibc's default: 128 KiB, adapting)
TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Sets glibc's malloc to keep freed memory (see the module docstring); True if it did."""
    if os.environ.get(OPT_OUT_ENV, "") not in ("", "0") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)))
