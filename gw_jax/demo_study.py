"""The measurements behind docs/demo.md: why the demo's rollouts were noise, and what fixed it.

    gw-jax demo --quick --seed 0 --out runs/demo          # first: data, codec and the demo's own model
    python -m gw_jax.demo_study --demo runs/demo --out docs    # then: variants, measurements, plots

Every variant trains on the demo's training episodes for the demo's number of steps (a finished
variant's checkpoint is reused) and is measured on its held-out episodes:

* ``before``          the demo before issue 16: fixed pixel codec (48 channels), log-sigma ~ N(0, 1);
* ``before_width192`` the same with a DiT twice as wide (tests the 192-values-per-token bottleneck);
* ``after_p_mean0``   the learned codec with the reference log-sigma ~ N(0, 1);
* ``after``           the demo as it is now (its own checkpoint in DEMO/train).

Measurements per variant: held-out loss and the denoiser's x0 prediction (decoded PSNR; the fraction
of the added noise still in it) per sigma; rollouts with several sampler settings, EMA and raw
weights; and rollouts started from the *true* latents plus noise at a given sigma (what the last
sampler steps leave behind). Writes ``demo_study.json`` and ``demo_*.png`` into OUT; the variants'
checkpoints go to DEMO/study.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 80.0)
VARIANTS = {
    "before": dict(codec="pixel", p_mean=0.0),
    "before_width192": dict(codec="pixel", p_mean=0.0, model_channels=192),
    "after_p_mean0": dict(p_mean=0.0),
    "after": dict(),
}
SAMPLERS = {  # name: (solver, steps, sigma_max)
    "reference 20 steps, sigma_max 80": ("reference", 20, 80.0),
    "reference 10 steps, sigma_max 80": ("reference", 10, 80.0),
    "reference 40 steps, sigma_max 80": ("reference", 40, 80.0),
    "reference 20 steps, sigma_max 20": ("reference", 20, 20.0),
    "reference 20 steps, sigma_max 5": ("reference", 20, 5.0),
    "RES order 2, 20 steps, sigma_max 80": ("res2", 20, 80.0),
}
FROM_TRUTH = (0.3, 1.0, 3.0)


def _metrics(truth_u8, video_u8) -> tuple[float, float]:
    from gw_jax.video_metrics import psnr, ssim

    return (float(np.mean([psnr(t[1:] / 255, v[1:] / 255) for t, v in zip(truth_u8, video_u8)])),
            float(np.mean([ssim(t[1:] / 255, v[1:] / 255) for t, v in zip(truth_u8, video_u8)])))


class Study:
    """One demo run's data, and the variants trained on it."""

    def __init__(self, demo_dir: Path, quick: bool = True, progress: bool = True):
        from gw_jax.data.episodes import load_clips
        from gw_jax.train.defaults import FULL, QUICK
        from gw_jax.models.text_hash import HashTextEncoder

        self.demo_dir, self.progress = Path(demo_dir), progress
        self.work_dir = self.demo_dir / "study"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.settings = dict(QUICK if quick else FULL)
        report = json.loads((self.demo_dir / "report.json").read_text())
        self.settings.update(train_episodes=report["train_episodes"], heldout_episodes=report["heldout_episodes"],
                             steps=report["train_steps"])
        text = HashTextEncoder(width=32, max_length=16)
        frames = self.settings["clip_frames"]
        self.train = load_clips(self.demo_dir / "episodes" / "train", self.settings["train_episodes"], frames, text)
        self.test = load_clips(self.demo_dir / "episodes" / "heldout", self.settings["heldout_episodes"], frames, text)

    def codec(self, settings):
        from gw_jax.train.defaults import CODEC_FOLD, CODEC_POOL
        from gw_jax.models.patch_vae import PatchVAE
        from gw_jax.models.pixel_codec import PixelCodec

        if settings["codec"] == "pixel":
            return PixelCodec(pool=CODEC_POOL, fold=CODEC_FOLD)
        return PatchVAE.load(self.demo_dir / "codec")

    def trained(self, name: str):
        """(settings, config, codec, train state) of a variant, training it unless its checkpoint exists."""
        from gw_jax.train.defaults import demo_config
        from gw_jax.train.checkpoint import Checkpointer, abstract_with_shardings
        from gw_jax.train.data import ArrayBatches
        from gw_jax.train.loop import build_setup, train

        settings = dict(self.settings, **VARIANTS[name])
        codec = self.codec(settings)
        config = demo_config(settings, codec_path=str((self.demo_dir / "codec").absolute()))
        workdir = self.demo_dir / "train" if name == "after" else self.work_dir / name
        setup = build_setup(config)
        checkpointer = Checkpointer(workdir / "checkpoints", async_save=False)
        if checkpointer.latest_step() != settings["steps"]:
            latents = np.asarray(codec.encode(jnp.asarray(self.train["video"])))
            batches = ArrayBatches(dict(latents=latents, text_emb=self.train["text_emb"], fps=self.train["fps"]),
                                   settings["batch_size"], seed=config.seed)
            train(config, workdir, batches=batches, progress=self.progress)
        state, _, _ = checkpointer.restore(abstract_with_shardings(setup.abstract_state, setup.state_sharding))
        checkpointer.close()
        return settings, config, codec, setup.model_def, state

    def measure(self, name: str) -> dict:
        from gw_jax.demo import _to_uint8, rollout_from_first_frame
        from gw_jax.diffusion import reference_loss_terms, sample_res2

        settings, config, codec, model_def, state = self.trained(name)
        latents = jnp.asarray(codec.encode(jnp.asarray(self.test["video"])))
        emb, fps = jnp.asarray(self.test["text_emb"]), jnp.asarray(self.test["fps"])
        b, _, t = latents.shape[:3]
        mask = jnp.zeros((1, 1, t, 1, 1)).at[:, :, 0].set(1.0)
        truth = _to_uint8(np.asarray(codec.pooled(jnp.asarray(self.test["video"]))))
        decode = lambda z: _to_uint8(np.asarray(codec.decode(jnp.asarray(z))))  # noqa: E731
        result = dict(settings={k: settings[k] for k in ("codec", "p_mean", "model_channels", "steps")},
                      copy_first_frame=_metrics(truth, np.repeat(truth[:, :1], t, axis=1)))

        @jax.jit
        def terms(params, noise, sigma):
            masks = jnp.broadcast_to(mask, (b, 1, t, 1, 1))
            out = reference_loss_terms(model_def.merge(params), latents, noise, sigma, masks, emb, fps)
            return out["per_sample_loss"].mean(), out["denoised"]

        per_sigma = {}
        for sigma in SIGMAS:
            noise = jax.random.normal(jax.random.key(0), latents.shape)
            loss, denoised = terms(state.ema_params, noise, jnp.full((b, 1), sigma))
            left = float(jnp.mean(jnp.square(denoised - latents)[:, :, 1:]) / (sigma ** 2))
            per_sigma[sigma] = dict(loss=float(loss), x0_psnr=_metrics(truth, decode(denoised))[0], noise_left=left)
        result["per_sigma"] = per_sigma

        sampling = {}
        for weights in ("ema", "raw"):
            params = state.ema_params if weights == "ema" else state.params
            model = model_def.merge(params)
            for label, (solver, steps, sigma_max) in SAMPLERS.items():
                if weights == "raw" and label != next(iter(SAMPLERS)):
                    continue
                cfg = config.sample.copy_and_resolve_references()
                cfg.steps, cfg.sigma_max = steps, sigma_max
                key = jax.random.key(7)
                if solver == "reference":
                    z = rollout_from_first_frame(model, latents, emb, fps, key, cfg)
                else:
                    noise = jax.random.normal(key, latents.shape) * sigma_max
                    z = jax.jit(lambda n, p: sample_res2(model_def.merge(p), n, steps=steps, sigma_max=sigma_max,
                                                         context=emb, cond_latents=latents, cond_mask=mask,
                                                         fps=fps[:1], guidance=1.0)[0])(noise, params)
                sampling[f"{label}, {weights} weights"] = _metrics(truth, decode(z))
        result["sampling"] = sampling

        from_truth, strips = {}, {}
        model = model_def.merge(state.ema_params)
        for sigma in FROM_TRUTH:
            cfg = config.sample.copy_and_resolve_references()
            cfg.sigma_max = sigma
            start = latents + jax.random.normal(jax.random.key(3), latents.shape) * sigma  # truth + noise
            z = _sample_from(model, start, latents, emb, fps, cfg)
            from_truth[sigma] = _metrics(truth, decode(z))
            strips[sigma] = decode(z)[1]
        result["from_truth"] = from_truth
        cfg = config.sample
        strips["rollout"] = decode(rollout_from_first_frame(model, latents, emb, fps, jax.random.key(7), cfg))[1]
        strips["truth"] = truth[1]
        np.savez(self.work_dir / f"{name}_strips.npz", **{str(k): v for k, v in strips.items()})
        return result


