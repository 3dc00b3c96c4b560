"""Two processes on this machine (jax.distributed over localhost, gloo CPU collectives) train the same
step as one process with the same global devices."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    from gw_jax.parallel.distributed import initialize
    initialize()
    import jax, numpy as np
    sys.path.insert(0, "tests")
    from test_train import latent_dataset, small_config
    from gw_jax.train.data import ArrayBatches
    from gw_jax.train.loop import build_setup, global_batch, jit_train_step
    config = small_config(data=4)
    setup = build_setup(config)
    state = setup.init_state()
    batches = ArrayBatches(latent_dataset(), 8, seed=1)
    local = next(batches)
    step = jit_train_step(setup, local)
    losses = []
    for i in range(2):
        state, metrics = step(state, global_batch(setup.mesh, local), jax.random.key(i), None)
        losses.append(float(metrics["loss"]))
        local = next(batches)
    print("RESULT", json.dumps(dict(process=jax.process_index(), count=jax.process_count(),
                                    devices=jax.device_count(), losses=losses)))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(processes: int, devices_per_process: int):
    port = _free_port()
    procs = []
    for pid in range(processes):
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
        if processes > 1:
            env.update(GW_JAX_COORDINATOR=f"127.0.0.1:{port}", GW_JAX_NUM_PROCESSES=str(processes),
                       GW_JAX_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.split("RESULT ", 1)[1]))
    return results


@pytest.mark.slow
def test_two_processes_match_one():
    single = _run(1, 4)[0]
    pair = _run(2, 2)
    assert {r["process"] for r in pair} == {0, 1}
    assert all(r["count"] == 2 and r["devices"] == 4 for r in pair)
    for r in pair:
        assert r["losses"] == pytest.approx(single["losses"], rel=1e-5)
