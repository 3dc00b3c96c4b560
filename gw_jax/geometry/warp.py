"""Forward warping with a z-buffer, co-visibility, the double projection A -> B -> A, hole filling.

    out = forward_warp(image_hwc, depth_hw, K_a, E_a, K_b, E_b, valid=~arm_hw)  # {"image", "depth", "valid"}
    seen = covisible(depth_a, K_a, E_a, depth_b, K_b, E_b)                     # B pixels also seen by A
    pair = double_projection(image_hwc, depth_hw, K, E, E_virtual, valid=~arm_hw)  # A -> virtual -> A
    filled = nearest_fill(image_hwc, valid_hw)                                  # holes from nearest pixel

Forward warping splats every valid source pixel (unprojected by its depth, projected into B) onto the target
pixels around where it lands (``footprint="quad"``: the 2x2 pixels around it, closing the cracks that a
magnifying warp opens; ``"nearest"``: the one pixel it lands in). A soft z-buffer decides each target pixel:
among the points within ``depth_tolerance`` (relative) of the nearest depth there, the one landing closest
to the pixel centre wins, so a surface seen at a grazing angle is not speckled by its own neighbours.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from gw_jax.geometry import camera

QUAD = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])


def forward_warp(image_hwc, depth_hw, intrinsics_a, extrinsics_a, intrinsics_b, extrinsics_b, *, valid=None,
                 out_hw: tuple[int, int] | None = None, footprint: str = "quad",
                 depth_tolerance: float = 0.03) -> dict:
    """{"image" (Hb, Wb, C) zero in holes, "depth" (Hb, Wb) inf in holes, "valid" (Hb, Wb) bool}."""
    image = np.asarray(image_hwc)
    depth = np.asarray(depth_hw, np.float64)
    h, w = out_hw or depth.shape
    keep = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        keep &= np.asarray(valid, bool)
    points = camera.unproject(np.where(keep, depth, 1.0), intrinsics_a, extrinsics_a)[keep]
    colours = image[keep]
    uv, z = camera.project(points, intrinsics_b, extrinsics_b)
    in_front = z > 1e-6
    uv, z, colours = uv[in_front], z[in_front], colours[in_front]
    if footprint == "quad":
        base = np.floor(uv - 0.5).astype(np.int64)
        cells = base[:, None, :] + QUAD[None]  # (N, 4, 2) as (column, row)
    elif footprint == "nearest":
        cells = np.floor(uv).astype(np.int64)[:, None, :]
    else:
        raise ValueError(f"footprint {footprint!r}: 'quad' or 'nearest'")
    source = np.broadcast_to(np.arange(len(z))[:, None], cells.shape[:2]).reshape(-1)
    cells = cells.reshape(-1, 2)
    dist = np.linalg.norm(cells + 0.5 - uv[source], axis=-1)
    inside = (cells[:, 0] >= 0) & (cells[:, 0] < w) & (cells[:, 1] >= 0) & (cells[:, 1] < h)
    source, cells, dist = source[inside], cells[inside], dist[inside]
    pixel = cells[:, 1] * w + cells[:, 0]
    nearest = np.full(h * w, np.inf)
    np.minimum.at(nearest, pixel, z[source])
    front = z[source] <= nearest[pixel] * (1.0 + depth_tolerance)
    source, pixel, dist = source[front], pixel[front], dist[front]
    order = np.lexsort((dist, pixel))  # by pixel, then closest landing first
    pixel_sorted = pixel[order]
    first = np.ones(len(order), bool)
    first[1:] = pixel_sorted[1:] != pixel_sorted[:-1]
    winners, targets = source[order[first]], pixel_sorted[first]
    out_image = np.zeros((h * w,) + image.shape[2:], image.dtype)
    out_depth = np.full(h * w, np.inf)
    out_image[targets], out_depth[targets] = colours[winners], z[winners]
    out_valid = np.zeros(h * w, bool)
    out_valid[targets] = True
    return dict(image=out_image.reshape((h, w) + image.shape[2:]), depth=out_depth.reshape(h, w),
                valid=out_valid.reshape(h, w))


def covisible(depth_a, intrinsics_a, extrinsics_a, depth_b, intrinsics_b, extrinsics_b, *,
              depth_tolerance: float = 0.03) -> np.ndarray:
    """(Hb, Wb) bool: pixels of B whose surface point (from B's own depth) A also sees, unoccluded."""
    depth_a, depth_b = np.asarray(depth_a, np.float64), np.asarray(depth_b, np.float64)
    points = camera.unproject(depth_b, intrinsics_b, extrinsics_b)
    uv, z = camera.project(points, intrinsics_a, extrinsics_a)
    col, row = np.floor(uv[..., 0]).astype(np.int64), np.floor(uv[..., 1]).astype(np.int64)
    h, w = depth_a.shape
    inside = (z > 1e-6) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    seen_depth = depth_a[np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]
    return inside & (np.abs(seen_depth - z) <= depth_tolerance * z) & np.isfinite(depth_b)


def double_projection(image_hwc, depth_hw, intrinsics, extrinsics, extrinsics_virtual, *, valid=None,
                      intrinsics_virtual=None, **warp_kwargs) -> dict:
    """A -> virtual camera -> A: A's frame with exactly the holes and resampling a real A -> B warp leaves
    (what B does not see of A's surfaces), paired with A's own frame as the target: self-supervised
    training data for view transfer from single-view video. Returns forward_warp's dict, in A's pixels."""
    k_virtual = intrinsics if intrinsics_virtual is None else intrinsics_virtual
    there = forward_warp(image_hwc, depth_hw, intrinsics, extrinsics, k_virtual, extrinsics_virtual, valid=valid,
                         **warp_kwargs)
    return forward_warp(there["image"], there["depth"], k_virtual, extrinsics_virtual, intrinsics, extrinsics,
                        valid=there["valid"], out_hw=np.shape(depth_hw), **warp_kwargs)


def nearest_fill(image_hwc, valid_hw) -> np.ndarray:
    """Every hole takes the value of its nearest valid pixel (all holes stay zero if nothing is valid)."""
    image, valid = np.asarray(image_hwc), np.asarray(valid_hw, bool)
    if not valid.any() or valid.all():
        return image.copy()
    _, (rows, cols) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return image[rows, cols]
