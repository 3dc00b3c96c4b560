"""How the cpu preset's JAX train step uses its threads on XLA:CPU (docs/benchmarks.md "Session 34", issue 20).

    taskset -c 0 python scripts/xla_cpu_threads.py profile one.pkl   # per-op durations on one core
    python scripts/xla_cpu_threads.py profile two.pkl                # ... on every core the process may use
    python scripts/xla_cpu_threads.py compare one.pkl two.pkl        # which ops got faster with more threads
    python scripts/xla_cpu_threads.py options '{"base": {}, "mem": {"xla_cpu_scheduler_type":
        "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}, "base2": {}}' 15     # compiler options, interleaved, wall + CPU
    taskset -c 0 python scripts/xla_cpu_threads.py transposes        # a transpose alone vs fused (docs: "Session 38")

profile: xprof of 5 steps with every XLA:CPU thunk traced; prints how much of the span has 0, 1 or 2+ ops in flight
and saves {op name: [durations ns]}. transposes: a (512, 1024) transpose on its own, fused with the dynamic-slice that
reads it from a stack (as the scan's backward reads its saved activations), behind an ``optimization_barrier``, and
behind a conditional; then the kernel gradient x^T g over a 4-deep stack in a scan, the same three ways. options:
each variant compiled with ``compiler_options`` (XLA reads XLA_FLAGS once per process, so changing the variable
between compiles in one process compiles the same program again).
"""
import collections
import glob
import json
import os
import pickle
import re
import sys
import tempfile
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()

from gw_jax.host_memory import keep_freed_memory  # noqa: E402

keep_freed_memory()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.profiler import ProfileData  # noqa: E402

from gw_jax.bench.dit_bench import PRESETS, adamw_train_step, jax_forward, median_time  # noqa: E402

STEPS = 5


def train_step_fn(compiler_options: dict | None = None):
    """The bench's train step (gw_jax.bench.dit_bench.bench_jax) compiled with ``compiler_options``; warmed up."""
    forward, params = jax_forward(dict(PRESETS["cpu"]))
    train_step, tx = adamw_train_step(forward)

    state = {"params": params, "opt": tx.init(params)}
    step = jax.jit(train_step, donate_argnums=(0, 1)).lower(state["params"], state["opt"]).compile(
        compiler_options=compiler_options or None)

    def one_step():
        state["params"], state["opt"], loss = step(state["params"], state["opt"])
        loss.block_until_ready()

    for _ in range(3):
        one_step()
    return one_step


def profile(out: str) -> None:
    step = train_step_fn()
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir):
            for _ in range(STEPS):
                step()
        data = ProfileData.from_file(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0])
        ops = [(event.start_ns, event.start_ns + event.duration_ns, event.name)
               for plane in data.planes for line in plane.lines if "XLAEigen" in line.name
               for event in line.events
               if not event.name.startswith(("ThunkExecutor", "while", "ThreadpoolListener", "end: "))]
    edges = sorted([(start, 1) for start, _, _ in ops] + [(end, -1) for _, end, _ in ops])
    in_flight, busy, last = 0, collections.Counter(), edges[0][0]
    for t, change in edges:
        busy[min(in_flight, 2)] += t - last
        in_flight, last = in_flight + change, t
    print("span per step (ms) with 0 / 1 / 2+ ops in flight:",
          " / ".join(f"{busy[k] / STEPS / 1e6:.1f}" for k in range(3)))
    durations = collections.defaultdict(list)
    for start, end, name in ops:
        durations[name].append(end - start)
    with open(out, "wb") as f:
        pickle.dump(dict(durations), f)


def compare(first: str, second: str) -> None:
    with open(first, "rb") as f:
        a = pickle.load(f)
    with open(second, "rb") as f:
        b = pickle.load(f)
    per_step = {name: (np.median(a[name]) * len(a[name]) / STEPS, np.median(b[name]) * len(b[name]) / STEPS)
                for name in a.keys() & b.keys()}
    kinds = collections.defaultdict(lambda: np.zeros(2))
    for name, times in per_step.items():
        kinds[re.sub(r"\.\d+$", "", name)] += times
    total = sum(kinds.values())
    print(f"all ops: {total[0] / 1e6:.1f} -> {total[1] / 1e6:.1f} ms per step ({total[1] / total[0]:.2f}x)")
    for kind, (t1, t2) in sorted(kinds.items(), key=lambda kv: -kv[1][0])[:10]:
        print(f"{kind:40s} {t1 / 1e6:7.2f} -> {t2 / 1e6:7.2f} ms ({t2 / t1:.2f}x)")
    large = sorted((t2 / t1, t1, name) for name, (t1, t2) in per_step.items()
                   if name.startswith("ynn") and t1 / len(a[name]) * STEPS > 1e6)
    print("matmuls over 1 ms:", ", ".join(f"{name} {t1 / 1e6:.1f} ms {ratio:.2f}x" for ratio, t1, name in large))


def options(configs: dict, rounds: int) -> None:
    steps = {name: train_step_fn(opts) for name, opts in configs.items()}
    wall, cpu = collections.defaultdict(list), collections.defaultdict(list)
    for _ in range(rounds):
        for name, step in steps.items():
            c0, t0 = time.process_time(), time.perf_counter()
            step()
            step()
            wall[name].append((time.perf_counter() - t0) / 2)
            cpu[name].append((time.process_time() - c0) / 2)
    base = np.median(wall[next(iter(steps))])
    for name in steps:
        print(f"{name:12s} wall {1e3 * np.median(wall[name]):7.1f} ms  CPU {1e3 * np.median(cpu[name]):7.1f} ms  "
              f"{np.median(wall[name]) / base:.3f}x the first")


def _median_ms(fn, *args) -> float:
    fn(*args).block_until_ready()  # compile
    return 1e3 * median_time(lambda: fn(*args).block_until_ready(), 50)


def transposes() -> None:
    import jax.numpy as jnp

    stack = jnp.asarray(np.random.default_rng(0).normal(size=(4, 512, 1024)), jnp.float32)
    grad_nm = jnp.asarray(np.random.default_rng(1).normal(size=(512, 256)), jnp.float32)

    def cond_transpose(x):  # both branches the same transpose: the predicate only makes XLA keep the boundary
        return jax.lax.cond(x[0, 0] > 0, lambda a: a.T, lambda a: a.T, x)

    ways = {"fused": lambda x: x.T, "barrier": lambda x: jax.lax.optimization_barrier(x).T,
            "conditional": cond_transpose}
    print(f"alone: {_median_ms(jax.jit(lambda x: x.T), stack[1]):.3f} ms")
    for name, transpose in ways.items():
        sliced = _median_ms(jax.jit(lambda s, i, t=transpose: t(s[i])), stack, 1)
        body = lambda acc, x, t=transpose: (acc + t(x) @ grad_nm, None)  # noqa: E731
        scan = jax.jit(lambda s, b=body: jax.lax.scan(b, jnp.zeros((1024, 256)), s)[0])
        print(f"{name:12s} dynamic-slice + transpose {sliced:.3f} ms; "
              f"4-step scan of x^T g {_median_ms(scan, stack):.3f} ms")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "profile":
        profile(args[0])
    elif command == "compare":
        compare(*args)
    elif command == "transposes":
        transposes()
    elif command == "options":
        options(json.loads(args[0]), int(args[1]) if len(args) > 1 else 15)
    else:
        sys.exit(f"unknown command {command!r}: profile | compare | options | transposes")
