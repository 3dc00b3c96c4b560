"""ViewTransfer: the DiT re-renders a clip from a new camera, conditioned on control channels.

Control (per frame, each encoded by the training codec and concatenated): the warp-only composite (the
background warped into the target camera by depth, arm pixels removed, holes filled from the nearest warped
pixel, with the arm as rendered at the re-targeted joints on top), the arm layer alone, and a mask image
(warp coverage, arm). The DiT generates the *residual* latents, target minus composite: where the warp is
right that is near zero, so the model spends itself on the holes and the warp's errors (a tiny DiT cannot
carry every pixel of a frame through its width, but it does not have to). Training pairs come from single-view video by
double projection A -> virtual B -> A (``geometry.warp.double_projection``): the control then has exactly
the holes and resampling of a real A -> B warp, and the target is A's own frame. At generation time the
background is warped A -> B and the arm rendered at B.

Generation starts from the residual's prior mean (zeros) at a small sigma (``config.sample.sigma_max``,
0.5, one step), not from noise at sigma 80: the tiny DiT cannot cancel per-pixel noise through its width,
so the release sampler leaves the noise in (measured in docs/engine.md). ``compose`` then takes the
generated pixels only where the warp left a hole; warped pixels and the re-rendered arm stay as they are.

    pair = double_projection_pair(frames, depth, arm_mask, K, E, rng)     # training, from one view
    pair = novel_view_pair(frames, depth, arm_mask, K, E, K_b, E_b, arm_frames_b, arm_masks_b)
    control = control_latents(codec, [pair, ...])                         # (B, 3 * C, T, h, w)
    baseline = warp_only(pair)                                            # arm over nearest-filled warp
    residual = target_latents(codec, pairs)                               # what the DiT learns to generate
    config = view_transfer_config(settings)                               # demo DiT + control channels
    frames = to_frames(codec.decode(generate(model, control, ...) + base_latents(codec, pairs)))
    views = compose(pairs, frames)                                        # generated pixels in the holes only
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from gw_jax.diffusion import sample_reference, with_control
from gw_jax.geometry import camera, warp
from gw_jax.models.factory import load_codec
from gw_jax.train.defaults import demo_config

CONTROL_IMAGES = 3  # warped background, arm layer, masks


@dataclasses.dataclass
class ViewPair:
    """One clip's ViewTransfer inputs (uint8 / bool, (T, H, W[, 3])) and, for training, its target."""
    background: np.ndarray
    valid: np.ndarray
    arm: np.ndarray
    arm_mask: np.ndarray
    target: np.ndarray | None = None


def _without_arm(arm_mask_hw) -> np.ndarray:
    """Source pixels to warp: not the arm, nor the pixel ring around it (its colours blend into the edge)."""
    return ~ndimage.binary_dilation(np.asarray(arm_mask_hw) > 0)


