"""``gw-jax engine``: seed episodes -> new views (ViewTransfer) -> IDM labels -> gates -> RLDS, with a report.

1. simulate seed episodes with extra cameras (MuJoCo): training and held-out;
2. train the IDM (arm segmenter + IDM) on the training episodes;
3. train ViewTransfer (the DiT + control channels) on double-projection pairs from every training camera,
   each used as single-view video;
4. held-out novel views: warp the main camera to each extra camera, render the arm there at the re-targeted
   joints, generate (the model's pixels fill the warp's holes); PSNR / SSIM against the simulator's render
   vs the warp-only baseline (and vs the same model under the release sampler from noise);
5. gate benchmark: each gate's ROC AUC on corrupted vs clean held-out clips (physical gates through the IDM),
   and keep/drop thresholds from the clean clips;
6. the generated variants, labelled by the IDM, go through every gate; the seed episodes and the kept
   variants are written as an RLDS dataset (TFDS layout), and report.json says what was kept and why.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from gw_jax.data.rlds_write import write_rlds
from gw_jax.data.sim import load_episode, simulate_dataset, write_episode
from gw_jax.data.sim_arm import ArmModel
from gw_jax.engine import filtering
from gw_jax.engine import gates as G
from gw_jax.engine import viewtransfer as vt
from gw_jax.idm import pipeline as idm_pipeline
from gw_jax.models.factory import load_codec, load_text_encoder
from gw_jax.train.data import ArrayBatches
from gw_jax.train.loop import train
from gw_jax.video_metrics import psnr, ssim

QUICK = dict(train_episodes=16, heldout_episodes=6, views=2, sim_frames=33, sim_fps=8.0, size=32, clip_frames=8,
             steps=700, batch_size=8, sample_steps=1, sample_sigma=0.5, idm_steps=400, seg_steps=150, gate_window=11,
             gate_windows_per_clip=2)
FULL = dict(QUICK, train_episodes=64, heldout_episodes=12, steps=3000, idm_steps=1500, seg_steps=300)


def _cameras(e: dict):
    """(name, frames, depth, arm_mask, intrinsics, extrinsics) of the main camera and every extra one."""
    yield "main", e["frames"], e["depth"], e["arm_mask"], e["intrinsics"], e["extrinsics"]
    for v in range(len(e.get("view_frames", ()))):
        yield (f"view{v}", e["view_frames"][v], e["view_depth"][v], e["view_arm_mask"][v], e["view_intrinsics"][v],
               e["view_extrinsics"][v])


def train_view_transfer(episodes, settings, codec, text, config, workdir, rng, progress):
    t = settings["clip_frames"]
    pairs, prompts = [], []
    for e in episodes:
        for _, frames, depth, mask, k, ext in _cameras(e):
            for s in range(0, len(frames) - t + 1, t):
                pairs.append(vt.double_projection_pair(frames[s:s + t], depth[s:s + t], mask[s:s + t], k, ext, rng))
                prompts.append(e["prompt"])
    emb, _ = text.encode(prompts)
    arrays = dict(latents=vt.target_latents(codec, pairs), control=vt.control_latents(codec, pairs),
                  text_emb=emb, fps=np.full(len(pairs), settings["sim_fps"], np.float32),
                  ref_mask=np.zeros((len(pairs), t), np.float32))  # no reference frames: nothing of B is known
    batches = ArrayBatches(arrays, settings["batch_size"], seed=config.seed)
    return train(config, workdir, batches=batches, progress=progress), len(pairs)


def novel_views(episodes, settings, arm):
    """Per held-out episode and extra camera: the ViewTransfer inputs of each window and the re-targeted
    joints/actions (the base stays put: K_t = T^{ee->base}, so IK returns the same joints)."""
    t, out = settings["clip_frames"], []
    home = arm.home_base
    for i, e in enumerate(episodes):
        joints = arm.retarget(e["joints"], home)
        actions = arm.retarget(e["actions"], home)
        for v in range(len(e["view_frames"])):
            k_b, e_b = e["view_intrinsics"][v], e["view_extrinsics"][v]
            arm_frames, arm_masks = arm.render(joints, k_b, e_b, settings["size"], settings["size"])
            windows = list(range(0, len(e["frames"]) - t + 1, t))
            pairs = [vt.novel_view_pair(e["frames"][s:s + t], e["depth"][s:s + t], e["arm_mask"][s:s + t],
                                        e["intrinsics"], e["extrinsics"], k_b, e_b, arm_frames[s:s + t],
                                        arm_masks[s:s + t], target=e["view_frames"][v][s:s + t]) for s in windows]
            out.append(dict(episode=i, view=v, pairs=pairs, frames=len(windows) * t, joints=joints, actions=actions,
                            arm_masks=arm_masks, intrinsics=k_b, extrinsics=e_b))
    return out


def gate_benchmark(episodes, settings, idm, arm, rng) -> dict:
    """Each gate's scores on clean and corrupted held-out clips; physical gates through the IDM."""
    w, fps = settings["gate_window"], settings["sim_fps"]
    clean = {g: [] for g in G.GATES}
    bad = {g: [] for g in G.GATES}
    idm_clips = {k: [] for k in ("clean", "fast", "jitter", "limit_clean", "limit_bad", "arm_bad")}
    idm_meta = []
    for e in episodes:
        cams = list(_cameras(e))
        for name, frames, _, mask, k, ext in cams:
            for _ in range(settings["gate_windows_per_clip"]):
                s = int(rng.integers(0, len(frames) - w + 1))
                clip = frames[s:s + w]
                for g in G.VISUAL:
                    clean[g].append(getattr(G, f"{g}_score")(clip))
                    bad[g].append(getattr(G, f"{g}_score")(G.corrupt(g, clip, rng)))
                if name != "main":
                    source = dict(frames=e["frames"][s:s + w], depth=e["depth"][s:s + w],
                                  arm_mask=e["arm_mask"][s:s + w], intrinsics=e["intrinsics"],
                                  extrinsics=e["extrinsics"])
                    clean["reprojection"].append(G.reprojection_score(clip, source, k, ext, mask[s:s + w]))
                    bad["reprojection"].append(G.reprojection_score(G.corrupt_view(clip, rng), source, k, ext,
                                                                    mask[s:s + w]))
                idm_clips["clean"].append(clip)
                idm_clips["fast"].append(G.retime(frames, "fast", rng, w))
                idm_clips["jitter"].append(G.retime(frames, "jitter", rng, w))
                joints = e["joints"][s:s + w]
                idm_clips["limit_clean"].append(arm.render(joints, k, ext, *frames.shape[1:3])[0])
                idm_clips["limit_bad"].append(arm.render(G.push_past_limit(joints, arm.limits, rng), k, ext,
                                                         *frames.shape[1:3])[0])
                idm_clips["arm_bad"].append(G.corrupt_arm(clip, mask[s:s + w], rng)[0])
                idm_meta.append((k, ext))
    labels = {key: idm_pipeline.predict(idm, np.stack(clips)) for key, clips in idm_clips.items()}
    for n, (k, ext) in enumerate(idm_meta):
        joints = {key: value[0][n] for key, value in labels.items()}
        masks = {key: value[1][n] for key, value in labels.items()}
        clean["velocity"].append(G.velocity_score(joints["clean"], fps))
        bad["velocity"].append(G.velocity_score(joints["fast"], fps))
        clean["acceleration"].append(G.acceleration_score(joints["clean"], fps))
        bad["acceleration"].append(G.acceleration_score(joints["jitter"], fps))
        clean["joint_limits"].append(G.limit_score(joints["limit_clean"], arm.limits))
        bad["joint_limits"].append(G.limit_score(joints["limit_bad"], arm.limits))
        clean["replay"].append(G.replay_score(joints["clean"], masks["clean"], arm, k, ext))
        bad["replay"].append(G.replay_score(joints["arm_bad"], masks["arm_bad"], arm, k, ext))
    auc = {g: G.roc_auc(clean[g], bad[g]) for g in G.GATES}
    # from the clean clips; a robot rating is a floor: IDM label noise (doubled by each finite difference)
    # would otherwise fail clean clips for speeds and accelerations the arm never had
    thresholds = {g: max(G.threshold_for(clean[g]), filtering.PHYSICAL_THRESHOLDS.get(g, -np.inf))
                  for g in G.GATES}
    clean_pass = {g: float(np.mean(np.asarray(clean[g]) <= thresholds[g])) for g in G.GATES}
    caught = {g: float(np.mean(np.asarray(bad[g]) > thresholds[g])) for g in G.GATES}
    return dict(auc=auc, thresholds=thresholds, clean_pass_rate=clean_pass, corrupted_caught_rate=caught,
                clean=clean, corrupted=bad, clips={g: [len(clean[g]), len(bad[g])] for g in G.GATES})


