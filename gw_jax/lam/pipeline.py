"""LAM workflows as library calls (the ``gw-jax lam`` commands and notebooks use them).

  summary = fit(data_dir, workdir, steps=2000)            train on the videos only -> workdir (Orbax + meta.json)
  meta, model = load(workdir)
  z_ntd = latent_actions(model, frames_nthwc, meta)       (N, T-1, latent_dim): labels for unlabelled video
  results = probe(workdir, probe_dir, plot="lam.png")     linear-probe R² vs an untrained LAM and pixel PCA
  written = label(videos_dir, out_dir, workdir)           OUT/<name>.latent_actions.npy, (F, latent_dim)
  z_list = episode_latent_actions(workdir, sim_dir, ids)   per episode, in the simulator's `actions` layout
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gw_jax.data.sim import load_episode
from gw_jax.data.sim_scene import ARM_JOINTS
from gw_jax.data.video import read_video, video_files
from gw_jax.errors import UserInputError
from gw_jax.idm.data import split
from gw_jax.lam import train
from gw_jax.lam.models import LatentActionModel, pool_frames
from gw_jax.lam.probe import pixel_pca_features, quadratic_features, ridge_probe, transition_targets
from gw_jax.lam.train import load

__all__ = ["fit", "load", "latent_actions", "probe", "label", "episode_latent_actions", "plot_probe"]
JOINT_NAMES = (*ARM_JOINTS, "gripper")  # the 7 action / joint dimensions


def fit(data: str | Path, workdir: str | Path, *, steps: int = 2000, batch: int = 32, size: int = 32,
        latent_dim: int = 7, noise: float = 0.1, seed: int = 0, progress: bool = True) -> dict:
    """Trains a LAM on every episode's frames in ``data`` (no labels are read) and saves it into ``workdir``."""
    for value, flag in ((steps, "--steps"), (latent_dim, "--latent-dim"), (batch, "--batch")):
        if value < 1:
            raise UserInputError(f"{flag} must be at least 1")
    if size < 8 or size % 8:
        raise UserInputError(f"--size {size}: must be a positive multiple of 8")
    videos = train.load_videos(data, size)
    start = time.time()
    model, losses = train.train_lam(videos["frames"], steps=steps, batch=batch, latent_dim=latent_dim, noise=noise,
                                    seed=seed, progress=progress)
    frames = videos["frames"]
    summary = dict(train_episodes=len(frames), frames=frames.shape[1], seconds=round(time.time() - start, 1),
                   loss_first=losses[0], loss_last=float(np.mean(losses[-50:])),
                   copy_frame_mse=float(np.mean((frames[:, 1:] - frames[:, :-1]) ** 2)))
    meta = dict(data=str(Path(data).resolve()), size=size, latent_dim=latent_dim, noise=noise, steps=steps,
                batch=batch, seed=seed, train_episodes=videos["indices"].tolist(), summary=summary)
    train.save(workdir, meta, model)
    return summary


def latent_actions(model: LatentActionModel, frames: np.ndarray, meta: dict) -> np.ndarray:
    """(N, T-1, latent_dim) latent actions for frames (N, T, H, W, 3), uint8 or float in [0, 1], at any size that
    pools to the LAM's (``meta["size"]``)."""
    train.check_size(frames.shape, meta["size"], "frames")
    pooled = frames if frames.shape[-2] == meta["size"] and frames.dtype != np.uint8 else \
        np.asarray(pool_frames(frames, meta["size"]))
    return train.latent_actions(model, pooled)


def _transitions(x_nt):
    """(N, T-1, ...) per-episode transitions -> (N*(T-1), ...) rows."""
    return x_nt.reshape(-1, *x_nt.shape[2:])


def _identity(x):
    return x


def _features(model, videos, rows_train, rows_test):
    z = train.latent_actions(model, videos["frames"])
    return _transitions(z[rows_train]), _transitions(z[rows_test])


