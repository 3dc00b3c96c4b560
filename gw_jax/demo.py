"""``gw-jax demo``: the data engine end to end on a CPU, in minutes.

1. simulate robot-arm episodes with MuJoCo (train + held-out);
2. pack the training episodes into TFRecords with their text embeddings and verify every record;
   read the clips back through the reference transform (linspace frame sampling, [-1, 1]) and
   encode them (pixel codec: pooled + space-to-depth; the Wan VAE is the released model's codec);
3. train a tiny GigaWorld-0 DiT with the reference objective (first latent frame as reference);
4. roll out held-out episodes from their first frame with the reference sampler, trained and untrained;
5. write side-by-side videos (ground truth | untrained | trained), a loss curve and report.json with
   PSNR / SSIM of the generated frames against ground truth.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gw_jax.data.episodes import load_clips
from gw_jax.data.loader import ClipTransform, PackedRecords
from gw_jax.data.pack import pack, verify
from gw_jax.data.sim import simulate_dataset
from gw_jax.data.video import write_video
from gw_jax.diffusion import sample_reference
from gw_jax.models.pixel_codec import PixelCodec
from gw_jax.models.text_hash import HashTextEncoder
from gw_jax.train.data import ArrayBatches
from gw_jax.train.defaults import FULL, QUICK, demo_config
from gw_jax.train.loop import build_setup, train
from gw_jax.train.metrics import read_metrics
from gw_jax.video_metrics import psnr, ssim


def load_packed_clips(packed_dir: Path, clip_frames: int, size: int) -> dict:
    """Every record of a packed dataset through the loader's transform, once, in record order."""
    records = PackedRecords(packed_dir)
    transform = ClipTransform(clip_frames, size, size, records.index["text_encoder"])
    rng = np.random.default_rng(0)  # crops are no-ops here: the episodes already have the training size
    examples = [transform(records[i], rng) for i in range(len(records))]
    stacked = {k: np.stack([e[k] for e in examples]) for k in ("video", "text_emb", "fps")}
    return dict(stacked, episodes=[int(e["episode"]) for e in examples])


def rollout_from_first_frame(model, latents, text_emb, fps, key, sample_cfg):
    """Generates every latent frame after the first (the reference) with the reference sampler."""
    mask = jnp.zeros((1, 1, latents.shape[2], 1, 1)).at[:, :, 0].set(1.0)
    noise = jax.random.normal(key, latents.shape) * sample_cfg.sigma_max

    @jax.jit
    def run(noise, latents, text_emb, fps):
        out, _ = sample_reference(model, noise, context=text_emb, cond_latents=latents, cond_mask=mask,
                                  fps=fps, steps=sample_cfg.steps, guidance=sample_cfg.guidance,
                                  sigma_max=sample_cfg.sigma_max, augment_sigma=sample_cfg.augment_sigma)
        return out

    return np.asarray(run(noise, jnp.asarray(latents), jnp.asarray(text_emb), jnp.asarray(fps[:1])))


def _to_uint8(video_bcthw: np.ndarray) -> np.ndarray:
    """(B, 3, T, H, W) in [-1, 1] -> (B, T, H, W, 3) uint8."""
    return np.clip((np.moveaxis(video_bcthw, 1, -1) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)


def write_results(out: Path, truth, untrained, trained, prompts, losses, fps):
    # Imported here, not at the top, so that importing the demo (e.g. in a notebook) leaves the plotting
    # backend alone; the demo writes files only.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos_dir = out / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    gap = np.full(truth.shape[:3] + (2, 3), 255, np.uint8)
    side_by_side = np.concatenate([truth, gap, untrained, gap, trained], axis=3)  # (B, T, H, W', 3)
    side_by_side = side_by_side.repeat(4, axis=2).repeat(4, axis=3)  # 4x for viewing
    for i, clip in enumerate(side_by_side):
        write_video(videos_dir / f"heldout_{i}.mp4", clip, fps=max(float(fps), 1.0))
    # rollouts.png: per held-out clip three rows (truth, untrained, trained), frames left to right
    rows = [np.concatenate(list(video[i]), axis=1) for i in range(min(3, len(truth)))
            for video in (truth, untrained, trained)]
    plt.imsave(out / "rollouts.png", np.concatenate(rows, axis=0).repeat(2, axis=0).repeat(2, axis=1))
    steps = [m["step"] for m in losses]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [m["loss"] for m in losses], label="train loss (reference EDM-flow objective)")
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_yscale("log"), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=120)
    plt.close(fig)


