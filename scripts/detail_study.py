"""Small-detail study for the demo's DiT (issues 16 / 17): retrain on a finished `gw-jax demo --quick` run's data and
codec with a settings variant, or sample a trained workdir with sampler variants; score PSNR (image + text,
action-driven, swapped, copy first frame), a 3x3-pixel "cube window" PSNR at the cube's projected centre, and the
IDM's R² on the action-driven rollouts (an IDM workdir trained on 32x32, 9-frame clips: `gw-jax idm train --pool 2
--clip-frames 9`).

    python scripts/detail_study.py train RUN OUT '{"detail_weight": 2.0}'      # OUT/train: the retrained DiT
    python scripts/detail_study.py eval RUN WORKDIR IDM NAME '{"action_guidance": 1.5, "steps": 40, "params": "raw"}'
    python scripts/detail_study.py eval RUN WORKDIR - NAME '{"eta": 1.0}'          # the stochastic sampler
    python scripts/detail_study.py train RUN OUT '{"ref_dropout": 0.1}'     # then guidance on the reference frame:
    python scripts/detail_study.py eval RUN OUT/train - g '{"reference_guidance_min_sigma": 1}' # and reference_guidance
    python scripts/detail_study.py x0 RUN WORKDIR [actions] [train]   # the cube in the DiT's x0 prediction per sigma
    python scripts/detail_study.py train RUN OUT '{"moved_cube_weight": 32}'  # moved-cube cells ~2x the still cube's

train: QUICK's settings plus the variant (QUICK trains 2500 steps since session 31; the 1500-step rows of
docs/demo.md's earlier sections pass "steps": 1500; QUICK trains at p_mean 1.5 since session 39: pass "p_mean": 1.0 to
retrain an earlier section's rows).
IDM "-": no IDM (no R²). Results append to results.jsonl next to WORKDIR; NAME.png: 3 held-out clips, rows truth /
image + text / action-driven; NAME.npz: the videos (rollouts.npz's names); cube_visible_*: the share of generated
frames whose cube `gw_jax.demo.cube_visible` finds (per frame in *_frames); cube_moved_at_place_* /
cube_left_behind_*: `gw_jax.demo.cube_moved` (where the simulator moved the cube: drawn there / left where it was).
"""
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from gw_jax import demo
from gw_jax.data.episodes import load_clips
from gw_jax.data.video import to_uint8
from gw_jax.diffusion import make_x0_fn, with_actions
from gw_jax.geometry.camera import project
from gw_jax.idm.pipeline import predict
from gw_jax.idm.train import joint_metrics, load
from gw_jax.models.patch_vae import PatchVAE
from gw_jax.models.text_hash import HashTextEncoder
from gw_jax.train.data import ArrayBatches
from gw_jax.train.defaults import CODEC_FOLD, CODEC_POOL, QUICK, demo_config
from gw_jax.train.export import restore_workdir
from gw_jax.train.loop import train
from gw_jax.video_metrics import psnr, ssim


def data(run: Path, settings):
    text = HashTextEncoder(width=32, max_length=16)
    train_clips = demo.load_packed_clips(run / "packed", settings["clip_frames"], settings["size"], actions=True)
    test_clips = load_clips(run / "episodes" / "heldout", settings["heldout_episodes"], settings["clip_frames"], text,
                            action_stats=train_clips["action_stats"])
    return train_clips, test_clips, PatchVAE.load(run / "codec")


def cube_window_psnr(run: Path, truth, gen, clip_frames):
    errors = []
    for i in range(len(truth)):
        gt = np.load(run / "episodes" / "heldout" / f"{i}.npz")
        idx = np.linspace(0, len(gt["joints"]) - 1, clip_frames).astype(int)
        uv, _ = project(gt["object_positions"][idx, 0], gt["intrinsics"], gt["extrinsics"])
        uv = uv / 2  # 64 -> 32 pixels
        for f in range(1, clip_frames):
            u, v = np.clip(np.round(uv[f]).astype(int), 1, truth.shape[3] - 2)
            a = truth[i, f, v - 1:v + 2, u - 1:u + 2] / 255
            b = gen[i, f, v - 1:v + 2, u - 1:u + 2] / 255
            errors.append(float(np.mean((a - b) ** 2)))
    return float(10 * np.log10(1 / np.mean(errors)))


