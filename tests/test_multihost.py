"""Two processes on this machine (jax.distributed over localhost, gloo CPU collectives) train the same
step as one process with the same global devices."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

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


def _start(script: str, processes: int, devices_per_process: int, *args: str) -> list[subprocess.Popen]:
    port = _free_port()
    procs = []
    for pid in range(processes):
        env = dict(os.environ, JAX_PLATFORMS="cpu",
                   XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}")
        if processes > 1:
            env.update(GW_JAX_COORDINATOR=f"127.0.0.1:{port}", GW_JAX_NUM_PROCESSES=str(processes),
                       GW_JAX_PROCESS_ID=str(pid))
        procs.append(subprocess.Popen([sys.executable, "-c", script, *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def _results(procs: list[subprocess.Popen], timeout: float = 600) -> list[dict]:
    """Each process's RESULT line; all of them are killed if one fails or hangs."""
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = []
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.split("RESULT ", 1)[1]))
    return results


def _run(processes: int, devices_per_process: int):
    return _results(_start(SCRIPT, processes, devices_per_process))


@pytest.mark.slow
def test_two_processes_match_one():
    single = _run(1, 4)[0]
    pair = _run(2, 2)
    assert {r["process"] for r in pair} == {0, 1}
    assert all(r["count"] == 2 and r["devices"] == 4 for r in pair)
    for r in pair:
        assert r["losses"] == pytest.approx(single["losses"], rel=1e-5)


PREEMPTED = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from gw_jax.parallel.distributed import initialize
    initialize()
    import jax
    sys.path.insert(0, "tests")
    from test_train import latent_dataset, small_config
    from gw_jax.train.checkpoint import Checkpointer
    from gw_jax.train.data import ArrayBatches
    from gw_jax.train.loop import train
    workdir = Path(sys.argv[1])

    class Batches(ArrayBatches):  # tells the test when this process is well into training
        def __next__(self):
            if self.position == 5:
                (workdir / f"running-{jax.process_index()}").touch()
            return super().__next__()

    config = small_config(data=4)
    config.train.update(dict(num_steps=100000, checkpoint_every=100000, log_every=1000))
    result = train(config, workdir, batches=Batches(latent_dataset(), 8, seed=1), progress=False)
    print("RESULT", json.dumps(dict(process=jax.process_index(), step=int(result.state.step),
                                    stopped_early=result.stopped_early,
                                    saved=Checkpointer(workdir / "checkpoints").latest_step())))
""")


@pytest.mark.slow
def test_sigterm_to_one_host_stops_and_saves_every_host_at_the_same_step(tmp_path):
    """A preemption notice reaches one host; both agree on one step (Orbax reached_preemption over JAX's
    preemption sync manager), both save it and exit 0 instead of one waiting forever in a collective."""
    procs = _start(PREEMPTED, 2, 2, str(tmp_path))
    deadline = time.time() + 300
    while not all((tmp_path / f"running-{i}").exists() for i in range(2)):
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            pytest.fail("training did not start:\n" + "\n".join(p.communicate()[1][-2000:] for p in procs))
        time.sleep(0.2)
    os.kill(procs[1].pid, signal.SIGTERM)
    results = _results(procs, timeout=240)  # a host left behind in a collective hangs: that fails here
    steps = {r["step"] for r in results}
    assert len(steps) == 1 and all(r["stopped_early"] for r in results), results
    step = steps.pop()
    assert 5 <= step < 100000 and all(r["saved"] == step for r in results), results
    # Grain's handler: each process wrote its own data-iterator state into that step
    assert sorted(p.name for p in (tmp_path / "checkpoints" / str(step) / "data").glob("process_*")) == [
        "process_0-of-2.json", "process_1-of-2.json"]
