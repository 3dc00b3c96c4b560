"""``gw-jax demo``: the data engine end to end on a CPU, in minutes.

1. simulate robot-arm episodes with MuJoCo (train + held-out);
2. pack the training episodes into TFRecords with their text embeddings and verify every record;
   read the clips back through the reference transform (linspace frame sampling, [-1, 1]);
3. train a small latent codec on the training frames (``gw_jax.models.patch_vae``: 32x32 frames ->
   8x8x16 latents) and the FVD feature network (``gw_jax.models.video_features``);
4. train a tiny GigaWorld-0 DiT on the codec's latents with the reference objective (first latent
   frame as reference), log-sigma centred at ``p_mean`` (see docs/demo.md for why 1.5 here);
   The DiT conditions on the simulator's per-frame actions (normalised by the pack's statistics), each clip's
   dropped with probability ``action_dropout`` so the same model also rolls out without actions;
5. roll out held-out episodes from their first frame with the reference sampler: untrained, trained from
   image + text ("trained"), trained driven by the episode's true actions ("action") and by another held-out
   episode's actions ("action_swapped", a control that must score lower);
6. write side-by-side videos (ground truth | untrained | trained | action), a loss curve and report.json with
   PSNR / SSIM / FVD of the generated frames against ground truth and against repeating the first frame, and
   rollouts.npz: every rollout at its native size with the held-out joints and which episode's actions drove
   it (``gw_jax.data.rollouts``; `gw-jax idm faithfulness` reads it).

Why each setting is what it is, with the measurements: docs/demo.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gw_jax.data.episodes import episode_frames, load_clips
from gw_jax.data.loader import ClipTransform, PackedRecords, packed_action_stats
from gw_jax.data.pack import episodes_action_stats, pack, verify
from gw_jax.data.rollouts import ROLLOUTS_FILE, save_rollouts
from gw_jax.data.transforms import clip_actions, sample_frame_indices
from gw_jax.data.video import to_uint8, write_video
from gw_jax.demo_steps import cpu_seconds, run_accounting, simulate_episodes, train_demo_codec
from gw_jax.diffusion import reference_guidance_options, sample_ancestral, sample_reference, with_actions
from gw_jax.geometry.camera import project
from gw_jax.lam.pipeline import episode_latent_actions
from gw_jax.lam.pipeline import load as load_lam
from gw_jax.models.text_hash import HashTextEncoder
from gw_jax.storage import local_args
from gw_jax.train.data import ArrayBatches
from gw_jax.train.defaults import CODEC_FOLD, CODEC_POOL, DEMO_CAMERAS, FULL, QUICK, demo_config
from gw_jax.train.loop import build_setup, train
from gw_jax.train.metrics import read_metrics
from gw_jax.train.video_features import train_feature_net
from gw_jax.video_metrics import frechet_feature_distance, psnr, ssim


def load_packed_clips(packed_dir: Path, clip_frames: int, size: int, actions: bool = False) -> dict:
    """Every record of a packed dataset through the loader's transform, once, in record order (``actions``:
    with the normalised actions, and the pack's statistics as "action_stats")."""
    records = PackedRecords(packed_dir)
    stats = packed_action_stats(records, packed_dir) if actions else None
    transform = ClipTransform(clip_frames, size, size, records.index["text_encoder"], action_stats=stats)
    rng = np.random.default_rng(0)  # crops are no-ops here: the episodes already have the training size
    examples = [transform(records[i], rng) for i in range(len(records))]
    stacked = {k: np.stack([e[k] for e in examples]) for k in ("video", "text_emb", "fps") + ("actions",) * actions}
    if actions:
        stacked["action_stats"] = stats
    return dict(stacked, episodes=[int(e["episode"]) for e in examples])


