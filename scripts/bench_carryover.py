"""Does one implementation's step slow the next one's? The measurements behind the DiT bench's untimed call per turn
(docs/benchmarks.md "Session 38", issue 20). Needs torch and diffusers (``./install.sh test,torch``).

    python scripts/bench_carryover.py pairs      # every ordered pair: A twice, then B twice, both B calls timed
    python scripts/bench_carryover.py methods    # the bench's old fixed order vs the shuffled order with warm-up

pairs prints, per timed train step, the median of its first and second call after each implementation (12 rounds);
methods alternates the two ways of timing a round (31 rounds each) and prints each way's medians and JAX's speed-ups.
"""
import statistics
import sys
import time

from gw_jax.host_memory import keep_freed_memory

keep_freed_memory()

import numpy as np  # noqa: E402

from gw_jax.bench.dit_bench import PRESETS, bench_jax, bench_torch  # noqa: E402

NAMES = ("jax", "eager", "compile")


def warmed_timers() -> dict:
    """{name: {"forward_s": fn, "train_step_s": fn}} for the cpu preset, every one compiled and run once."""
    p = dict(PRESETS["cpu"], repeats=3)
    timers = {name: {} for name in NAMES}
    bench_jax(p, timers=timers["jax"])
    bench_torch(p, compile_model=False, timers=timers["eager"])
    bench_torch(p, compile_model=True, timers=timers["compile"])
    return timers


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pairs(timers: dict, rounds: int = 12) -> None:
    steps = {name: timers[name]["train_step_s"] for name in NAMES}
    times = {(before, timed, call): [] for before in NAMES for timed in NAMES for call in (1, 2)}
    for _ in range(rounds):
        for before in NAMES:
            for timed in NAMES:
                steps[before]()
                steps[before]()
                times[(before, timed, 1)].append(seconds(steps[timed]))
                times[(before, timed, 2)].append(seconds(steps[timed]))
    for timed in NAMES:
        print(f"{timed:8s}" + "".join(
            f"  after {before}: {1e3 * statistics.median(times[(before, timed, 1)]):6.1f} / "
            f"{1e3 * statistics.median(times[(before, timed, 2)]):6.1f} ms" for before in NAMES))


def methods(timers: dict, rounds: int = 31) -> None:
    turns = [(name, key) for name in NAMES for key in ("forward_s", "train_step_s")]
    old, new = {turn: [] for turn in turns}, {turn: [] for turn in turns}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for name, key in turns:  # the old way: a fixed order, one timed call per turn
            old[(name, key)].append(seconds(timers[name][key]))
        for i in rng.permutation(len(turns)):  # the bench's way now
            name, key = turns[i]
            timers[name][key]()
            new[(name, key)].append(seconds(timers[name][key]))
    for label, times in (("old", old), ("new", new)):
        med = {turn: statistics.median(values) for turn, values in times.items()}
        speedups = ", ".join(f"{key.removesuffix('_s')} vs {name} {med[(name, key)] / med[('jax', key)]:.3f}x"
                             for key in ("forward_s", "train_step_s") for name in ("eager", "compile"))
        print(f"{label}: " + " ".join(f"{name} {key.removesuffix('_s')} {1e3 * med[(name, key)]:.1f} ms"
                                      for name, key in turns) + f" | JAX speed-up: {speedups}")


if __name__ == "__main__":
    commands = {"pairs": pairs, "methods": methods}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: python scripts/bench_carryover.py {' | '.join(commands)}")
    commands[sys.argv[1]](warmed_timers())
