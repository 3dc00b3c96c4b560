"""Pinhole cameras as the simulator writes them: intrinsics K (3, 3), extrinsics cam_from_world (4, 4).

Pixel (row i, column j) has its centre at (u, v) = (j + 0.5, i + 0.5); depth is the camera-frame z (metres).
"""

from __future__ import annotations

import numpy as np

from gw_jax.geometry import se3


def pixel_centres(height: int, width: int) -> np.ndarray:
    """(H, W, 2) pixel centres (u, v)."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return np.stack([u, v], axis=-1)


def unproject(depth_hw, intrinsics_33, extrinsics_44) -> np.ndarray:
    """World points (H, W, 3) of every pixel from its z-depth."""
    depth = np.asarray(depth_hw, np.float64)
    uv = pixel_centres(*depth.shape)
    k = np.asarray(intrinsics_33, np.float64)
    x = (uv[..., 0] - k[0, 2]) / k[0, 0] * depth
    y = (uv[..., 1] - k[1, 2]) / k[1, 1] * depth
    cam = np.stack([x, y, depth], axis=-1)
    return se3.apply(se3.invert(extrinsics_44), cam)


def project(points_n3, intrinsics_33, extrinsics_44) -> tuple[np.ndarray, np.ndarray]:
    """(uv (..., 2) pixel coordinates, z (...,) camera-frame depth) of world points (..., 3)."""
    cam = se3.apply(extrinsics_44, points_n3)
    z = cam[..., 2]
    k = np.asarray(intrinsics_33, np.float64)
    safe = np.where(np.abs(z) > 1e-9, z, 1e-9)
    u = k[0, 0] * cam[..., 0] / safe + k[0, 2]
    v = k[1, 1] * cam[..., 1] / safe + k[1, 2]
    return np.stack([u, v], axis=-1), z


def centre(extrinsics_44) -> np.ndarray:
    """The camera's position in the world."""
    return se3.invert(extrinsics_44)[:3, 3]


def axis_hit(extrinsics_44, plane_z: float) -> np.ndarray:
    """Where the optical axis meets the horizontal plane z = plane_z (world): the point a camera looks at."""
    world_from_cam = se3.invert(extrinsics_44)
    origin, forward = world_from_cam[:3, 3], world_from_cam[:3, 2]
    if abs(forward[2]) < 1e-9:
        raise ValueError("the camera looks parallel to the plane")
    return origin + (plane_z - origin[2]) / forward[2] * forward


def orbit(extrinsics_44, pivot_3, yaw: float, elevation: float = 0.0) -> np.ndarray:
    """The camera moved rigidly about ``pivot`` (world): ``elevation`` (rad) about its own horizontal axis,
    then ``yaw`` (rad) about the world vertical; it keeps looking at the pivot and keeps zero roll."""
    world_from_cam = se3.invert(extrinsics_44)
    pivot = np.asarray(pivot_3, np.float64)
    about_pivot = lambda rotation: se3.make(rotation, pivot - rotation @ pivot)
    tilt = about_pivot(se3.rotation_about(world_from_cam[:3, 0], elevation))
    turn = about_pivot(se3.rotation_about([0.0, 0.0, 1.0], yaw))
    return se3.invert(turn @ tilt @ world_from_cam)