def rollout_from_first_frame(model, latents, text_emb, fps, key, sample_cfg, eta: float = 0.0):
    """Generates every latent frame after the first (the reference) with the reference sampler (``eta`` > 0:
    its stochastic variant, ``sample_ancestral``)."""
    mask = jnp.zeros((1, 1, latents.shape[2], 1, 1)).at[:, :, 0].set(1.0)
    noise_key, step_key = jax.random.split(key) if eta else (key, None)
    noise = jax.random.normal(noise_key, latents.shape) * sample_cfg.sigma_max

    @jax.jit
    def run(noise, latents, text_emb, fps):
        kw = dict(context=text_emb, cond_latents=latents, cond_mask=mask, fps=fps, steps=sample_cfg.steps,
                  guidance=sample_cfg.guidance, sigma_max=sample_cfg.sigma_max, augment_sigma=sample_cfg.augment_sigma,
                  **reference_guidance_options(sample_cfg))
        out, _ = (sample_ancestral(model, noise, key=step_key, eta=eta, **kw) if eta else
                  sample_reference(model, noise, **kw))
        return out

    return np.asarray(run(noise, jnp.asarray(latents), jnp.asarray(text_emb), jnp.asarray(fps[:1])))


def write_results(out: Path, truth, untrained, trained, prompts, losses, fps, action=None):
    # Imported here, not at the top, so that importing the demo (e.g. in a notebook) leaves the plotting
    # backend alone; the demo writes files only.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    videos_dir = out / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    gap = np.full(truth.shape[:3] + (2, 3), 255, np.uint8)
    columns = [truth, untrained, trained] + ([action] if action is not None else [])
    side_by_side = np.concatenate([part for video in columns for part in (gap, video)][1:], axis=3)  # (B,T,H,W',3)
    side_by_side = side_by_side.repeat(4, axis=2).repeat(4, axis=3)  # 4x for viewing
    for i, clip in enumerate(side_by_side):
        write_video(videos_dir / f"heldout_{i}.mp4", clip, fps=max(float(fps), 1.0))
    # rollouts.png: per held-out clip a row each for truth, untrained, trained (and action), frames left to right
    rows = [np.concatenate(list(video[i]), axis=1) for i in range(min(3, len(truth))) for video in columns]
    plt.imsave(out / "rollouts.png", np.concatenate(rows, axis=0).repeat(2, axis=0).repeat(2, axis=1))
    steps = [m["step"] for m in losses]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [m["loss"] for m in losses], label="train loss (reference EDM-flow objective)")
    ax.set_xlabel("step"), ax.set_ylabel("loss"), ax.set_yscale("log"), ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=120)
    plt.close(fig)


def _joint_names(directory: Path) -> list[str]:
    with np.load(Path(directory) / "0.npz") as gt:
        return [str(n) for n in gt["joint_names"]]


def clip_states(directory: Path, episodes, clip_frames: int) -> np.ndarray:
    """Simulator ground truth at the clip's frames: (B, T, 13) joints (7), gripper xyz, cube xyz."""
    states = []
    for i in episodes:
        with np.load(Path(directory) / f"{int(i)}.npz") as gt:
            index = sample_frame_indices(len(gt["joints"]), clip_frames)
            states.append(np.concatenate([gt["joints"][index], gt["gripper_positions"][index],
                                          gt["object_positions"][index, 0]], axis=-1))
    return np.stack(states).astype(np.float32)


def cube_pixels(directory: Path, episodes, clip_frames: int, size: int) -> np.ndarray:
    """(B, T, 2) integer (row, column) of the cube's projected centre in ``size`` x ``size`` frames of each clip
    (the simulator's cube position through its camera; the cube moves once grasped)."""
    centres = []
    for i in episodes:
        with np.load(Path(directory) / f"{int(i)}.npz") as gt:
            index = sample_frame_indices(len(gt["joints"]), clip_frames)
            uv, _ = project(gt["object_positions"][index, 0], gt["intrinsics"], gt["extrinsics"])
            scale = size / (2 * gt["intrinsics"][0, 2])  # the camera's principal point is the frame's centre
            centres.append(np.floor(uv[:, ::-1] * scale).astype(int))
    return np.clip(np.stack(centres), 1, size - 2)