def probe(workdir: str | Path, data: str | Path, *, probe_fraction: float = 0.4, alpha: float = 1e-3,
          seed: int = 0, plot: str | Path | None = None) -> dict:
    """Linear (ridge) probes from latent actions to the true transition targets (``probe.transition_targets``)
    on ``data``'s episodes, split by episode into probe-train and probe-test (``probe_fraction`` of them).

    The same probe on an untrained LAM (same architecture and seed, random weights) and on the top principal
    components of the pixel differences x_{t+1} - x_t (as many as latent dimensions) gives the baselines. Each
    feature set is also probed quadratically, as a diagnostic (``<name>_quadratic``: ridge on the features and
    their pairwise products).
    Also reports the decoder's next-frame MSE with each episode's own latent actions, with another
    episode's, and the copy-the-frame MSE."""
    meta, model = load(workdir)
    videos = train.load_videos(data, meta["size"], labels=True)
    n = len(videos["indices"])
    if n < 2:
        raise UserInputError(f"{data}: need at least 2 episodes to probe (probe-train and probe-test), found {n}")
    rows_train, rows_test = split(n, probe_fraction, seed)
    seen = sorted(set(videos["indices"].tolist()) & set(meta["train_episodes"])) \
        if str(Path(data).resolve()) == meta["data"] else []
    features = {"lam": _features(model, videos, rows_train, rows_test),
                "untrained_lam": _features(train.build(meta, meta["seed"]), videos, rows_train, rows_test),
                "pixel_pca": pixel_pca_features(*(_transitions(np.diff(videos["frames"], axis=1)[rows]) for rows in
                                                  (rows_train, rows_test)), meta["latent_dim"])}
    results = dict(probe_train_episodes=videos["indices"][rows_train].tolist(),
                   probe_test_episodes=videos["indices"][rows_test].tolist(),
                   episodes_seen_in_lam_training=seen,
                   transitions_test=int(len(rows_test) * (videos["frames"].shape[1] - 1)),
                   latent_dim=meta["latent_dim"], dims=list(JOINT_NAMES), alpha=alpha, targets={})
    curves = {}
    for target, y in transition_targets(videos["actions"], videos["joints"]).items():
        y_train, y_test = (_transitions(y[rows]) for rows in (rows_train, rows_test))
        results["targets"][target] = {}
        for name, (f_train, f_test) in features.items():
            for suffix, lift in (("", _identity), ("_quadratic", quadratic_features)):
                fitted = ridge_probe(lift(f_train), y_train, lift(f_test), y_test, alpha)
                results["targets"][target][name + suffix] = dict(
                    r2_mean=fitted["r2_mean"], r2=dict(zip(JOINT_NAMES, map(float, fitted["r2"]), strict=True)))
                curves[target, name + suffix] = fitted["pred"]
        results["targets"][target]["test_std"] = dict(zip(JOINT_NAMES, map(float, y_test.std(0)), strict=True))
        curves[target, "true"] = y_test
    test_frames = videos["frames"][rows_test]
    z_test = train.latent_actions(model, test_frames)
    results["next_frame_mse"] = dict(own_latents=train.next_frame_mse(model, test_frames, z_test),
                                     other_episode_latents=train.next_frame_mse(model, test_frames,
                                                                                np.roll(z_test, 1, axis=0)),
                                     copy_frame=float(np.mean(np.diff(test_frames, axis=1) ** 2)))
    if plot:
        plot_probe(plot, curves, "joint_delta", results)
        results["plot"] = str(plot)
    return results


def episode_latent_actions(workdir: str | Path, directory: str | Path, episodes) -> list[np.ndarray]:
    """The latent actions of `gw-jax sim` episodes in the simulator's own ``actions`` layout, one (F, latent_dim)
    array per episode: row e is the latent action of the move e -> e+1 (the one the command recorded at frame e
    drives; the last row repeats the one before). So ``transforms.clip_actions`` and the pack's statistics
    helpers treat them exactly as they treat the recorded commands."""
    meta, model = load(workdir)
    out = []
    for i in episodes:
        frames = load_episode(directory, int(i))["frames"]
        z = latent_actions(model, frames[None], meta)[0]
        out.append(np.concatenate([z, z[-1:]]).astype(np.float32))
    return out


def label(videos: str | Path, out: str | Path, workdir: str | Path) -> list[Path]:
    """Writes OUT/<name>.latent_actions.npy for every VIDEOS/*.mp4: float32 (F, latent_dim), row e the latent
    action that led to frame e (row 0 repeats row 1) — the layout `gw-jax sample --actions` reads."""
    paths, out = video_files(videos), Path(out)
    meta, model = load(workdir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        frames, _ = read_video(path)
        if len(frames) < 2:
            raise UserInputError(f"{path}: {len(frames)} frame(s); a latent action needs two")
        train.check_size(frames.shape, meta["size"], path)
        z = latent_actions(model, frames[None], meta)[0]
        target = out / f"{path.stem}.latent_actions.npy"
        np.save(target, np.concatenate([z[:1], z]).astype(np.float32))
        written.append(target)
    return written


def plot_probe(path: str | Path, curves: dict, target: str, results: dict, points: int = 4000) -> None:
    """Linear-probe prediction vs truth per dimension of ``target`` on the probe-test transitions (LAM and its
    untrained twin), and a bar chart of every feature set's per-dimension R²."""
    import matplotlib  # only for plots: keeps importing the package light

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    true, scores = curves[target, "true"], results["targets"][target]
    colours = {"pixel_pca": "tab:gray", "untrained_lam": "tab:orange", "lam": "tab:blue"}
    rows = np.random.default_rng(0).permutation(len(true))[:points]
    fig, axes = plt.subplots(2, 4, figsize=(12, 6))
    axes = axes.ravel()
    for j, ax in enumerate(axes[:true.shape[1]]):
        for name in ("untrained_lam", "lam"):
            ax.scatter(true[rows, j], curves[target, name][rows, j], s=3, alpha=0.4, color=colours[name],
                       label=f"{name} R² {scores[name]['r2'][JOINT_NAMES[j]]:.2f}")
        lo, hi = true[:, j].min(), true[:, j].max()
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.set_title(JOINT_NAMES[j], fontsize=9)
        ax.set_xlabel("true", fontsize=8)
        ax.set_ylabel("linear probe", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, markerscale=3, loc="upper left")
    bars = axes[-1]
    x = np.arange(len(JOINT_NAMES))
    for k, (name, colour) in enumerate(colours.items()):
        bars.bar(x + (k - 1) * 0.27, [scores[name]["r2"][n] for n in JOINT_NAMES], 0.27, color=colour,
                 label=f"{name} (mean {scores[name]['r2_mean']:.2f})")
    bars.set_xticks(x, [n.replace("_", "\n") for n in JOINT_NAMES], fontsize=6)
    bars.axhline(0, color="k", lw=0.5)
    bars.set_title("linear-probe R² per dimension", fontsize=9)
    bars.legend(fontsize=7)
    fig.suptitle(f"{target}: linear probes on {len(true)} probe-test transitions", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
