"""Training, inference, metrics and checkpoints for the arm segmenter and the IDM.

Masking choice: the IDM trains on frames multiplied by the segmenter's *predicted* (soft) mask, not the
ground-truth one. At label time only predicted masks exist, so training on them removes a train/label gap:
the IDM learns to cope with the segmenter's typical errors (thin gripper fingers half-missed, a distractor
pixel let through) instead of meeting them for the first time on generated video.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from gw_jax.errors import UserInputError
from gw_jax.idm.models import IDM, UNet

SEG_FILE, IDM_FILE, META_FILE = "segmenter.msgpack", "idm.msgpack", "meta.json"


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, mininterval=1.0)


def _adam(steps: int, lr: float):
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, min(100, steps // 10 + 1), max(steps, 2), lr * 0.02)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))


# ---- segmenter ------------------------------------------------------------------------------------
def train_segmenter(frames: np.ndarray, masks: np.ndarray, steps: int = 400, batch: int = 16, lr: float = 3e-3,
                    seed: int = 0, progress: bool = True) -> tuple[dict, list[float]]:
    """Per-frame binary cross-entropy on ground-truth arm masks. frames uint8 (..., H, W, 3), masks (..., H, W)."""
    frames = frames.reshape(-1, *frames.shape[-3:])
    masks = masks.reshape(-1, *masks.shape[-2:]).astype(np.float32)
    model, tx = UNet(), _adam(steps, lr)
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *frames.shape[1:])))["params"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            logits = model.apply({"params": p}, x.astype(jnp.float32) / 255.0)
            return optax.sigmoid_binary_cross_entropy(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng, losses = np.random.default_rng(seed), []
    with _progress(steps, "segmenter", progress) as bar:
        for _ in range(steps):
            pick = rng.integers(len(frames), size=batch)
            params, opt_state, loss = step(params, opt_state, frames[pick], masks[pick])
            losses.append(float(loss))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
    return params, losses


@jax.jit
def _segment(params, frames):
    return jax.nn.sigmoid(UNet().apply({"params": params}, frames.astype(jnp.float32) / 255.0))


def predict_masks(params, frames: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Soft arm masks in [0, 1], float32 (..., H, W), for uint8 frames (..., H, W, 3)."""
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = []
    for start in range(0, len(flat), chunk):  # fixed chunk size (padded) -> one compilation
        part = flat[start:start + chunk]
        padded = np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), part.dtype)])
        out.append(np.asarray(_segment(params, padded))[:len(part)])
    return np.concatenate(out).reshape(frames.shape[:-1])


def iou(pred_masks: np.ndarray, true_masks: np.ndarray, threshold: float = 0.5) -> float:
    """Intersection over union of the thresholded predicted masks with the ground truth, over all pixels."""
    pred, true = pred_masks >= threshold, true_masks.astype(bool)
    return float((pred & true).sum() / max((pred | true).sum(), 1))