def run_engine(out: str | Path, *, quick: bool = True, seed: int = 0, steps: int | None = None,
               progress: bool = True, overrides: dict | None = None) -> dict:
    """The whole loop into ``out``; ``overrides`` replaces preset settings (tests run it tiny)."""
    settings = dict(QUICK if quick else FULL, **(overrides or {}))
    if steps is not None:
        settings["steps"] = steps
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings, t0 = {}, time.perf_counter()
    rng = np.random.default_rng(seed)
    sim = dict(frames=settings["sim_frames"], height=settings["size"], width=settings["size"], fps=settings["sim_fps"],
               views=settings["views"], progress=progress, workers=2)
    simulate_dataset(out / "episodes" / "train", settings["train_episodes"], seed=seed, **sim)
    simulate_dataset(out / "episodes" / "heldout", settings["heldout_episodes"], seed=seed + 1, **sim)
    train_eps = [load_episode(out / "episodes" / "train", i) for i in range(settings["train_episodes"])]
    held_eps = [load_episode(out / "episodes" / "heldout", i) for i in range(settings["heldout_episodes"])]
    timings["simulate_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    idm_data = out / "episodes" / "idm"  # every camera of the training episodes: the IDM labels new views too
    idm_data.mkdir(parents=True, exist_ok=True)
    n = 0
    for e in train_eps:
        for _, frames, _, mask, _, _ in _cameras(e):
            write_episode(idm_data, n, dict(frames=frames, prompt=e["prompt"], fps=float(e["fps"]), joints=e["joints"],
                                            arm_mask=mask, joint_names=e["joint_names"]))
            n += 1
    idm_summary = idm_pipeline.fit(idm_data, out / "idm", steps=settings["idm_steps"],
                                   seg_steps=settings["seg_steps"], masked=True, seed=seed, progress=progress)
    idm = idm_pipeline.load(out / "idm")
    timings["idm_s"] = time.perf_counter() - t

    t = time.perf_counter()
    config = vt.view_transfer_config(settings)
    config.seed = seed
    codec, text = load_codec(config), load_text_encoder(config)
    result, n_pairs = train_view_transfer(train_eps, settings, codec, text, config, out / "viewtransfer", rng,
                                          progress)
    timings["viewtransfer_train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    arm = ArmModel()
    views = novel_views(held_eps, settings, arm)
    pairs = [p for v in views for p in v["pairs"]]
    emb, _ = text.encode([held_eps[v["episode"]]["prompt"] for v in views for _ in v["pairs"]])
    control = vt.control_latents(codec, pairs)
    model = result.model_def.merge(result.state.params)
    fps = np.full(len(pairs), settings["sim_fps"], np.float32)
    base = vt.base_latents(codec, pairs)

    def views_from(sample_cfg, from_noise=False):
        latents = vt.generate(model, control, emb, fps, jax.random.key(seed + 7), sample_cfg, from_noise=from_noise)
        return vt.compose(pairs, vt.to_frames(np.asarray(codec.decode(jnp.asarray(latents + base)))))

    generated = views_from(config.sample)
    # for the record: the release sampler as it is (16 steps from noise at sigma 80), same model and composition
    release = SimpleNamespace(**dict(config.sample.to_dict(), steps=16, sigma_max=80.0))
    sampled = views_from(release, from_noise=True)
    baseline = np.stack([vt.warp_only(p) for p in pairs])
    truth = np.stack([p.target for p in pairs])
    scores = {}
    for name, video in (("model", generated), ("warp_only", baseline), ("model_release_sampler", sampled)):
        pairs_01 = [(a / 255, b / 255) for a, b in zip(truth, video, strict=True)]
        scores[f"view_psnr_{name}"] = float(np.mean([psnr(a, b) for a, b in pairs_01]))
        scores[f"view_ssim_{name}"] = float(np.mean([ssim(a, b) for a, b in pairs_01]))
        hole_err = ((truth.astype(np.float64) - video) / 255)[np.stack([vt.holes(p) for p in pairs])]
        scores[f"view_psnr_holes_{name}"] = float(-10 * np.log10(np.mean(hole_err ** 2) + 1e-12))
    timings["generate_s"] = time.perf_counter() - t
    write_pictures(out, pairs, baseline, generated, truth)

    t = time.perf_counter()
    bench = gate_benchmark(held_eps, settings, idm, arm, rng)
    timings["gate_benchmark_s"] = time.perf_counter() - t

    t = time.perf_counter()
    variants_dir = out / "variants"
    variants_dir.mkdir(exist_ok=True)
    per_view = len(views[0]["pairs"]) if views else 0
    for n, v in enumerate(views):
        e = held_eps[v["episode"]]
        frames = np.concatenate(list(generated[n * per_view:(n + 1) * per_view]))
        f = len(frames)
        labels = idm_pipeline.predict(idm, frames[None])
        write_episode(variants_dir, n, dict(
            frames=frames, prompt=e["prompt"], fps=settings["sim_fps"], joints=labels[0][0].astype(np.float32),
            joint_names=e["joint_names"], actions=v["actions"][:f].astype(np.float32),
            retargeted_joints=v["joints"][:f].astype(np.float32), arm_mask=(labels[1][0] >= 0.5).astype(np.uint8),
            intrinsics=v["intrinsics"], extrinsics=v["extrinsics"], source_episode=v["episode"],
            source_frames=e["frames"][:f], source_depth=e["depth"][:f], source_arm_mask=e["arm_mask"][:f],
            source_intrinsics=e["intrinsics"], source_extrinsics=e["extrinsics"]))
    thresholds_path = out / "gates.json"
    thresholds_path.write_text(json.dumps(dict(thresholds=bench["thresholds"], auc=bench["auc"]), indent=1))
    gated = filtering.filter_folder(variants_dir, out / "idm", thresholds_path, progress=progress)
    timings["label_and_gate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    rlds_episodes = []
    for e in train_eps + held_eps:
        rlds_episodes.append(_rlds_episode(e["frames"], e["joints"], e["actions"], e["prompt"], "seed",
                                           e["intrinsics"], e["extrinsics"], {}))
    for n, v in enumerate(views):
        verdict = gated["episodes"][str(n)]
        if verdict["keep"]:
            episode = load_episode(variants_dir, n)
            rlds_episodes.append(_rlds_episode(episode["frames"], episode["joints"], episode["actions"],
                                               episode["prompt"], "view_transfer", v["intrinsics"], v["extrinsics"],
                                               verdict["scores"]))
    rlds_dir = write_rlds(out / "rlds", "gw_engine", rlds_episodes, shards=2)
    timings["export_s"] = time.perf_counter() - t

    dropped_by = {g: sum(g in e["failed"] for e in gated["episodes"].values()) for g in G.GATES}
    report = dict(
        **scores, gate_auc=bench["auc"], gate_thresholds=bench["thresholds"],
        gate_clean_pass_rate=bench["clean_pass_rate"], gate_corrupted_caught_rate=bench["corrupted_caught_rate"],
        gate_clips=bench["clips"], rlds_dir=str(rlds_dir),
        rlds_episodes=dict(seed=len(train_eps) + len(held_eps), view_transfer=gated["kept"]),
        variants=dict(generated=gated["total"], kept=gated["kept"], dropped_by=dropped_by),
        view_eval=dict(clips=len(pairs), frames_per_clip=settings["clip_frames"], size=settings["size"],
                       heldout_episodes=len(held_eps), views=settings["views"], training_pairs=n_pairs,
                       hole_fraction=float(np.mean([vt.holes(p).mean() for p in pairs])),
                       sample_steps=config.sample.steps, sample_sigma=config.sample.sigma_max),
        idm=idm_summary, train_steps=settings["steps"],
        final_loss=result.losses[-1] if result.losses else None, codec=config.codec.to_dict(),
        timings_s={k: round(v, 1) for k, v in timings.items()}, total_s=round(time.perf_counter() - t0, 1),
        seed=seed, devices=[str(d) for d in jax.devices()])
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "gate_scores.json").write_text(json.dumps(dict(clean=bench["clean"], corrupted=bench["corrupted"])))
    plot_gate_scores(out / "gate_scores.png", bench)
    return report


def _rlds_episode(frames, state, actions, prompt, source, intrinsics, extrinsics, scores) -> dict:
    f = len(frames)
    return dict(frames=frames, state=np.asarray(state, np.float32)[:f], action=np.asarray(actions, np.float32)[:f],
                prompt=prompt, metadata=dict(
                    source=source, camera_intrinsics=np.asarray(intrinsics, np.float32).reshape(-1),
                    camera_extrinsics=np.asarray(extrinsics, np.float32).reshape(-1),
                    gate_scores=np.array([scores.get(g, np.nan) for g in G.GATES], np.float32)))


def write_pictures(out: Path, pairs, baseline, generated, truth, clips: int = 3) -> None:
    """viewtransfer.png: per clip four rows (warped input, warp-only, ViewTransfer, ground truth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for i in range(min(clips, len(pairs))):
        rows += [np.concatenate(list(pairs[i].background), axis=1), np.concatenate(list(baseline[i]), axis=1),
                 np.concatenate(list(generated[i]), axis=1), np.concatenate(list(truth[i]), axis=1)]
    plt.imsave(out / "viewtransfer.png", np.concatenate(rows, axis=0).repeat(3, axis=0).repeat(3, axis=1))


def plot_gate_scores(path: Path, bench: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(G.GATES), figsize=(2.2 * len(G.GATES), 2.8))
    for ax, g in zip(axes, G.GATES, strict=True):
        for x, scores in enumerate((bench["clean"][g], bench["corrupted"][g])):
            ax.plot(np.full(len(scores), x) + np.linspace(-0.15, 0.15, len(scores)), scores, ".",
                    color="tab:green" if x == 0 else "tab:red")
        ax.axhline(bench["thresholds"][g], color="k", lw=0.8, ls="--")
        ax.set_xticks([0, 1], ["clean", "bad"], fontsize=7)
        ax.set_title(f"{g}\nAUC {bench['auc'][g]:.2f}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
