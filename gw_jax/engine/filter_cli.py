"""``gw-jax filter DIR --idm W --thresholds T``: every gate's score for each episode of DIR, and keep/drop.

    gw-jax filter runs/engine/variants --idm runs/engine/idm --thresholds runs/engine/gates.json
writes DIR/gates.json ({episode: {scores, keep, failed}}); thresholds come from the engine's calibration.
"""

from __future__ import annotations

import argparse

from gw_jax.engine.filtering import filter_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="folder of episodes (i.mp4 + i.npz with intrinsics/extrinsics)")
    parser.add_argument("--idm", required=True, help="IDM workdir (gw-jax idm train, or OUT/idm of the engine)")
    parser.add_argument("--thresholds", required=True, help="gate thresholds JSON (OUT/gates.json of the engine)")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    result = filter_folder(args.data, args.idm, args.thresholds, progress=not args.no_progress)
    for name, episode in result["episodes"].items():
        print(f"{name}: {'keep' if episode['keep'] else 'drop (' + ', '.join(episode['failed']) + ')'}")
    print(f"kept {result['kept']} of {result['total']}; wrote {args.data}/gates.json")
    return 0
