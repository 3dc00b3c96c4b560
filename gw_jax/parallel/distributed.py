"""Multi-host start-up: ``jax.distributed.initialize`` from config or the environment.

Cloud TPU VMs and SLURM/GPU clusters are auto-detected by JAX (call with no arguments); elsewhere
(two processes on one machine in tests, hand-rolled GPU launchers) the coordinator is given in the
config or in ``GW_JAX_COORDINATOR`` / ``GW_JAX_NUM_PROCESSES`` / ``GW_JAX_PROCESS_ID``.
"""

from __future__ import annotations

import os

import jax

_initialized = False


def initialize(multihost_config=None) -> None:
    """Idempotent. Does nothing for a single-process run without any multi-host setting."""
    global _initialized
    if _initialized:
        return
    cfg = multihost_config
    address = (cfg.coordinator_address if cfg is not None else "") or os.environ.get("GW_JAX_COORDINATOR", "")
    num = int((cfg.num_processes if cfg is not None else 1) or 1)
    num = int(os.environ.get("GW_JAX_NUM_PROCESSES", num))
    pid = int(os.environ.get("GW_JAX_PROCESS_ID", cfg.process_id if cfg is not None else 0))
    if address and num > 1:
        if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):  # CPU collectives across processes
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=pid)
    elif os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("SLURM_NTASKS", "1") != "1":
        jax.distributed.initialize()  # cluster auto-detection
    _initialized = True
