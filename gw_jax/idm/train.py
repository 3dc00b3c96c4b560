"""Training, inference, metrics and Orbax checkpoints for the arm segmenter and the IDM.

  seg, losses = train_segmenter(frames_uint8, masks, steps)      masks = predict_masks(seg, frames_uint8)
  idm, norm, losses = train_idm(idm_inputs(frames, masks), joints, steps)
  joints = predict_joints(idm, norm, idm_inputs(frames, masks))
  save(workdir, meta, idm, norm, seg);  trained = load(workdir)   # WORKDIR/{idm,segmenter}/ + meta.json

Masking choice: the IDM trains on frames multiplied by the segmenter's *predicted* (soft) mask, not the
ground-truth one. At label time only predicted masks exist, so training on them removes a train/label gap:
the IDM learns to cope with the segmenter's typical errors (thin gripper fingers half-missed, a distractor
pixel let through) instead of meeting them for the first time on generated video.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

from gw_jax.errors import UserInputError
from gw_jax.idm.models import IDM, UNet
from gw_jax.models.compiled_init import compiled_init

SEG_DIR, IDM_DIR, META_FILE = "segmenter", "idm", "meta.json"


def _adam(steps: int, lr: float):
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, min(100, steps // 10 + 1), max(steps, 2), lr * 0.02)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))


def _fit(model: nnx.Module, loss_fn: Callable, sample: Callable, steps: int, lr: float, desc: str,
         progress: bool) -> list[float]:
    """Trains ``model`` in place: ``steps`` AdamW steps on ``loss_fn(model, x, y)`` over ``sample() -> (x, y)``."""
    graphdef, params = nnx.split(model)
    tx = _adam(steps, lr)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: loss_fn(nnx.merge(graphdef, p), x, y))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state, losses = tx.init(params), []
    with tqdm(total=steps, desc=desc, disable=not progress, mininterval=1.0) as bar:
        for _ in range(steps):
            params, opt_state, loss = step(params, opt_state, *sample())
            losses.append(float(loss))
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
    nnx.update(model, params)
    return losses


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, x):
    return nnx.merge(graphdef, state)(x)


# ---- segmenter ------------------------------------------------------------------------------------
def train_segmenter(frames: np.ndarray, masks: np.ndarray, steps: int = 400, batch: int = 16, lr: float = 3e-3,
                    seed: int = 0, progress: bool = True) -> tuple[UNet, list[float]]:
    """Per-frame binary cross-entropy on ground-truth arm masks. frames uint8 (..., H, W, 3), masks (..., H, W)."""
    frames = frames.reshape(-1, *frames.shape[-3:])
    masks = masks.reshape(-1, *masks.shape[-2:]).astype(np.float32)
    rng = np.random.default_rng(seed)

    def sample():
        pick = rng.integers(len(frames), size=batch)
        return frames[pick], masks[pick]

    def loss_fn(model, x, y):
        return optax.sigmoid_binary_cross_entropy(model(x.astype(jnp.float32) / 255.0), y).mean()

    model = compiled_init(lambda: UNet(rngs=nnx.Rngs(seed)), optimise=False)  # eager: 13-25 s on a busy CPU
    return model, _fit(model, loss_fn, sample, steps, lr, "segmenter", progress)


def predict_masks(model: UNet, frames: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Soft arm masks in [0, 1], float32 (..., H, W), for uint8 frames (..., H, W, 3)."""
    graphdef, state = nnx.split(model)
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = []
    for start in range(0, len(flat), chunk):  # fixed chunk size (padded) -> one compilation
        part = flat[start:start + chunk]
        padded = np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), part.dtype)])
        logits = _apply(graphdef, state, jnp.asarray(padded, jnp.float32) / 255.0)
        out.append(np.asarray(jax.nn.sigmoid(logits))[:len(part)])
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
              seed: int = 0, progress: bool = True) -> tuple[IDM, dict, list[float]]:
    """MSE on per-joint normalised angles. inputs float (N, T, H, W, 3), joints (N, T, D).
    Returns (model, normalisation {joint_mean, joint_std}, losses)."""
    flat = joints.reshape(-1, joints.shape[-1])
    norm = dict(joint_mean=flat.mean(0).astype(np.float32),
                joint_std=np.maximum(flat.std(0), 1e-6).astype(np.float32))  # floor: guard against /0 only
    targets = (joints - norm["joint_mean"]) / norm["joint_std"]
    rng, batch = np.random.default_rng(seed), min(batch, len(inputs))

    def sample():
        pick = rng.choice(len(inputs), size=batch, replace=False)
        return inputs[pick], targets[pick]

    model = compiled_init(lambda: IDM(inputs.shape[-3:-1], joints=joints.shape[-1], rngs=nnx.Rngs(seed)),
                          optimise=False)  # eager (or an optimising compile): 13-18 s on a busy CPU, this ~3 s
    losses = _fit(model, lambda m, x, y: jnp.mean((m(x) - y) ** 2), sample, steps, lr, "idm", progress)
    return model, norm, losses