def main():
    mode, run = sys.argv[1], Path(sys.argv[2])
    settings = dict(QUICK)
    if mode == "train":
        out, variant = Path(sys.argv[3]), json.loads(sys.argv[4])
        seed = int(variant.pop("seed", 0))
        settings.update(variant)
        train_clips, _, codec = data(run, settings)
        config = demo_config(settings, codec_path=str((run / "codec").absolute()))
        config.seed = seed
        config.data.action_stats = train_clips["action_stats"]
        arrays = dict(latents=np.asarray(codec.encode(jnp.asarray(train_clips["video"]))),
                      text_emb=train_clips["text_emb"], fps=train_clips["fps"], actions=train_clips["actions"])
        if settings.get("cube_weight"):
            centres = demo.cube_pixels(run / "episodes" / "train", train_clips["episodes"], settings["clip_frames"],
                                       settings["size"] // CODEC_POOL)
            arrays["loss_weights"] = demo.cube_cell_weights(centres, arrays["latents"].shape[-1], CODEC_FOLD,
                                                            settings["cube_weight"],
                                                            origin=settings.get("cube_weight_origin", False))
            if settings.get("moved_cube_weight"):  # the moved cube's cells weigh more still (where it was carried)
                moved = demo.cube_cell_weights(centres, arrays["latents"].shape[-1], CODEC_FOLD,
                                               settings["moved_cube_weight"])
                weights = np.where(demo.moved_frames(centres)[:, None, :, None, None], moved, arrays["loss_weights"])
                arrays["loss_weights"] = weights / weights.mean(axis=(1, 2, 3, 4), keepdims=True)
        t = time.time()
        train(config, out / "train", batches=ArrayBatches(arrays, settings["batch_size"], seed=seed), progress=False)
        print(json.dumps(dict(out=str(out), variant=variant, train_s=round(time.time() - t, 1))))
        return
    if mode == "x0":
        return x0_table(run, settings, Path(sys.argv[3]), actions="actions" in sys.argv[4:],
                        training_clips="train" in sys.argv[4:])
    workdir, idm_dir, name = Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
    variant = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    seed = int(variant.get("seed", 0))
    _, test_clips, codec = data(run, settings)
    config, setup, state = restore_workdir(workdir)
    sample = config.sample
    sample.steps = variant.get("steps", sample.steps)
    for option in ("reference_guidance", "reference_guidance_min_sigma"):
        sample[option] = variant.get(option, sample.get(option, 0.0))
    params = state.ema_params if variant.get("params", "ema") == "ema" else state.params
    base = setup.model_def.merge(params, setup.init_frozen())
    latents = np.asarray(codec.encode(jnp.asarray(test_clips["video"])))
    rows = np.arange(len(latents))
    key = jax.random.key(seed + 7)
    guidance = variant.get("action_guidance", sample.get("action_guidance", 0.0))
    videos = {}
    for set_name, driver in (("trained", None), ("action", rows), ("action_swapped", np.roll(rows, 1))):
        model = base if driver is None else with_actions(base, test_clips["actions"][driver], guidance=guidance)
        out = demo.rollout_from_first_frame(model, latents, test_clips["text_emb"], test_clips["fps"], key, sample,
                                            eta=variant.get("eta", 0.0))
        videos[set_name] = to_uint8(np.asarray(codec.decode(jnp.asarray(out))))
    truth = to_uint8(np.asarray(codec.pooled(jnp.asarray(test_clips["video"]))))
    videos["copy_first_frame"] = np.repeat(truth[:, :1], truth.shape[1], axis=1)
    res = dict(name=name, workdir=str(workdir), variant=variant)
    centres = demo.cube_pixels(run / "episodes" / "heldout", rows, settings["clip_frames"], truth.shape[2])
    videos["codec"] = to_uint8(np.asarray(codec.decode(jnp.asarray(latents))))
    for k, v in videos.items():
        res[f"psnr_{k}"] = float(np.mean([psnr(a[1:] / 255, b[1:] / 255) for a, b in zip(truth, v, strict=True)]))
        res[f"ssim_{k}"] = float(np.mean([ssim(a[1:] / 255, b[1:] / 255) for a, b in zip(truth, v, strict=True)]))
        res[f"cube_{k}"] = cube_window_psnr(run, truth, v, settings["clip_frames"])
        visible = demo.cube_visible(v, centres)[:, 1:]  # generated frames
        res[f"cube_visible_{k}"] = float(visible.mean())
        res[f"cube_visible_{k}_frames"] = [round(float(x), 3) for x in visible.mean(0)]
        contrast = np.median(demo.cube_contrast(v, centres)[:, 1:], axis=0)
        res[f"cube_contrast_{k}_frames"] = [[round(float(x), 2) for x in frame] for frame in contrast]
        res[f"cube_moved_at_place_{k}"], res[f"cube_left_behind_{k}"], _ = demo.cube_moved(v, centres)
    np.savez_compressed(workdir.parent / f"{name}.npz",
                        **{f"video_{k}": v for k, v in dict(truth=truth, **videos).items()})
    if str(idm_dir) == "-":  # no IDM: skip the joints' R²
        idm_dir = None
    joints = demo.clip_states(run / "episodes" / "heldout", rows, settings["clip_frames"])[..., :7]
    idm = load(idm_dir) if idm_dir is not None else None
    names = demo._joint_names(run / "episodes" / "heldout")
    for k, driver in (("action", rows), ("truth", rows)) if idm is not None else ():
        pred = predict(idm, truth if k == "truth" else videos[k])[0]
        m = joint_metrics(pred[:, 1:], joints[driver][:, 1:], names)
        res[f"r2_{k}"] = m["r2_mean"]
        res[f"r2_{k}_joints"] = {j: round(v["r2"], 3) for j, v in m["joints"].items()}
    print(json.dumps(res))
    with open(workdir.parent / "results.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    picture = [np.concatenate(list(v[i]), axis=1) for i in range(3)
               for v in (truth, videos["trained"], videos["action"])]
    plt.imsave(workdir.parent / f"{name}.png", np.concatenate(picture, 0).repeat(3, 0).repeat(3, 1))


def x0_table(run: Path, settings, workdir: Path, actions: bool, training_clips: bool,
             sigmas=(0.02, 0.1, 0.3, 1.0, 3.0, 10.0)):
    train_clips, clips, codec = data(run, settings)
    episodes_dir, episodes = run / "episodes" / "heldout", np.arange(len(clips["video"]))
    if training_clips:
        rows = np.linspace(0, len(train_clips["video"]) - 1, 32).astype(int)
        clips = {k: train_clips[k][rows] for k in ("video", "text_emb", "fps", "actions")}
        episodes_dir, episodes = run / "episodes" / "train", np.asarray(train_clips["episodes"])[rows]
    _, setup, state = restore_workdir(workdir)
    model = setup.model_def.merge(state.ema_params, setup.init_frozen())
    if actions:
        model = with_actions(model, clips["actions"], guidance=0.0)
    latents = jnp.asarray(codec.encode(jnp.asarray(clips["video"])))
    mask = jnp.zeros((1, 1, latents.shape[2], 1, 1)).at[:, :, 0].set(1.0)
    x0_fn, params = make_x0_fn(model, context=jnp.asarray(clips["text_emb"]), cond_latents=latents,
                               cond_mask=mask, fps=jnp.asarray(clips["fps"][:1]), guidance=1.0)
    x0_fn = jax.jit(x0_fn)
    centres = demo.cube_pixels(episodes_dir, episodes, settings["clip_frames"], settings["size"] // CODEC_POOL)
    print("| sigma | frames 1-3: strength, hue | frames 5-8: strength, hue | cube visible, frames 1-8 |")
    print("|---|---|---|---|")
    for sigma in sigmas:
        contrast, visible = [], []
        for seed in range(2):  # two noise draws
            noisy = latents + sigma * jax.random.normal(jax.random.key(seed), latents.shape)
            video = to_uint8(np.asarray(codec.decode(x0_fn(params, noisy, jnp.float32(sigma)))))
            contrast.append(demo.cube_contrast(video, centres))
            visible.append(demo.cube_visible(video, centres)[:, 1:])
        contrast = np.concatenate(contrast)
        still, carried = np.median(contrast[:, 1:4], axis=(0, 1)), np.median(contrast[:, 5:], axis=(0, 1))
        print(f"| {sigma} | {still[0]:.2f}, {still[1]:.2f} | {carried[0]:.2f}, {carried[1]:.2f} | "
              f"{np.mean(visible):.2f} |")


if __name__ == "__main__":
    main()
