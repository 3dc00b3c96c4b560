"""What keeps a long run safe: stop together on preemption, stop on a non-finite loss, trace on request.

    with StopSignal(checkpointer) as stop:          # SIGTERM -> every process stops after the same step
        for step in ...:
            finite.add(done, metrics)                # device scalars; no host sync per step
            finite.check()                           # before each log line and save: raises on NaN/inf
            if stop.reached(done): save and return
    profiler = Profiler(workdir / "profile", first=start + 2, steps=config.train.profile_steps)

- ``StopSignal``: one process: a Python SIGTERM handler sets a flag read between steps. Several processes
  (``jax.distributed``): JAX's preemption sync manager (started by ``jax.distributed.initialize``) catches
  SIGTERM on any host and the coordination service picks one step for all of them; Orbax's
  ``reached_preemption(step)`` turns True on every host at that step, so all save it and return together
  instead of one host leaving a collective that the others then wait in forever.
- ``FiniteGuard``: keeps each step's loss and gradient norm (device scalars) until the next check (every log
  line, every save, at least every 100 steps), then fetches them at once; the first non-finite one raises
  :class:`NonFiniteLossError` naming its step. The loop checks before every save, so the newest checkpoint is
  always the last good one.
- ``Profiler``: ``config.train.profile_steps`` steps traced with ``jax.profiler`` (TensorBoard / XProf); into a
  ``gs://`` workdir through a local folder uploaded when the trace ends.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import jax
import numpy as np

from gw_jax.storage import LocalCopy


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN or infinite; nothing after the last good step was saved."""


class StopSignal:
    """SIGTERM as a stop that every process agrees on (see the module docstring)."""

    def __init__(self, checkpointer):
        self.checkpointer = checkpointer
        self.requested = False
        self._previous = None

    def __enter__(self):
        # With several processes JAX's own SIGTERM handler (the preemption notifier) must stay installed.
        if jax.process_count() == 1:
            try:
                self._previous = signal.signal(signal.SIGTERM, self._handle)
            except ValueError:  # not the main thread (e.g. notebooks' worker threads)
                self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def reached(self, step: int) -> bool:
        """True once this step is where every process stops (call it after every step, on every process)."""
        if jax.process_count() > 1:
            return self.checkpointer.reached_preemption(step)
        return self.requested

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


class FiniteGuard:
    """Finds the first step whose loss or gradient norm is not finite, fetching only at checks."""

    def __init__(self, checkpoint_dir: Path):
        self.checkpoint_dir = checkpoint_dir
        self.last_saved: int | None = None
        self._pending: list[tuple[int, dict]] = []

    MAX_PENDING = 100  # a check at least this often, whatever log_every is: bounded memory, negligible syncs

    def add(self, step: int, metrics: dict) -> None:
        self._pending.append((step, {k: metrics[k] for k in ("loss", "grad_norm") if k in metrics}))
        if len(self._pending) >= self.MAX_PENDING:
            self.check()

    def check(self) -> None:
        pending, self._pending = jax.device_get(self._pending), []
        for step, values in pending:
            bad = {k: float(values[k]) for k in ("loss", "grad_norm") if k in values and not np.isfinite(values[k])}
            if bad:
                kept = (f"the last good checkpoint is step {self.last_saved} in {self.checkpoint_dir}"
                        if self.last_saved is not None else "no checkpoint was saved")
                what = ", ".join(f"{k} {v}" for k, v in bad.items())
                raise NonFiniteLossError(f"step {step}: {what}; training stopped, {kept} (lower "
                                         "--config.train.learning_rate or check the data)")


class Profiler:
    """Traces steps ``first`` .. ``first + steps - 1`` into ``directory`` (nothing when ``steps`` is 0)."""

    def __init__(self, directory, *, first: int, steps: int):
        self.directory, self.first, self.last = directory, first, first + steps - 1
        self.active = False
        self._local = None

    def before(self, step: int) -> None:
        if step == self.first and self.last >= self.first:
            self._local = LocalCopy(self.directory)  # the profiler writes local files only
            local = self._local.__enter__()
            local.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(os.fspath(local))
            self.active = True

    def after(self, step: int, outputs) -> None:
        if self.active and step >= self.last:
            jax.block_until_ready(outputs)  # the trace holds the whole of its last step
            self.stop()

    def stop(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self._local.__exit__(None, None, None)
            self.active = False
            print(f"profile of steps {self.first}..{self.last} in {self.directory} (tensorboard --logdir)",
                  flush=True)