def run_demo(out: str | Path, *, quick: bool = True, seed: int = 0, steps: int | None = None,
             progress: bool = True) -> dict:
    settings = dict(QUICK if quick else FULL)
    if steps is not None:
        settings["steps"] = steps
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings, t0 = {}, time.perf_counter()
    sim_kwargs = dict(frames=settings["sim_frames"], height=settings["size"], width=settings["size"],
                      fps=settings["sim_fps"], progress=progress, workers=2)
    simulate_dataset(out / "episodes" / "train", settings["train_episodes"], seed=seed, **sim_kwargs)
    simulate_dataset(out / "episodes" / "heldout", settings["heldout_episodes"], seed=seed + 1, **sim_kwargs)
    timings["simulate_s"] = time.perf_counter() - t0

    codec, text = PixelCodec(pool=2, fold=4), HashTextEncoder(width=32, max_length=16)
    t_pack = time.perf_counter()
    index = pack(out / "episodes" / "train", out / "packed", text_encoder=text, shards=2, workers=2,
                 progress=progress)
    problems = verify(out / "packed")
    if problems or index["num_records"] != settings["train_episodes"]:
        raise RuntimeError(f"packed data failed verification: {problems or index['skipped']}")
    train_clips = load_packed_clips(out / "packed", settings["clip_frames"], settings["size"])
    timings["pack_verify_load_s"] = time.perf_counter() - t_pack
    test_clips = load_clips(out / "episodes" / "heldout", settings["heldout_episodes"], settings["clip_frames"], text)
    train_latents = np.asarray(codec.encode(jnp.asarray(train_clips["video"])))
    test_latents = np.asarray(codec.encode(jnp.asarray(test_clips["video"])))

    config = demo_config(settings)
    config.seed = seed
    t1 = time.perf_counter()
    batches = ArrayBatches(dict(latents=train_latents, text_emb=train_clips["text_emb"], fps=train_clips["fps"]),
                           settings["batch_size"], seed=seed)
    result = train(config, out / "train", batches=batches, progress=progress)
    timings["train_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    initial = build_setup(config).init_state().params  # same seed: the weights training started from
    key = jax.random.key(seed + 7)
    rollouts = {}
    for name, params in (("untrained", initial), ("trained", result.state.params)):
        model = result.model_def.merge(params)
        latents = rollout_from_first_frame(model, test_latents, test_clips["text_emb"], test_clips["fps"], key,
                                           config.sample)
        rollouts[name] = _to_uint8(np.asarray(codec.decode(jnp.asarray(latents))))
    truth = _to_uint8(np.asarray(codec.pooled(jnp.asarray(test_clips["video"]))))
    timings["rollout_s"] = time.perf_counter() - t2

    generated = slice(1, None)  # frame 0 is the given reference frame
    scores = {}
    for name, video in rollouts.items():
        pairs = list(zip(truth, video, strict=True))
        scores[f"psnr_{name}"] = float(np.mean([psnr(t[generated] / 255, v[generated] / 255) for t, v in pairs]))
        scores[f"ssim_{name}"] = float(np.mean([ssim(t[generated] / 255, v[generated] / 255) for t, v in pairs]))
    # a baseline any world model should beat: repeat the reference frame
    copy_first = np.repeat(truth[:, :1], truth.shape[1], axis=1)
    scores["psnr_copy_first_frame"] = float(np.mean([psnr(t[generated] / 255, c[generated] / 255)
                                                     for t, c in zip(truth, copy_first, strict=True)]))
    losses = read_metrics(out / "train")
    write_results(out, truth, rollouts["untrained"], rollouts["trained"], test_clips["prompts"], losses,
                  float(test_clips["fps"][0]))
    report = dict(
        **scores,
        psnr_gain_db=scores["psnr_trained"] - scores["psnr_untrained"],
        heldout_episodes=settings["heldout_episodes"], train_episodes=settings["train_episodes"],
        train_steps=settings["steps"], clip_frames=settings["clip_frames"],
        frame_size=[settings["size"] // codec.pool] * 2, codec="pixel (2x2 average pool + 4x4 space-to-depth)",
        text_encoder=text.name, sampler=f"reference (Karras, order 1), {settings['sample_steps']} steps",
        packed=dict(records=index["num_records"], shards=len(index["shards"]), verified=True),
        first_loss=losses[0]["loss"] if losses else None, final_loss=losses[-1]["loss"] if losses else None,
        prompts=test_clips["prompts"], timings_s={k: round(v, 1) for k, v in timings.items()},
        total_s=round(time.perf_counter() - t0, 1), devices=[str(d) for d in jax.devices()],
    )
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="the small run (about 10 minutes on 2 CPU cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    report = run_demo(args.out, quick=args.quick, seed=args.seed, steps=args.steps, progress=not args.no_progress)
    print(f"\nheld-out rollouts from the first frame ({report['heldout_episodes']} episodes):")
    print(f"  PSNR  trained {report['psnr_trained']:.2f} dB  untrained {report['psnr_untrained']:.2f} dB  "
          f"(copy first frame {report['psnr_copy_first_frame']:.2f} dB)")
    print(f"  SSIM  trained {report['ssim_trained']:.3f}     untrained {report['ssim_untrained']:.3f}")
    print(f"wrote {args.out}/report.json, videos/, rollouts.png, loss.png in {report['total_s']:.0f}s")
    return 0