# ---- IDM ------------------------------------------------------------------------------------------
def idm_inputs(frames: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """What the IDM sees: float32 frames in [0, 1], multiplied by the arm mask when one is given."""
    x = np.asarray(frames, np.float32) / 255.0
    return x if masks is None else x * np.asarray(masks, np.float32)[..., None]


def train_idm(inputs: np.ndarray, joints: np.ndarray, steps: int = 800, batch: int = 4, lr: float = 2e-3,
              seed: int = 0, progress: bool = True) -> tuple[dict, dict, list[float]]:
    """MSE on per-joint normalised angles. inputs float (N, T, H, W, 3), joints (N, T, D).
    Returns (params, normalisation {joint_mean, joint_std}, losses)."""
    flat = joints.reshape(-1, joints.shape[-1])
    norm = dict(joint_mean=flat.mean(0).astype(np.float32),
                joint_std=np.maximum(flat.std(0), 1e-6).astype(np.float32))  # floor: guard against /0 only
    targets = (joints - norm["joint_mean"]) / norm["joint_std"]
    model, tx = IDM(joints=joints.shape[-1]), _adam(steps, lr)
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *inputs.shape[1:])))["params"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            return jnp.mean((model.apply({"params": p}, x) - y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng, losses = np.random.default_rng(seed), []
    batch = min(batch, len(inputs))
    with _progress(steps, "idm", progress) as bar:
        for _ in range(steps):
            pick = rng.choice(len(inputs), size=batch, replace=False)
            params, opt_state, loss = step(params, opt_state, inputs[pick], targets[pick])
            losses.append(float(loss))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
    return params, norm, losses


@jax.jit
def _idm_apply(params, x):
    return IDM(joints=params["per_frame_head"]["bias"].shape[0]).apply({"params": params}, x)


def predict_joints(params, norm: dict, inputs: np.ndarray) -> np.ndarray:
    """Joint angles (N, T, D) in physical units from IDM inputs (N, T, H, W, 3), one clip at a time."""
    out = [np.asarray(_idm_apply(params, clip[None]))[0] for clip in inputs]
    return np.stack(out) * norm["joint_std"] + norm["joint_mean"]


def joint_metrics(pred: np.ndarray, true: np.ndarray, names, varying_std: float = 0.01) -> dict:
    """Per-joint MAE and R² over all frames; ``r2_mean`` is the plain mean over every joint, and
    ``r2_mean_varying`` the mean over joints whose ground-truth std exceeds ``varying_std``."""
    pred, true = pred.reshape(-1, pred.shape[-1]), true.reshape(-1, true.shape[-1])
    mae = np.abs(pred - true).mean(0)
    sst = ((true - true.mean(0)) ** 2).sum(0)
    r2 = 1.0 - ((pred - true) ** 2).sum(0) / np.maximum(sst, 1e-12)
    std = true.std(0)
    varying = std > varying_std
    return dict(r2_mean=float(r2.mean()), mae_mean_rad=float(mae.mean()),
                r2_mean_varying=float(r2[varying].mean()) if varying.any() else float("nan"),
                varying_joints=[str(n) for n, v in zip(names, varying) if v],
                joints={str(n): dict(r2=float(r), mae=float(m), std=float(s))
                        for n, r, m, s in zip(names, r2, mae, std)})


# ---- checkpoints ----------------------------------------------------------------------------------
def save(workdir: str | Path, meta: dict, idm_params, norm: dict, seg_params=None) -> None:
    """workdir/idm.msgpack (params + joint mean/std), segmenter.msgpack (if any) and meta.json."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = dict(params=jax.device_get(idm_params), **norm)
    (workdir / IDM_FILE).write_bytes(serialization.msgpack_serialize(state))
    if seg_params is not None:
        (workdir / SEG_FILE).write_bytes(serialization.msgpack_serialize(jax.device_get(seg_params)))
    (workdir / META_FILE).write_text(json.dumps(dict(meta, saved=time.strftime("%Y-%m-%d %H:%M:%S")), indent=1))


def load(workdir: str | Path) -> tuple[dict, dict, dict, dict | None]:
    """(meta, idm_params, norm, seg_params or None); UserInputError naming the missing file."""
    workdir = Path(workdir)
    for name in (META_FILE, IDM_FILE):
        if not (workdir / name).is_file():
            raise UserInputError(f"{workdir / name}: missing; train first with `gw-jax idm train --workdir {workdir}`")
    meta = json.loads((workdir / META_FILE).read_text())
    state = serialization.msgpack_restore((workdir / IDM_FILE).read_bytes())
    norm = dict(joint_mean=np.asarray(state["joint_mean"]), joint_std=np.asarray(state["joint_std"]))
    seg = None
    if meta.get("masked"):
        if not (workdir / SEG_FILE).is_file():
            raise UserInputError(f"{workdir / SEG_FILE}: missing segmenter for a masked IDM")
        seg = serialization.msgpack_restore((workdir / SEG_FILE).read_bytes())
    return meta, state["params"], norm, seg
