"""``gw-jax engine``: the data engine's whole loop, small (see ``gw_jax.engine.pipeline``).

    gw-jax engine --quick --seed 0 --out runs/engine     # OUT/report.json, OUT/rlds/gw_engine/1.0.0, pictures
"""

from __future__ import annotations

import argparse

from gw_jax.engine.pipeline import run_engine
from gw_jax.storage import local_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/engine", help="output folder (default runs/engine)")
    parser.add_argument("--quick", action="store_true", help="the small run (minutes on 2 CPU cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override the ViewTransfer training steps")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    local_args(args, dict(out="--out"), command="engine")  # the engine's stages write local files
    report = run_engine(args.out, quick=args.quick, seed=args.seed, steps=args.steps, progress=not args.no_progress)
    print(f"\nnovel views ({report['view_eval']['clips']} held-out clips): PSNR ViewTransfer "
          f"{report['view_psnr_model']:.2f} dB vs warp-only {report['view_psnr_warp_only']:.2f} dB; SSIM "
          f"{report['view_ssim_model']:.3f} vs {report['view_ssim_warp_only']:.3f}; in the holes "
          f"{report['view_psnr_holes_model']:.2f} vs {report['view_psnr_holes_warp_only']:.2f} dB "
          f"(release sampler from noise: {report['view_psnr_model_release_sampler']:.2f} dB)")
    print("gate AUC: " + ", ".join(f"{g} {a:.2f}" for g, a in report["gate_auc"].items()))
    print(f"kept {report['variants']['kept']} of {report['variants']['generated']} generated variants; "
          f"RLDS: {report['rlds_dir']} ({report['total_s']:.0f}s)")
    return 0
