"""``gw-jax lam {train,probe,label}``: a Genie-style latent action model learnt from unlabelled video.

  gw-jax lam train --data DIR --workdir W [--steps N]          LAM on the videos alone -> W/ (Orbax + meta.json)
  gw-jax lam probe --workdir W --data DIR [--json PATH]        linear-probe R² of latent vs true actions + a plot
  gw-jax lam label VIDEOS OUT --workdir W                      OUT/<name>.latent_actions.npy, (F, latent_dim)

The work itself lives in the library (``gw_jax.lam.pipeline``); this module only parses flags. Its folders
are local (a gs:// URI is refused in one line); ``--json`` may be a URI.
"""

from __future__ import annotations

import argparse
import json

from gw_jax.lam.pipeline import fit, label, probe
from gw_jax.storage import as_path, check_output_file, local_args, write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("train", help="train the LAM on the videos of `gw-jax sim` episodes (no labels used)")
    p.add_argument("--data", required=True, help="folder of i.mp4 (+ i.npz) episodes (gw-jax sim)")
    p.add_argument("--workdir", required=True, help="where the checkpoint and meta.json go")
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    p.add_argument("--batch", type=int, default=32, help="frame pairs per step (default 32)")
    p.add_argument("--size", type=int, default=32, help="frames are average-pooled to SIZE x SIZE (default 32)")
    p.add_argument("--latent-dim", type=int, default=7,
                   help="latent action dimensions (default 7: the demo DiT's action_dim)")
    p.add_argument("--noise", type=float, default=0.1, help="std of the training noise on the latent (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("probe", help="linear-probe R² of latent actions against the true actions, plus a plot")
    p.add_argument("--workdir", required=True)
    p.add_argument("--data", required=True, help="episodes with actions and joints, ideally unseen in training")
    p.add_argument("--json", help="write the results here as JSON")
    p.add_argument("--plot", help="PNG of probe predictions vs true joint deltas (default WORKDIR/probe.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe-train / probe-test episode split")
    p = sub.add_parser("label", help="latent actions for every mp4 in a folder")
    p.add_argument("videos", help="folder of .mp4 videos (sides a multiple of the LAM's frame size)")
    p.add_argument("out", help="output folder for <name>.latent_actions.npy")
    p.add_argument("--workdir", required=True)


LOCAL_FLAGS = dict(data="--data", workdir="--workdir", plot="--plot", videos="VIDEOS", out="OUT")


def run(args) -> int:
    local_args(args, LOCAL_FLAGS, command=f"lam {args.action}")
    json_out = check_output_file(args.json, flag="--json") if getattr(args, "json", None) else None
    if args.action == "train":
        summary = fit(args.data, args.workdir, steps=args.steps, batch=args.batch, size=args.size,
                      latent_dim=args.latent_dim, noise=args.noise, seed=args.seed)
        print(json.dumps(summary, indent=1))
    elif args.action == "probe":
        results = probe(args.workdir, args.data, seed=args.seed,
                        plot=args.plot or as_path(args.workdir) / "probe.png")
        text = json.dumps(results, indent=1)
        if json_out is not None:
            write_text(json_out, text + "\n")
        print(text)
    else:
        written = label(args.videos, args.out, args.workdir)
        print(f"labelled {len(written)} videos into {args.out}")
    return 0
