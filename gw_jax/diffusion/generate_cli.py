"""``gw-jax generate``: videos from released weights, as the release's ``scripts/inference.py``.

    gw-jax generate --release GigaWorld-0-Video-GR1-2b --json assets/it2v.json --preset gr1 --out videos
    gw-jax generate --transformer T --vae V --text-encoder E --packed packed_test --limit 8 --out videos \\
        --lora mine=lora_dir:0.8 --lora-fuse --mesh data=2,context=4

Writes OUT/<i>.mp4 per item and OUT/settings.json (every setting and, per item, prompt, source and size).
The work is in ``gw_jax.diffusion.generate``.
"""

from __future__ import annotations

import argparse
import numpy as np

from gw_jax.data.video import write_video
from gw_jax.diffusion.generate import (DEFAULT_FPS, DEFAULT_SEED, NEGATIVE_PROMPT, PRESETS, GenerationPipeline,
                                       generate, requests_from_json, requests_from_packed, settings_json)
from gw_jax.errors import UserInputError
from gw_jax.parallel.mesh import describe, make_mesh
from gw_jax.storage import as_path, check_bucket, local_args, local_path, write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--release", help="a release folder with transformer/, vae/ and text_encoder/")
    parser.add_argument("--transformer", help="transformer folder (config.json + safetensors)")
    parser.add_argument("--vae", help="Wan2.1 VAE folder (diffusers layout)")
    parser.add_argument("--text-encoder", help="T5 folder (prompts embedded with the Flax T5)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--json", help='a JSON list of {"image": path, "prompt": text}')
    source.add_argument("--packed", help="packed test data (gw-jax pack): first frames, prompts, embeddings")
    parser.add_argument("--limit", type=int, default=None, help="at most this many packed records")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--lora", action="append", default=[],
                        help="adapter [NAME=]PATH[:SCALE] in the release's format (repeat for several)")
    parser.add_argument("--lora-fuse", action="store_true", help="merge the adapters into the weights")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="pretrain",
                        help="pretrain: 61x480x640, gr1: 93x480x768")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--fps", type=float, default=DEFAULT_FPS)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--negative-prompt", default=NEGATIVE_PROMPT, help="default: the release's")
    parser.add_argument("--mesh", default="data=-1",
                        help="mesh axes (default: all devices data-parallel), e.g. data=2,context=4 (ring attention)")
    parser.add_argument("--dtype", default="float32", help="transformer compute dtype (bfloat16 on TPU/GPU)")
    parser.add_argument("--attention", default=None,
                        help="attention kernel: xla | cudnn | splash (TPU: needed for 2B on one v5e) | auto | "
                             "context_ring | context_allgather (default: context_ring when the mesh has context > 1, "
                             "else xla)")
    parser.add_argument("--no-progress", action="store_true")


def parse_lora(specs: list[str]) -> dict:
    out = {}
    for i, spec in enumerate(specs):
        name, _, rest = spec.rpartition("=") if "=" in spec else (f"lora{i}", "", spec)
        path, scale = rest, 1.0
        if ":" in rest:
            head, _, tail = rest.rpartition(":")
            try:
                path, scale = head, float(tail)
            except ValueError:
                path = rest
        out[name] = (path, scale)
    return out


def parse_mesh(text: str) -> dict:
    try:
        return {k.strip(): int(v) for k, v in (item.split("=") for item in text.split(",") if item)}
    except ValueError as e:
        raise UserInputError(f"--mesh {text!r}: expected axis=size pairs like data=2,context=4") from e


def run(args) -> int:
    # inputs first: a bad JSON, image, record or output bucket fails in one line before any model is loaded
    local_args(args, {"release": "--release", "transformer": "--transformer", "vae": "--vae",
                      "text_encoder": "--text-encoder", "json": "--json"}, command="generate")
    lora_specs = {name: (local_path(path, flag="--lora", command="generate"), scale)
                  for name, (path, scale) in parse_lora(args.lora).items()}
    out = as_path(args.out, flag="--out")
    check_bucket(out, flag="--out")
    requests = requests_from_json(args.json) if args.json else requests_from_packed(args.packed, args.limit)
    axes = parse_mesh(args.mesh)
    mesh = make_mesh(axes)
    context = mesh.shape.get("context", 1) > 1
    pipe = GenerationPipeline.from_release(args.release, transformer=args.transformer, vae=args.vae,
                                           text_encoder=args.text_encoder, lora=lora_specs or None,
                                           lora_fuse=args.lora_fuse, dtype=args.dtype,
                                           attention_impl=args.attention or ("context_ring" if context else "xla"))
    results = generate(pipe, requests, num_frames=args.frames, height=args.height, width=args.width,
                       preset=args.preset, fps=args.fps, steps=args.steps, guidance=args.guidance, seed=args.seed,
                       negative_prompt=args.negative_prompt, mesh=mesh, progress=not args.no_progress)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, result in enumerate(results):
        frames = np.clip((np.moveaxis(result.video, 0, -1) + 1) * 127.5, 0, 255).round().astype(np.uint8)
        write_video(out / f"{i}.mp4", frames, fps=args.fps)
        files.append(f"{i}.mp4")
    settings = {k: v for k, v in vars(args).items() if k not in ("config_overrides", "no_progress")}
    settings.update(mesh=describe(mesh), lora=parse_lora(args.lora))
    write_text(out / "settings.json", settings_json(results, files, **settings))
    print(f"wrote {len(files)} videos and settings.json to {out}")
    return 0
