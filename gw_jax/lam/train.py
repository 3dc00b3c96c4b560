"""Episodes in, a trained latent action model out: data loading, training, labelling, Orbax checkpoints.

  data = load_videos(data_dir, size=32)                   frames (N, T, size, size, 3) float32 [+ actions, joints]
  model, losses = train_lam(data["frames"], steps=2000)   reconstruction of x_{t+1} only: no labels are read
  z_ntd = latent_actions(model, frames)                   (N, T-1, latent_dim), the labelling function
  save(workdir, meta, model);  meta, model = load(workdir)   WORKDIR/lam/ (Orbax) + WORKDIR/meta.json
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

from gw_jax.data.sim import load_episode
from gw_jax.errors import UserInputError
from gw_jax.idm.data import episode_indices
from gw_jax.lam.models import LatentActionModel, create, pool_frames

MODEL_DIR, META_FILE = "lam", "meta.json"


def check_size(frames_shape, size: int, where) -> None:
    """One line when frames cannot be pooled to ``size`` x ``size``."""
    h, w = frames_shape[-3:-1]
    if h % size or w % size or h // size != w // size:
        raise UserInputError(f"{where}: frames are {h}x{w}, not a multiple of the LAM's {size}x{size}")


def load_videos(directory: str | Path, size: int = 32, labels: bool = False) -> dict[str, np.ndarray]:
    """`gw-jax sim` episodes pooled to ``size``: frames float32 (N, T, size, size, 3) in [0, 1], indices (N,);
    with ``labels`` also the ground truth the probe needs, actions and joints (N, T, 7)."""
    directory = Path(directory)
    indices = episode_indices(directory)
    frames, actions, joints = [], [], []
    for i in indices:
        episode = load_episode(directory, i)
        check_size(episode["frames"].shape, size, directory / f"{i}.mp4")
        if frames and episode["frames"].shape[0] != frames[0].shape[0]:
            raise UserInputError(f"{directory / f'{i}.mp4'}: {episode['frames'].shape[0]} frames, episode "
                                 f"{indices[0]} has {frames[0].shape[0]}; use one --frames")
        frames.append(np.asarray(pool_frames(episode["frames"], size)))
        if labels:
            if "actions" not in episode or "joints" not in episode:
                raise UserInputError(f"{directory / f'{i}.npz'}: no 'actions' / 'joints' to probe against")
            actions.append(episode["actions"])
            joints.append(episode["joints"])
    if frames[0].shape[0] < 2:
        raise UserInputError(f"{directory}: episodes have one frame; a latent action needs two")
    out = dict(frames=np.stack(frames), indices=np.asarray(indices))
    if labels:
        out.update(actions=np.stack(actions).astype(np.float32), joints=np.stack(joints).astype(np.float32))
    return out


def _pairs(frames_ntshwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every consecutive pair (x_t, x_{t+1}) of every episode, flattened: two (N*(T-1), H, W, 3) arrays."""
    x, x_next = frames_ntshwc[:, :-1], frames_ntshwc[:, 1:]
    return x.reshape(-1, *x.shape[2:]), x_next.reshape(-1, *x_next.shape[2:])


def reconstruction_loss(model: LatentActionModel, x, x_next, key):
    pred, _ = model(x, x_next, key)
    return jnp.mean((pred - x_next) ** 2)