def predict_joints(model: IDM, norm: dict, inputs: np.ndarray) -> np.ndarray:
    """Joint angles (N, T, D) in physical units from IDM inputs (N, T, H, W, 3), one clip at a time."""
    graphdef, state = nnx.split(model)
    out = [np.asarray(_apply(graphdef, state, clip[None]))[0] for clip in inputs]
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
                varying_joints=[str(n) for n, v in zip(names, varying, strict=True) if v],
                joints={str(n): dict(r2=float(r), mae=float(m), std=float(s))
                        for n, r, m, s in zip(names, r2, mae, std, strict=True)})


# ---- checkpoints ----------------------------------------------------------------------------------
@dataclasses.dataclass
class Trained:
    """What ``load`` returns: the run's ``meta`` (meta.json), the IDM, its joint normalisation and the
    segmenter (None for an unmasked IDM)."""

    meta: dict
    idm: IDM
    norm: dict
    segmenter: UNet | None


def _orbax_save(path: Path, tree) -> None:
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path.absolute(), tree, force=True)


def _orbax_restore(path: Path, model: nnx.Module, extra: dict | None = None) -> tuple[nnx.Module, dict]:
    """Restores ``{"params": ..., **extra}`` saved by ``save`` into the abstract ``model`` (from
    ``nnx.eval_shape``); ``extra`` maps further keys to ShapeDtypeStructs."""
    graphdef, state = nnx.split(model)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            tree = checkpointer.restore(path.absolute(), dict(params=nnx.to_pure_dict(state), **(extra or {})))
    except Exception as e:  # noqa: BLE001 - any decode failure is a bad checkpoint
        raise UserInputError(f"{path}: not a readable IDM checkpoint ({e})") from None
    nnx.replace_by_pure_dict(state, tree.pop("params"))
    return nnx.merge(graphdef, state), tree


def save(workdir: str | Path, meta: dict, idm: IDM, norm: dict, segmenter: UNet | None = None) -> None:
    """WORKDIR/idm/ (params + joint mean/std) and WORKDIR/segmenter/ (if any), Orbax; WORKDIR/meta.json."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _orbax_save(workdir / IDM_DIR, dict(params=nnx.to_pure_dict(nnx.state(idm)), **norm))
    if segmenter is not None:
        _orbax_save(workdir / SEG_DIR, dict(params=nnx.to_pure_dict(nnx.state(segmenter))))
    (workdir / META_FILE).write_text(json.dumps(dict(meta, saved=time.strftime("%Y-%m-%d %H:%M:%S")), indent=1))


def load(workdir: str | Path) -> Trained:
    """The run saved in ``workdir``; UserInputError naming a missing file or an old-format checkpoint."""
    workdir = Path(workdir)
    retrain = f"train first with `gw-jax idm train --workdir {workdir}`"
    if not (workdir / META_FILE).is_file():
        raise UserInputError(f"{workdir / META_FILE}: missing; {retrain}")
    meta = json.loads((workdir / META_FILE).read_text())
    for name in [IDM_DIR] + ([SEG_DIR] if meta.get("masked") else []):
        if any(workdir.glob(f"{name}.*")) and not (workdir / name).is_dir():  # earlier versions: one file per net
            raise UserInputError(f"{workdir / name}: checkpoint in an old single-file format; retrain with "
                                 f"`gw-jax idm train --workdir {workdir}`")
        if not (workdir / name).is_dir():
            raise UserInputError(f"{workdir / name}: missing; {retrain}")
    d = len(meta["joint_names"])
    idm = nnx.eval_shape(lambda: IDM(tuple(meta["frame_shape"][:2]), joints=d, rngs=nnx.Rngs(0)))
    vector = jax.ShapeDtypeStruct((d,), jnp.float32)
    idm, norm = _orbax_restore(workdir / IDM_DIR, idm, dict(joint_mean=vector, joint_std=vector))
    segmenter = None
    if meta.get("masked"):
        segmenter, _ = _orbax_restore(workdir / SEG_DIR, nnx.eval_shape(lambda: UNet(rngs=nnx.Rngs(0))))
    return Trained(meta, idm, {k: np.asarray(v) for k, v in norm.items()}, segmenter)
