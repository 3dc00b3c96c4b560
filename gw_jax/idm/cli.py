"""``gw-jax idm {train,eval,label,compare,faithfulness}``: inverse dynamics from video, with arm masking.

  gw-jax idm train --data DIR --workdir W [--steps N] [--no-mask] [--pool P --clip-frames T]
                                                                    segmenter + IDM -> W/ (Orbax)
  gw-jax idm eval --workdir W --data DIR [--json PATH]              held-out R² / MAE + a plot
  gw-jax idm label VIDEOS OUT --workdir W                           OUT/<name>.joints.npz (+ .csv)
  gw-jax idm compare --out DIR [--data DIR]                         masked vs unmasked report
  gw-jax idm faithfulness --demo RUNDIR --workdir W [--json PATH]   do a demo's action-driven rollouts show the
                                                                    commanded joints? R² / MAE + a plot

The work itself lives in the library (``gw_jax.idm.pipeline``, ``report``, ``faithfulness``); this module only
parses flags. Its folders and files are local (a gs:// URI is refused in one line); ``--json`` may be a URI.
"""

from __future__ import annotations

import argparse
import json

from gw_jax.idm.faithfulness import faithfulness_report
from gw_jax.idm.pipeline import evaluate, fit, label
from gw_jax.idm.report import compare
from gw_jax.storage import as_path, check_output_file, local_args, write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="train the arm segmenter and the IDM on `gw-jax sim` episodes")
    p.add_argument("--data", required=True, help="folder of i.mp4 + i.npz episodes (gw-jax sim)")
    p.add_argument("--workdir", required=True, help="where checkpoints and meta.json go")
    _training_flags(p)
    p.add_argument("--no-mask", action="store_true", help="feed raw frames (no arm masking, no segmenter)")
    p.add_argument("--pool", type=int, default=1,
                   help="average-pool frames PxP first, as a generator's codec does (the demo's: 2; default 1)")
    p.add_argument("--clip-frames", type=int, default=None,
                   help="keep T frames per episode by linspace sampling, as the demo's clips (9); default all")
    p = sub.add_parser("eval", help="per-joint R² and MAE on held-out episodes, plus a plot")
    p.add_argument("--workdir", required=True)
    p.add_argument("--data", required=True, help="the training folder (its held-out split is used) or a new one")
    p.add_argument("--json", help="write the metrics here as JSON")
    p.add_argument("--plot", help="PNG of predicted vs true joints (default WORKDIR/eval_joints.png)")
    p = sub.add_parser("label", help="predict joint trajectories for every mp4 in a folder")
    p.add_argument("videos", help="folder of .mp4 videos (same frame size as the training data)")
    p.add_argument("out", help="output folder for <name>.joints.npz and <name>.joints.csv")
    p.add_argument("--workdir", required=True)
    p = sub.add_parser("compare", help="train masked and unmasked IDMs on the same data; write a report")
    p.add_argument("--out", required=True, help="work folder (data/, masked/, unmasked/, idm.md, idm_joints.png)")
    p.add_argument("--data", help="episodes to use (default: simulate OUT/data with random backgrounds)")
    p.add_argument("--episodes", type=int, default=400,
                   help="episodes to simulate when --data is not given (default 400: docs/idm.md's setting)")
    p.add_argument("--report", help="markdown report path (default OUT/idm.md; the plot goes next to it)")
    _training_flags(p)
    p = sub.add_parser("faithfulness", help="IDM on a demo's generated rollouts vs the commanded joints")
    p.add_argument("--demo", required=True, help="a `gw-jax demo --out` folder (its rollouts.npz)")
    p.add_argument("--workdir", required=True, help="an IDM trained on frames like the rollouts "
                   "(`gw-jax idm train --pool 2 --clip-frames 9` for the demo)")
    p.add_argument("--json", help="write the metrics here as JSON")
    p.add_argument("--plot", help="PNG of IDM-predicted vs commanded joints (default RUNDIR/faithfulness.png)")


def _training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=2000, help="IDM training steps (default 2000)")
    p.add_argument("--seg-steps", type=int, default=300, help="segmenter training steps (default 300)")
    p.add_argument("--seed", type=int, default=0)


LOCAL_FLAGS = dict(data="--data", workdir="--workdir", plot="--plot", videos="VIDEOS", out="OUT", report="--report",
                   demo="--demo")


def run(args) -> int:
    local_args(args, LOCAL_FLAGS, command=f"idm {args.action}")
    json_out = check_output_file(args.json, flag="--json") if getattr(args, "json", None) else None
    if args.action == "train":
        summary = fit(args.data, args.workdir, steps=args.steps, seg_steps=args.seg_steps,
                      masked=not args.no_mask, seed=args.seed, pool=args.pool, clip_frames=args.clip_frames)
        print(json.dumps(summary, indent=1))
    elif args.action == "eval":
        metrics = evaluate(args.workdir, args.data, plot=args.plot or as_path(args.workdir) / "eval_joints.png")
        text = json.dumps(metrics, indent=1)
        if json_out is not None:
            write_text(json_out, text + "\n")
        print(text)
    elif args.action == "label":
        written = label(args.videos, args.out, args.workdir)
        print(f"labelled {len(written)} videos into {args.out}")
    elif args.action == "faithfulness":
        result = faithfulness_report(args.demo, args.workdir, plot=args.plot or as_path(args.demo) / "faithfulness.png")
        if json_out is not None:
            write_text(json_out, json.dumps(result, indent=1) + "\n")
        _print_faithfulness(result)
    else:
        report = compare(args.out, data=args.data, episodes=args.episodes, steps=args.steps,
                         seg_steps=args.seg_steps, seed=args.seed, report=args.report)
        print(f"wrote {report}")
    return 0


def _print_faithfulness(result: dict) -> None:
    print(f"IDM joints read from {result['episodes']} clips x {result['frames_scored']} generated frames "
          f"(frame 0 is given, not scored):")
    for name, m in result["sets"].items():
        print(f"  {name:24s} vs {m['target']:20s} R² {m['r2_mean']:7.3f}  MAE {m['mae_mean_rad']:.4f}")
    if "idm_heldout" in result:
        print(f"  IDM on its held-out simulated episodes: R² {result['idm_heldout']['r2_mean']:.3f}")
    if result["met"] is not None:
        print(f"action-driven R² {result['r2']['action']:.3f}: goal {result['goal_r2']} "
              f"{'met' if result['met'] else 'not met'}; plot {result.get('plot')}")
