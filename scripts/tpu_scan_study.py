"""Scanned vs unrolled DiT blocks on a TPU topology, compiled ahead of time on this CPU host (issue 20; docs/scale.md
"Scanned or unrolled blocks on TPU"). Needs libtpu (``pip install "jax[tpu]==0.10.2"``); no TPU is touched.

    python scripts/tpu_scan_study.py v5p:4x4x4 OUT.json           # scanned + 1- and 2-block unrolled compiles
    python scripts/tpu_scan_study.py v5p:4x4x4 OUT.json --full    # also the whole step unrolled (a long compile)

On a GPU the scanned 2B train step spent 41 of 279 ms copying slices of the stacked weights, residuals and gradients
(docs/benchmarks.md), so ``scan_blocks="auto"`` unrolls there. Whether a TPU pays the same shows in XLA's cost
analysis: it counts a scanned body once, so the scanned step's bytes minus what lies outside the blocks is one scan
iteration, against one unrolled block from the difference of the 1- and 2-block compiles. A scanned body's counted
bytes also grow with the number of blocks stacked (an in-place update of a stack may be counted at the stack's size),
so the step is compiled scanned with 2, 4 and 28 blocks too and the iteration's bytes fitted as a + b * blocks; a + b
is one iteration as if each stack were one block deep. Per chip: memory (``memory_analysis``), FLOPs and HBM bytes
(``cost_analysis``), compile seconds.
"""
import json
import sys
import time

import numpy as np

from gw_jax.config import load_config
from gw_jax.train.compile import DEFAULT_MESHES, compile_train_step, memory_report, tpu_devices, with_blocks
from gw_jax.parallel.mesh import make_mesh
from gw_jax.train.roofline import step_costs


def compiled_costs(config, mesh, blocks: int | None, scan: bool) -> dict:
    t0 = time.perf_counter()
    compiled = compile_train_step(with_blocks(config, blocks, scan_blocks=scan), mesh)[0]
    seconds = time.perf_counter() - t0
    per_chip, peak = memory_report(compiled)
    costs = step_costs(compiled, mesh.size)
    row = dict(blocks=blocks or config.model.num_blocks, scanned=scan, compile_s=round(seconds, 1),
               per_chip=per_chip, peak_estimate_gib=peak, flops=costs["flops"], hbm_bytes=costs["hbm_bytes"])
    print(json.dumps(row), flush=True)
    return row


def main():
    topology, out = sys.argv[1], sys.argv[2]
    config = load_config("configs/gigaworld0_2b.py")
    chip = topology.split(":")[0].lower()
    mesh = make_mesh(DEFAULT_MESHES[chip], devices=tpu_devices(topology))
    rows = {"scanned": compiled_costs(config, mesh, None, True),
            "scanned_2": compiled_costs(config, mesh, 2, True), "scanned_4": compiled_costs(config, mesh, 4, True),
            "unrolled_1": compiled_costs(config, mesh, 1, False),
            "unrolled_2": compiled_costs(config, mesh, 2, False)}
    per_block = {k: rows["unrolled_2"][k] - rows["unrolled_1"][k] for k in ("flops", "hbm_bytes")}
    outside = {k: rows["unrolled_1"][k] - per_block[k] for k in ("flops", "hbm_bytes")}
    n = config.model.num_blocks
    iteration = {blocks: rows[name]["hbm_bytes"] - outside["hbm_bytes"]
                 for blocks, name in ((2, "scanned_2"), (4, "scanned_4"), (n, "scanned"))}
    slope, intercept = np.polyfit(list(iteration), list(iteration.values()), 1)
    summary = dict(unrolled_block=per_block, outside_blocks=outside, scan_iteration_bytes=iteration,
                   scan_iteration_fit=dict(per_stacked_block=slope, constant=intercept),
                   scan_iteration_one_deep=intercept + slope,
                   unrolled_estimate=outside["hbm_bytes"] + n * per_block["hbm_bytes"],
                   scanned_estimate_as_counted=outside["hbm_bytes"] + n * iteration[n],
                   scanned_estimate_one_deep=outside["hbm_bytes"] + n * (intercept + slope))
    if "--full" in sys.argv:
        rows["unrolled"] = compiled_costs(config, mesh, None, False)
    report = dict(topology=topology, mesh=DEFAULT_MESHES[chip], rows=rows, summary=summary)
    print(json.dumps(summary, indent=1))
    with open(out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
