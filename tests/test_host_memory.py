"""gw_jax.host_memory: after keep_freed_memory(), repeated XLA:CPU calls stop page-faulting their temporaries."""

import json
import os
import platform
import statistics
import subprocess
import sys

import pytest

from gw_jax import host_memory

# A jitted call with a 64 MiB temporary (sin(x), which the dot reads), called 16 times: prints the minor page
# faults of each call. XLA frees a call's temporaries on its own thread after the result is ready: the pause lets
# that happen before the next call allocates (else the heap grows by another block now and then).
PROBE = """
import json, resource, sys, time
from gw_jax import host_memory
print(host_memory.keep_freed_memory(), file=sys.stderr)
import jax, jax.numpy as jnp
x, w = jnp.ones((4096, 4096)), jnp.ones((4096, 8))
f = jax.jit(lambda x, w: jnp.sin(x) @ w)
faults = []
for _ in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x, w).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    time.sleep(0.05)
print(json.dumps(faults))
"""


def _faults_per_call(opt_out: bool) -> list[int]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", **{host_memory.OPT_OUT_ENV: "1" if opt_out else ""})
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_temporaries_stop_page_faulting():
    pages = 4096 * 4096 * 4 // 4096  # the temporary, in 4 KiB pages
    kept = _faults_per_call(opt_out=False)
    # warmed up, the freed block is reused: no fresh pages in most calls (now and then one more block is mapped
    # when a call allocates before the previous call's temporaries are freed)
    assert statistics.median(kept[8:]) < pages // 10, kept
    system = _faults_per_call(opt_out=True)  # the control: glibc's defaults fault the block in on every call
    assert statistics.median(system[8:]) > pages // 2, system
