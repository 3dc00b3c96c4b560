"""``gw-jax compile --config configs/gigaworld0_2b.py --topology v5p:4x4x4``: AOT-compile the sharded
train step for a Cloud TPU topology on this (CPU) host with libtpu, and report per-chip memory and a
roofline estimate of the step time and MFU (gw_jax.train.roofline; skip it with --no-roofline).

Needs libtpu (``pip install -e ".[tpu]"``); no TPU is touched. Exit 1 when the step does not fit in HBM.
The work is ``gw_jax.train.compile.compile_report``.
"""

from __future__ import annotations

import argparse

import jax

from gw_jax.config import load_config
from gw_jax.errors import UserInputError
from gw_jax.storage import check_output_file, write_json
from gw_jax.train.compile import compile_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True)
    parser.add_argument("--topology", required=True, help="e.g. v5p:4x4x4 (64 chips), v5e:16x16 (256 chips)")
    parser.add_argument("--mesh", default="", help="axis sizes, e.g. fsdp=16,context=4 (default per chip)")
    parser.add_argument("--json", default=None, help="also write the report as JSON")
    parser.add_argument("--no-roofline", action="store_true",
                        help="skip the roofline estimate (two more compiles, of 1 and 2 unrolled blocks)")


def parse_mesh(text: str) -> dict:
    sizes = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        try:
            sizes[name.strip()] = int(value)
        except ValueError:
            raise UserInputError(f"--mesh {text!r}: expected axis=size pairs, e.g. fsdp=16,context=4") from None
    return sizes


def roofline_table(r: dict) -> str:
    """The estimate as a markdown table (per chip, one training step)."""
    rows = [("FLOPs (XLA cost analysis + kernels it cannot see)", f"{r['flops']:.3e} (+{r['extra_flops']:.3e})",
             f"{r['compute_s']:.3f} s at {r['peak_flops'] / 1e12:.0f} TFLOP/s"),
            ("HBM bytes accessed", f"{r['hbm_bytes'] / 2 ** 30:.1f} GiB",
             f"{r['hbm_s']:.3f} s at {r['hbm_bytes_per_s'] / 1e9:.0f} GB/s"),
            ("collective bytes sent (ring)", f"{r['ici_bytes'] / 2 ** 30:.2f} GiB",
             f"{r['ici_s']:.3f} s at {r['ici_bytes_per_s'] / 1e9:.0f} GB/s ICI")]
    lines = [f"roofline estimate, {r['chip']} ({r['method']}):", "| term | per chip | time |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines.append(f"step ~{r['step_s']:.3f} s ({r['bound']}-bound, terms overlapped; {r['serial_s']:.3f} s if serial), "
                 f"MFU ~{r['mfu']:.2f} ({r['mfu_serial']:.2f} serial)")
    return "\n".join(lines)


def run(args) -> int:
    # Only libtpu's compiler is needed; keep JAX's own backend on the host CPU (no TPU probing).
    jax.config.update("jax_platforms", "cpu")

    config = load_config(args.config, args.config_overrides)
    json_out = check_output_file(args.json, flag="--json") if args.json else None
    report = compile_report(config, args.topology, parse_mesh(args.mesh) or None, with_roofline=not args.no_roofline)
    m = report["per_chip"]
    print(f"{report['topology']} ({report['chips']} chips), mesh {report['mesh']}, attention "
          f"{report['attention_impl']}, compiled in {report['compile_s']}s")
    print(f"  params {report['params'] / 1e9:.3f}B, {report['tokens_per_sample']} tokens/sample, "
          f"batch {report['global_batch']}")
    print(f"  per chip: arguments {m['arguments_gib']:.2f} GiB, temporaries {m['temporaries_gib']:.2f} GiB, "
          f"outputs {m['outputs_gib']:.2f} GiB (aliased {m['aliased_gib']:.2f}) "
          f"-> peak ~{report['peak_estimate_gib']:.2f} GiB of {report['hbm_gib']} GiB HBM")
    print(f"  model FLOPs per step {report['model_flops_per_step']:.3e}"
          f" (attention kept {report['attention_kept_fraction']:.3f} of dense)")
    if report.get("roofline"):
        print(roofline_table(report["roofline"]))
    if json_out is not None:
        write_json(json_out, report)
    if not report["fits"]:
        print(f"does NOT fit: peak {report['peak_estimate_gib']:.1f} GiB > 95% of {report['hbm_gib']} GiB; "
              "use more fsdp/context, remat, or a smaller batch")
        return 1
    return 0