def _sample_from(model, start, latents, emb, fps, cfg):
    """The reference sampler from a given start (truth + noise at cfg.sigma_max) instead of pure noise."""
    from gw_jax.diffusion import sample_reference

    mask = jnp.zeros((1, 1, latents.shape[2], 1, 1)).at[:, :, 0].set(1.0)
    run = jax.jit(lambda s: sample_reference(model, s, context=emb, cond_latents=latents, cond_mask=mask,
                                             fps=fps[:1], steps=cfg.steps, guidance=1.0, sigma_max=cfg.sigma_max)[0])
    return np.asarray(run(start))


def plot(results: dict, out_dir: Path, work_dir: Path, p_means=(0.0, 1.0), sample_steps: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gw_jax.diffusion import karras_sigmas

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, r in results.items():
        sig = [float(s) for s in r["per_sigma"]]
        axes[0].plot(sig, [v["loss"] for v in r["per_sigma"].values()], "o-", label=name)
        axes[1].plot(sig, [v["x0_psnr"] for v in r["per_sigma"].values()], "o-", label=name)
        axes[2].plot(sig, [v["noise_left"] for v in r["per_sigma"].values()], "o-", label=name)
    copy = next(iter(results.values()))["copy_first_frame"][0]
    axes[1].axhline(copy, color="k", ls="--", lw=1, label="repeat first frame")
    titles = ("held-out loss (reference objective)", "x0 prediction, decoded PSNR (dB)",
              "noise left in x0: mse / sigma^2")
    for ax, title in zip(axes, titles):
        ax.set_xscale("log"), ax.set_xlabel("sigma"), ax.set_title(title, fontsize=10), ax.grid(alpha=0.3)
    axes[2].set_yscale("log")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "demo_sigma.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.2))
    grid = np.linspace(-7, 6, 400)
    for p_mean in p_means:
        ax.plot(grid, np.exp(-0.5 * (grid - p_mean) ** 2) / np.sqrt(2 * np.pi), label=f"training: log sigma ~ N({p_mean}, 1)")
    sampler = np.log(np.asarray(karras_sigmas(sample_steps)))[:-1]
    ax.plot(sampler, np.zeros_like(sampler), "k|", ms=18, label=f"sampler: {sample_steps} Karras sigmas (0.002..80)")
    ax.set_xlabel("log sigma"), ax.set_ylabel("density"), ax.legend(fontsize=8), ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "demo_sigma_distribution.png", dpi=90)
    plt.close(fig)

    rows, labels = [], []
    for name in ("before", "after"):
        path = work_dir / f"{name}_strips.npz"
        if not path.exists():
            continue
        strips = np.load(path)
        if not rows:
            rows.append(np.concatenate(list(strips["truth"]), axis=1)), labels.append("truth")
        for key in ("0.3", "1.0", "rollout"):
            rows.append(np.concatenate(list(strips[key]), axis=1))
            labels.append(f"{name}: " + ("rollout from noise" if key == "rollout" else f"from truth + noise, sigma {key}"))
    if rows:
        fig, ax = plt.subplots(figsize=(9, 0.95 * len(rows)))
        ax.imshow(np.concatenate(rows, axis=0))
        height = rows[0].shape[0]
        ax.set_yticks([height * (i + 0.5) for i in range(len(rows))], labels, fontsize=7)
        ax.set_xticks([])
        fig.tight_layout()
        fig.savefig(out_dir / "demo_from_truth.png", dpi=90)
        plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gw_jax.demo_study", description=__doc__.split("\n")[0])
    parser.add_argument("--demo", required=True, help="a finished `gw-jax demo` output folder")
    parser.add_argument("--out", default="docs", help="where demo_study.json and the plots go")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    parser.add_argument("--full", action="store_true", help="the demo ran without --quick")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    study = Study(Path(args.demo), quick=not args.full, progress=not args.no_progress)
    results_path = out / "demo_study.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for name in args.variants.split(","):
        results[name] = study.measure(name)
        results_path.write_text(json.dumps(results, indent=1))
        print(f"{name}: {json.dumps(results[name]['sampling'])}", flush=True)
    plot(results, out, study.work_dir, sample_steps=study.settings["sample_steps"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