def train_lam(frames: np.ndarray, *, steps: int = 2000, batch: int = 32, lr: float = 2e-3, latent_dim: int = 7,
              noise: float = 0.1, seed: int = 0, progress: bool = True) -> tuple[LatentActionModel, list[float]]:
    """AdamW on next-frame MSE over random pairs of ``frames`` (N, T, S, S, 3) float in [0, 1]."""
    x_all, next_all = _pairs(frames)
    model = create(frames.shape[-2], latent_dim, noise, seed)
    graphdef, params = nnx.split(model)
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, min(100, steps // 10 + 1), max(steps, 2), lr * 0.02)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))

    @jax.jit
    def step(params, opt_state, x, x_next, key):
        loss, grads = jax.value_and_grad(
            lambda p: reconstruction_loss(nnx.merge(graphdef, p), x, x_next, key))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng, key, batch = np.random.default_rng(seed), jax.random.key(seed), min(batch, len(x_all))
    opt_state, losses = tx.init(params), []
    with tqdm(total=steps, desc="lam", disable=not progress, mininterval=1.0) as bar:
        for i in range(steps):
            pick = rng.choice(len(x_all), size=batch, replace=False)
            params, opt_state, loss = step(params, opt_state, x_all[pick], next_all[pick], jax.random.fold_in(key, i))
            losses.append(float(loss))
            bar.set_postfix(loss=f"{losses[-1]:.5f}")
            bar.update()
    nnx.update(model, params)
    return model, losses


@functools.partial(jax.jit, static_argnums=0)
def _encode(graphdef, state, x, x_next):
    return nnx.merge(graphdef, state).encode(x, x_next)


@functools.partial(jax.jit, static_argnums=0)
def _decode(graphdef, state, x, z):
    return nnx.merge(graphdef, state).decode(x, z)


def _chunked(fn, arrays: tuple[np.ndarray, ...], chunk: int) -> np.ndarray:
    """fn over the leading axis in fixed-size (zero-padded) chunks, so every call shares one compilation."""
    out = []
    for start in range(0, len(arrays[0]), chunk):
        parts = [a[start:start + chunk] for a in arrays]
        pad = chunk - len(parts[0])
        padded = [np.concatenate([p, np.zeros((pad, *p.shape[1:]), p.dtype)]) for p in parts]
        out.append(np.asarray(fn(*padded))[:len(parts[0])])
    return np.concatenate(out)


def latent_actions(model: LatentActionModel, frames: np.ndarray, chunk: int = 128) -> np.ndarray:
    """Latent actions (N, T-1, latent_dim) for frames (N, T, S, S, 3) float in [0, 1] (no noise: the code's
    mean): entry t is the action that takes frame t to frame t+1."""
    graphdef, state = nnx.split(model)
    n, t = frames.shape[:2]
    z = _chunked(functools.partial(_encode, graphdef, state), _pairs(frames), chunk)
    return z.reshape(n, t - 1, -1)


def next_frame_mse(model: LatentActionModel, frames: np.ndarray, z_ntd: np.ndarray | None = None,
                   chunk: int = 128) -> float:
    """Mean squared error of the decoder's x_{t+1} given x_t and z_t (the encoder's, or ``z_ntd``)."""
    graphdef, state = nnx.split(model)
    x, x_next = _pairs(frames)
    z = latent_actions(model, frames, chunk) if z_ntd is None else z_ntd
    pred = _chunked(functools.partial(_decode, graphdef, state), (x, z.reshape(len(x), -1)), chunk)
    return float(np.mean((pred - x_next) ** 2))


# ---- checkpoints ----------------------------------------------------------------------------------
def build(meta: dict, seed: int = 0) -> LatentActionModel:
    """A model with the architecture recorded in ``meta`` (size, latent_dim, noise), freshly initialised."""
    return create(meta["size"], meta["latent_dim"], meta["noise"], seed)


def save(workdir: str | Path, meta: dict, model: LatentActionModel) -> None:
    """WORKDIR/lam/ (Orbax params) and WORKDIR/meta.json."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save((workdir / MODEL_DIR).absolute(), nnx.to_pure_dict(nnx.state(model)), force=True)
    (workdir / META_FILE).write_text(json.dumps(dict(meta, saved=time.strftime("%Y-%m-%d %H:%M:%S")), indent=1))


def load(workdir: str | Path) -> tuple[dict, LatentActionModel]:
    """(meta, model) saved in ``workdir``; UserInputError naming what is missing or unreadable."""
    workdir = Path(workdir)
    retrain = f"train first with `gw-jax lam train --workdir {workdir}`"
    if not (workdir / META_FILE).is_file():
        raise UserInputError(f"{workdir / META_FILE}: missing; {retrain}")
    if not (workdir / MODEL_DIR).is_dir():
        raise UserInputError(f"{workdir / MODEL_DIR}: missing; {retrain}")
    meta = json.loads((workdir / META_FILE).read_text())
    graphdef, state = nnx.split(nnx.eval_shape(
        lambda: LatentActionModel(meta["size"], meta["latent_dim"], meta["noise"], rngs=nnx.Rngs(0))))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            tree = checkpointer.restore((workdir / MODEL_DIR).absolute(), nnx.to_pure_dict(state))
    except Exception as e:  # noqa: BLE001 - any decode failure is a bad checkpoint
        raise UserInputError(f"{workdir / MODEL_DIR}: not a readable LAM checkpoint ({e})") from None
    nnx.replace_by_pure_dict(state, tree)
    return meta, nnx.merge(graphdef, state)