def cube_cell_weights(centres: np.ndarray, grid: int, cell: int, strength: float, origin: bool = False) -> np.ndarray:
    """(B, 1, T, grid, grid) loss weights of the latent cells, mean 1 per clip: 1 + ``strength`` on the cells
    (``cell`` x ``cell`` pixels each) that the 3x3 pixels around the cube's centre (``cube_pixels``) touch, so the
    DiT's loss counts the cube's few pixels more; ``origin``: also around the first frame's centre in every frame,
    so that a cube left behind where the gripper took it from costs as much as a missing one. The simulator knows
    where the cube is; real robot data would need a segmenter (or ``loss.detail_weight``, which needs nothing)."""
    b, t = centres.shape[:2]
    weights = np.ones((b, 1, t, grid, grid), np.float32)
    places = [centres]
    if origin:
        places.append(np.repeat(centres[:, :1], t, axis=1))
    for i in range(b):
        for f in range(t):
            for r, c in (place[i, f] for place in places):
                rows = slice(max(r - 1, 0) // cell, min(r + 1, grid * cell - 1) // cell + 1)
                cols = slice(max(c - 1, 0) // cell, min(c + 1, grid * cell - 1) // cell + 1)
                weights[i, 0, f, rows, cols] = 1.0 + strength
    return weights / weights.mean(axis=(1, 2, 3, 4), keepdims=True)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    return rgb / (np.sum(rgb, axis=-1, keepdims=True) + 30.0)  # + 30: near-black pixels have no hue


def _block_chroma(frame: np.ndarray) -> np.ndarray:
    """(H-1, W-1, 3): chromaticity of the mean colour of every 2x2 block of a (H, W, 3) frame."""
    f = frame.astype(np.float32)
    return _chroma((f[:-1, :-1] + f[1:, :-1] + f[:-1, 1:] + f[1:, 1:]) / 4)


def _reference_chroma(first: np.ndarray, centre) -> tuple[np.ndarray, np.ndarray]:
    """(table, cube) chromaticities from a clip's first (H, W, 3) frame around the cube's (row, column): the
    table's the median of the 9x9 window, the cube's the 2x2 block of the 3x3 window furthest from it."""
    r, c = centre
    around = first[max(r - 4, 0):r + 5, max(c - 4, 0):c + 5].reshape(-1, 3).astype(np.float32)
    table = _chroma(np.median(around, axis=0))
    blocks = _block_chroma(first)[r - 1:r + 1, c - 1:c + 1].reshape(-1, 3)
    return table, blocks[np.argmax(np.linalg.norm(blocks - table, axis=-1))]


def _cube_blocks(video: np.ndarray, centres: np.ndarray):
    """Per clip: (table, cube) chromaticities and (T, 4, 3), the four 2x2 blocks' around each frame's centre."""
    for clip, clip_centres in zip(video, centres, strict=True):
        table, cube = _reference_chroma(clip[0], clip_centres[0])
        blocks = np.stack([_block_chroma(frame)[r - 1:r + 1, c - 1:c + 1].reshape(-1, 3)
                           for frame, (r, c) in zip(clip, clip_centres, strict=True)])
        yield table, cube, blocks


def cube_visible(video: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(B, T) bool: is the cube visible in each frame of ``video``, (B, T, H, W, 3) uint8, at ``centres``
    (B, T, 2) from ``cube_pixels``: the chromaticity (r, g, b) / (r + g + b) of one of the four 2x2 blocks of the
    3x3 window around the centre is nearer the cube's than half the cube's distance to the table's. Chromaticity,
    so that the arm's shadow on the table (darker, the table's hue) does not count; 2x2 means, so that noise
    does not. Both colours come from the video's own first frame (the given reference: as the codec renders it, for
    the rollouts): the cube's is the 2x2 block there furthest from the table's, the table's the median of the 9x9
    window."""
    return np.stack([np.min(np.linalg.norm(blocks - cube, axis=-1), axis=-1) < 0.5 * np.linalg.norm(cube - table)
                     for table, cube, blocks in _cube_blocks(video, centres)])


def moved_frames(centres: np.ndarray, min_shift: float = 2.0) -> np.ndarray:
    """(B, T) bool: the frames where the simulator has moved the cube more than ``min_shift`` pixels from its
    first-frame centre (``centres`` (B, T, 2) from ``cube_pixels``)."""
    return np.linalg.norm(centres - centres[:, :1], axis=-1) > min_shift


def cube_moved(video: np.ndarray, centres: np.ndarray,
               min_shift: float = 2.0) -> tuple[float | None, float | None, int]:
    """(at its place, left behind, frames): over the frames of ``video`` where the simulator has moved the cube
    more than ``min_shift`` pixels from its first-frame centre (picked up or pushed), the share in which
    :func:`cube_visible` finds it at its centre there, the share in which it finds it still at the first frame's
    centre (a world model that treats the cube as scenery), and how many such frames there are. No such frame:
    (None, None, 0), which report.json writes as null (strict JSON has no NaN)."""
    start_btc = np.repeat(centres[:, :1], centres.shape[1], axis=1)
    moved_bt = moved_frames(centres, min_shift)
    if not moved_bt.any():
        return None, None, 0
    return (float(cube_visible(video, centres)[moved_bt].mean()),
            float(cube_visible(video, start_btc)[moved_bt].mean()), int(moved_bt.sum()))


def cube_contrast(video: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(B, T, 2): how much cube each frame shows at its centre, for a faint or off-colour cube that
    :func:`cube_visible` calls absent. Of the four 2x2 blocks the one whose chromaticity is furthest from the
    table's: [0] its distance from the table over the cube's (1: as strong as the first frame's cube, 0: bare
    table), [1] the cosine between the two offsets from the table (1: the cube's hue, 0 or less: another)."""
    out = []
    for table, cube, blocks in _cube_blocks(video, centres):
        offsets = blocks - table  # (T, 4, 3)
        best = offsets[np.arange(len(offsets)), np.argmax(np.linalg.norm(offsets, axis=-1), axis=-1)]
        size, cube_size = np.linalg.norm(best, axis=-1), np.linalg.norm(cube - table)
        out.append(np.stack([size / cube_size, best @ (cube - table) / (size * cube_size + 1e-9)], axis=-1))
    return np.stack(out)


def score(truth: np.ndarray, videos: dict, feature_net) -> dict:
    """PSNR / SSIM over the generated frames (frame 0 is given) and FVD of whole clips, per video set.

    truth and videos: (B, T, H, W, 3) uint8."""
    def unit(v):  # (B, T, H, W, 3) uint8 -> (B, 3, T, H, W) in [-1, 1], the feature network's input
        return np.moveaxis(v.astype(np.float32) / 127.5 - 1.0, -1, 1)

    real = feature_net.features(unit(truth))
    scores = {}
    generated = slice(1, None)  # frame 0 is the given reference frame
    for name, video in videos.items():
        pairs = list(zip(truth, video, strict=True))
        scores[f"psnr_{name}"] = float(np.mean([psnr(t[generated] / 255, v[generated] / 255) for t, v in pairs]))
        scores[f"ssim_{name}"] = float(np.mean([ssim(t[generated] / 255, v[generated] / 255) for t, v in pairs]))
        scores[f"fvd_{name}"] = frechet_feature_distance(real, feature_net.features(unit(video)))
    return scores


def _use_latent_actions(lam_workdir, episodes_dir: Path, train_clips: dict, test_clips: dict, clip_frames: int):
    """Replaces the clips' actions (in place) with latent actions from a trained LAM (``gw-jax lam train``), read
    off each episode's own frames and aligned and normalised exactly as the recorded commands are."""
    train_z = episode_latent_actions(lam_workdir, episodes_dir / "train", train_clips["episodes"])
    test_z = episode_latent_actions(lam_workdir, episodes_dir / "heldout", range(len(test_clips["video"])))
    stats = episodes_action_stats(train_z, [f"train/{i}" for i in train_clips["episodes"]])
    index = sample_frame_indices(len(train_z[0]), clip_frames)
    train_clips["actions"] = np.stack([clip_actions(z, index, stats) for z in train_z])
    test_clips["actions"] = np.stack([clip_actions(z, index, stats) for z in test_z])
    train_clips["action_stats"] = test_clips["action_stats"] = stats


def run_demo(out: str | Path, *, quick: bool = True, seed: int = 0, steps: int | None = None,
             progress: bool = True, lam_workdir: str | Path | None = None, camera: str = "default") -> dict:
    """The demo (see the module docstring); ``lam_workdir``: drive the DiT with a trained LAM's latent actions
    instead of the simulator's commands (training and the action rollouts alike); ``camera``: a framing of
    ``DEMO_CAMERAS``."""
    settings = dict(QUICK if quick else FULL, camera=DEMO_CAMERAS[camera])
    if steps is not None:
        settings["steps"] = steps
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings, t0, cpu0 = {}, time.perf_counter(), cpu_seconds()
    train_dir, heldout_dir = simulate_episodes(out, settings, seed=seed, progress=progress)
    timings["simulate_s"] = time.perf_counter() - t0

    text = HashTextEncoder(width=32, max_length=16)
    t_pack = time.perf_counter()
    index = pack(train_dir, out / "packed", text_encoder=text, shards=2, workers=2, progress=progress)
    problems = verify(out / "packed")
    if problems or index["num_records"] != settings["train_episodes"]:
        raise RuntimeError(f"packed data failed verification: {problems or index['skipped']}")
    use_actions = bool(settings["action_dim"])
    train_clips = load_packed_clips(out / "packed", settings["clip_frames"], settings["size"], actions=use_actions)
    timings["pack_verify_load_s"] = time.perf_counter() - t_pack
    test_clips = load_clips(heldout_dir, settings["heldout_episodes"], settings["clip_frames"], text,
                            action_stats=train_clips.get("action_stats"))  # normalised as the training actions
    if lam_workdir is not None and use_actions:  # the recorded commands replaced by the LAM's latent actions
        _use_latent_actions(lam_workdir, out / "episodes", train_clips, test_clips, settings["clip_frames"])

    t_codec = time.perf_counter()
    codec, codec_losses = train_demo_codec(episode_frames(train_dir, train_clips["episodes"]), settings,
                                           out / "codec", seed=seed, progress=progress)
    train_latents = np.asarray(codec.encode(jnp.asarray(train_clips["video"])))
    test_latents = np.asarray(codec.encode(jnp.asarray(test_clips["video"])))
    timings["codec_s"] = time.perf_counter() - t_codec
    t_features = time.perf_counter()
    pooled = lambda video: np.asarray(codec.pooled(jnp.asarray(video)))  # noqa: E731
    feature_net = train_feature_net(
        pooled(train_clips["video"]), clip_states(train_dir, train_clips["episodes"], settings["clip_frames"]),
        steps=settings["feature_steps"], seed=seed, progress=progress)
    test_states = clip_states(heldout_dir, range(settings["heldout_episodes"]), settings["clip_frames"])
    timings["fvd_features_s"] = time.perf_counter() - t_features

    config = demo_config(settings, codec_path=str((out / "codec").absolute()))
    config.seed = seed
    t1 = time.perf_counter()
    arrays = dict(latents=train_latents, text_emb=train_clips["text_emb"], fps=train_clips["fps"])
    if use_actions:
        arrays["actions"] = train_clips["actions"]
        config.data.action_stats = train_clips["action_stats"]  # saved with the config, for `gw-jax sample`
    if settings.get("cube_weight"):  # the cube's latent cells weigh more in the loss (the simulator's positions)
        arrays["loss_weights"] = cube_cell_weights(
            cube_pixels(train_dir, train_clips["episodes"], settings["clip_frames"],
                        settings["size"] // CODEC_POOL), train_latents.shape[-1], CODEC_FOLD, settings["cube_weight"])
    batches = ArrayBatches(arrays, settings["batch_size"], seed=seed)
    result = train(config, out / "train", batches=batches, progress=progress)
    timings["train_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    initial = build_setup(config).init_state().params  # same seed: the weights training started from
    trained = result.state.ema_params if settings["sample_params"] == "ema" else result.state.params
    key = jax.random.key(seed + 7)
    runs = [("untrained", initial, None), ("trained", trained, None)]  # image + text
    rows = np.arange(settings["heldout_episodes"])
    drivers = dict(action=rows, action_swapped=np.roll(rows, 1)) if use_actions else {}  # whose actions drive
    for name, driver in drivers.items():  # the episode's own actions, and (a control) another held-out episode's
        runs.append((name, trained, test_clips["actions"][driver]))
    rollouts = {}
    for name, params, actions in runs:
        model = result.model_def.merge(params)
        if actions is not None:
            model = with_actions(model, actions, guidance=config.sample.action_guidance)
        latents = rollout_from_first_frame(model, test_latents, test_clips["text_emb"], test_clips["fps"], key,
                                           config.sample)
        rollouts[name] = to_uint8(np.asarray(codec.decode(jnp.asarray(latents))))
    truth = to_uint8(pooled(test_clips["video"]))
    timings["rollout_s"] = time.perf_counter() - t2

    # a baseline any world model should beat: repeat the reference frame
    rollouts["copy_first_frame"] = np.repeat(truth[:, :1], truth.shape[1], axis=1)
    scores = score(truth, rollouts, feature_net)
    codec_video = to_uint8(np.asarray(codec.decode(jnp.asarray(test_latents))))
    centres = cube_pixels(heldout_dir, rows, settings["clip_frames"], truth.shape[2])
    for name, video in dict(rollouts, codec=codec_video).items():  # the cube in the generated frames (issue 16)
        visible = cube_visible(video, centres)[:, 1:]
        scores[f"cube_visible_{name}"] = float(visible.mean())
        scores[f"cube_visible_{name}_per_frame"] = [round(float(v), 3) for v in visible.mean(axis=0)]
        scores[f"cube_moved_at_place_{name}"], scores[f"cube_left_behind_{name}"], moved_frames = cube_moved(
            video, centres)
    scores["cube_moved_frames"] = moved_frames  # the same frames for every video: the simulator's cube
    codec_psnr = score(truth, {"codec": codec_video}, feature_net)["psnr_codec"]
    losses = read_metrics(out / "train")
    write_results(out, truth, rollouts["untrained"], rollouts["trained"], test_clips["prompts"], losses,
                  float(test_clips["fps"][0]), action=rollouts.get("action"))
    names = _joint_names(heldout_dir)  # clip_states' first columns are the joints
    save_rollouts(out / ROLLOUTS_FILE, dict(truth=truth, codec=codec_video, **rollouts), test_states[..., :len(names)],
                  names, drivers, episodes=rows, fps=float(test_clips["fps"][0]))
    report = dict(
        **scores,
        psnr_gain_db=scores["psnr_trained"] - scores["psnr_untrained"],
        heldout_episodes=settings["heldout_episodes"], train_episodes=settings["train_episodes"],
        train_steps=settings["steps"], clip_frames=settings["clip_frames"],
        frame_size=[settings["size"] // CODEC_POOL] * 2,
        codec=dict(kind="PatchVAE (learned: 4x4-patch autoencoder, PCA start, noise-robust decoder)",
                   latent_shape=[settings["codec_channels"], settings["size"] // (CODEC_POOL * CODEC_FOLD)],
                   heldout_psnr=codec_psnr, final_loss=float(np.mean(codec_losses[-20:])) if codec_losses else None),
        fvd_features=dict(network="StateNet trained on the simulator's per-frame state",
                          heldout_state_r2=feature_net.r2(pooled(test_clips["video"]), test_states),
                          clips=settings["heldout_episodes"]),
        text_encoder=text.name,
        sampler=(f"reference (Karras, order 1), {settings['sample_steps']} steps, sigma_max {settings['sigma_max']}, "
                 f"{settings['sample_params']} weights, guidance on the reference frame "
                 f"{settings.get('reference_guidance', 0.0)} at sigma >= "
                 f"{settings.get('reference_guidance_min_sigma', 0.0)} (trained without it: "
                 f"{settings.get('ref_dropout', 0.0)})"),
        training_sigma=f"log sigma ~ N({settings['p_mean']}, {settings['p_std']})",
        actions=(dict(action_dim=settings["action_dim"], dropout=settings["action_dropout"],
                      source=f"latent actions (LAM {lam_workdir})" if lam_workdir else "simulator commands",
                      guidance=settings["action_guidance"], swapped="each held-out episode driven by the next one's")
                 if use_actions else None),
        packed=dict(records=index["num_records"], shards=len(index["shards"]), verified=True),
        first_loss=losses[0]["loss"] if losses else None, final_loss=losses[-1]["loss"] if losses else None,
        prompts=test_clips["prompts"], **run_accounting(timings, t0, cpu0),
    )
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="the small run (about 10-11 minutes on 2 CPU cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    parser.add_argument("--camera", choices=sorted(DEMO_CAMERAS), default="default",
                        help="default: the simulator's camera; workspace: a closer framing of the cube's workspace "
                             "(the cube ~4-5 pixels wide instead of ~2; docs/demo.md 'Framing')")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--lam-workdir", default=None,
                        help="drive the DiT with this trained LAM's latent actions (gw-jax lam train) instead of "
                             "the simulator's commands")


def _trained_action(report: dict, score: str) -> str:
    """'trained 0.62, action 0.64': the score of the image + text rollouts, and of the action-driven ones if run."""
    action = f", action {report[score + '_action']:.2f}" if score + "_action" in report else ""
    return f"trained {report[score + '_trained']:.2f}{action}"


def run(args) -> int:
    local_args(args, dict(out="--out", lam_workdir="--lam-workdir"), command="demo")
    if args.lam_workdir is not None:
        load_lam(args.lam_workdir)  # a missing or unreadable LAM fails now, not after the simulation
    report = run_demo(args.out, quick=args.quick, seed=args.seed, steps=args.steps, progress=not args.no_progress,
                      lam_workdir=args.lam_workdir, camera=args.camera)
    print(f"\nheld-out rollouts from the first frame ({report['heldout_episodes']} episodes):")
    print(f"  PSNR  trained {report['psnr_trained']:.2f} dB  untrained {report['psnr_untrained']:.2f} dB  "
          f"(copy first frame {report['psnr_copy_first_frame']:.2f} dB)")
    print(f"  SSIM  trained {report['ssim_trained']:.3f}     untrained {report['ssim_untrained']:.3f}  "
          f"(copy first frame {report['ssim_copy_first_frame']:.3f})")
    print(f"  FVD   trained {report['fvd_trained']:.1f}     untrained {report['fvd_untrained']:.1f}  "
          f"(copy first frame {report['fvd_copy_first_frame']:.1f})")
    print(f"  cube visible (share of generated frames): {_trained_action(report, 'cube_visible')}  (codec "
          f"{report['cube_visible_codec']:.2f}, copy first frame {report['cube_visible_copy_first_frame']:.2f})")
    if report["cube_moved_frames"]:
        print(f"  the moved cube ({report['cube_moved_frames']} generated frames where the simulator moved it): at "
              f"its place {_trained_action(report, 'cube_moved_at_place')} (codec "
              f"{report['cube_moved_at_place_codec']:.2f}); left where it was "
              f"{_trained_action(report, 'cube_left_behind')}")
    else:
        print("  the moved cube: the simulator moved no held-out cube in these clips")
    if "psnr_action" in report:
        print(f"driven by the episode's actions: PSNR {report['psnr_action']:.2f} dB, SSIM {report['ssim_action']:.3f}"
              f"  (another episode's actions: PSNR {report['psnr_action_swapped']:.2f} dB, "
              f"SSIM {report['ssim_action_swapped']:.3f})")
    print(f"wrote {args.out}/report.json, {ROLLOUTS_FILE}, videos/, rollouts.png, loss.png in {report['total_s']:.0f}s "
          f"({report['cpu_s']:.0f} CPU-s)")
    return 0