def look_point(depth_hw, intrinsics, extrinsics) -> np.ndarray:
    """The world point at the principal point (median depth of the central 5x5 pixels): the orbit pivot."""
    h, w = np.shape(depth_hw)
    centre = np.full((h, w), np.nan)
    centre[h // 2 - 2:h // 2 + 3, w // 2 - 2:w // 2 + 3] = 1.0
    d = np.nanmedian(np.asarray(depth_hw, np.float64) * centre)
    return camera.unproject(np.full((h, w), d), intrinsics, extrinsics)[h // 2, w // 2]


def virtual_camera(depth_hw, intrinsics, extrinsics, rng, *, yaw_deg=(10.0, 35.0), elevation_deg=(-12.0, 8.0)):
    """A camera orbiting this one about the point it looks at (the simulator's novel-view distribution)."""
    yaw = rng.choice([-1, 1]) * np.deg2rad(rng.uniform(*yaw_deg))
    return camera.orbit(extrinsics, look_point(depth_hw, intrinsics, extrinsics), yaw,
                        np.deg2rad(rng.uniform(*elevation_deg)))


def double_projection_pair(frames, depth, arm_mask, intrinsics, extrinsics, rng) -> ViewPair:
    """A self-supervised pair from one view: control from A -> virtual -> A (one virtual camera per clip,
    as a novel view stays put), the arm as it is in A, the target A itself."""
    virtual = virtual_camera(depth[0], intrinsics, extrinsics, rng)
    out = [warp.double_projection(f, d, intrinsics, extrinsics, virtual, valid=_without_arm(m))
           for f, d, m in zip(frames, np.asarray(depth, np.float64), arm_mask, strict=True)]
    masks = np.asarray(arm_mask) > 0
    return ViewPair(background=np.stack([o["image"] for o in out]), valid=np.stack([o["valid"] for o in out]),
                    arm=np.where(masks[..., None], frames, 0).astype(np.uint8), arm_mask=masks,
                    target=np.asarray(frames))


def novel_view_pair(frames, depth, arm_mask, intrinsics, extrinsics, intrinsics_b, extrinsics_b, arm_frames_b,
                    arm_masks_b, target=None) -> ViewPair:
    """Inputs for a new camera B: A's background warped to B, the arm rendered at B (``arm_frames_b`` with
    ``arm_masks_b``, e.g. ``ArmModel.render`` at the re-targeted joints)."""
    out = [warp.forward_warp(f, d, intrinsics, extrinsics, intrinsics_b, extrinsics_b, valid=_without_arm(m))
           for f, d, m in zip(frames, np.asarray(depth, np.float64), arm_mask, strict=True)]
    masks = np.asarray(arm_masks_b) > 0
    return ViewPair(background=np.stack([o["image"] for o in out]), valid=np.stack([o["valid"] for o in out]),
                    arm=np.where(masks[..., None], arm_frames_b, 0).astype(np.uint8), arm_mask=masks,
                    target=None if target is None else np.asarray(target))


def holes(pair: ViewPair) -> np.ndarray:
    """(T, H, W) bool: pixels of view B that neither the warp nor the arm render covers."""
    return ~pair.valid & ~pair.arm_mask


def compose(pairs: list[ViewPair], generated) -> np.ndarray:
    """Generated frames (B, T, H, W, 3) in the holes, the warp-only composite everywhere else."""
    return np.stack([np.where(holes(p)[..., None], g, warp_only(p)) for p, g in zip(pairs, generated, strict=True)])


def warp_only(pair: ViewPair) -> np.ndarray:
    """The baseline: the arm layer over the warped background, holes filled from the nearest warped pixel."""
    filled = np.stack([warp.nearest_fill(b, v) for b, v in zip(pair.background, pair.valid, strict=True)])
    return np.where(pair.arm_mask[..., None], pair.arm, filled).astype(np.uint8)


def to_video(frames_thwc) -> np.ndarray:
    """uint8 (..., T, H, W, 3) -> float32 (..., 3, T, H, W) in [-1, 1]."""
    return np.moveaxis(np.asarray(frames_thwc, np.float32) / 127.5 - 1.0, -1, -4)


def to_frames(video_bcthw) -> np.ndarray:
    return np.clip((np.moveaxis(np.asarray(video_bcthw), -4, -1) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)


def control_images(pair: ViewPair) -> np.ndarray:
    """(CONTROL_IMAGES, 3, T, H, W) in [-1, 1]: warp-only composite, arm layer, masks (coverage, arm, coverage)."""
    masks = np.stack([pair.valid, pair.arm_mask, pair.valid], axis=-1).astype(np.uint8) * 255
    return np.stack([to_video(warp_only(pair)), to_video(pair.arm), to_video(masks)])


def _encode(codec, frames_list, chunk: int = 32) -> np.ndarray:
    return np.concatenate([np.asarray(codec.encode(jnp.asarray(to_video(np.stack(frames_list[i:i + chunk])))))
                           for i in range(0, len(frames_list), chunk)])


def base_latents(codec, pairs: list[ViewPair]) -> np.ndarray:
    """The warp-only composites' latents: what generated residuals are added to."""
    return _encode(codec, [warp_only(p) for p in pairs])


def target_latents(codec, pairs: list[ViewPair]) -> np.ndarray:
    """Training targets: the target frames' latents minus the composites'."""
    return _encode(codec, [p.target for p in pairs]) - base_latents(codec, pairs)


def control_latents(codec, pairs: list[ViewPair], chunk: int = 32) -> np.ndarray:
    """(B, CONTROL_IMAGES * C, T, h, w): each control image through the codec, channels concatenated."""
    out = []
    for start in range(0, len(pairs), chunk):
        images = np.stack([control_images(p) for p in pairs[start:start + chunk]])  # (b, K, 3, T, H, W)
        b, k = images.shape[:2]
        z = np.asarray(codec.encode(jnp.asarray(images.reshape(b * k, *images.shape[2:]))))
        out.append(z.reshape(b, k * z.shape[1], *z.shape[2:]))
    return np.concatenate(out)


def view_transfer_config(settings: dict, *, pool: int = 1, fold: int = 4):
    """The demo's DiT and training preset on ``settings["size"]`` frames, with the control channels added to
    its input. The codec is whatever ``config.codec`` names (``load_codec``): the pixel codec, unpooled, so
    generated views keep the frames' size."""
    # the demo's DiT on the fixed pixel codec, with the training sigmas of the base config (what was measured)
    config = demo_config(dict(dict(codec="pixel", model_channels=96, p_mean=0.0, p_std=1.0, sigma_max=80.0,
                                   sample_steps=1), **settings))
    config.codec.update(dict(name="pixel", pool=pool, fold=fold))
    codec = load_codec(config)
    latent = settings["size"] // codec.spatial_factor
    config.model.update(dict(max_img_h=latent, max_img_w=latent, out_channels=codec.channels,
                             in_channels=codec.channels * (1 + CONTROL_IMAGES) + 1))
    config.sample.update(dict(steps=settings.get("sample_steps", 1), sigma_max=settings.get("sample_sigma", 0.5),
                              guidance=1.0))
    return config


def generate(model, control, text_emb, fps, key, sample_cfg, chunk: int = 16, from_noise: bool = False) -> np.ndarray:
    """Residual latents (B, C, T, h, w) from the reference sampler (no reference frames: nothing of view B
    is known), conditioned on ``control``; add ``base_latents`` and decode. The sampler starts at
    ``sample_cfg.sigma_max`` from the residual's prior mean (zeros), or with ``from_noise`` from
    N(0, sigma_max^2) as the release does."""

    @jax.jit
    def run(noise, control, text_emb, fps):
        out, _ = sample_reference(with_control(model, control), noise, context=text_emb, fps=fps,
                                  steps=sample_cfg.steps, guidance=1.0, sigma_max=sample_cfg.sigma_max,
                                  augment_sigma=sample_cfg.augment_sigma)
        return out

    channels = control.shape[1] // CONTROL_IMAGES
    outs = []
    for start in range(0, len(control), chunk):
        part = slice(start, start + chunk)
        c = np.asarray(control[part])
        pad = chunk - len(c)  # one compiled shape
        c_full = np.concatenate([c, np.zeros((pad,) + c.shape[1:], c.dtype)])
        emb = np.concatenate([text_emb[part], np.zeros((pad,) + text_emb.shape[1:], text_emb.dtype)])
        f = np.concatenate([fps[part], np.full(pad, fps[0], np.float32)])
        shape = (chunk, channels) + c.shape[2:]
        noise = jax.random.normal(jax.random.fold_in(key, start), shape) * sample_cfg.sigma_max * from_noise
        outs.append(np.asarray(run(noise, jnp.asarray(c_full), jnp.asarray(emb), jnp.asarray(f[:1])))[:len(c)])
    return np.concatenate(outs)
