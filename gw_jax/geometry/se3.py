"""SE(3) as 4x4 homogeneous matrices (``..._44``), batched over leading axes, and action re-targeting.

Naming: ``a_from_b`` maps coordinates in frame b to frame a (so ``world_from_cam`` is a camera's pose in the
world, and the simulator's extrinsics are ``cam_from_world``). The paper writes T^{b->a} for ``a_from_b``.
"""

from __future__ import annotations

import numpy as np


def make(rotation_33, translation_3) -> np.ndarray:
    """(..., 4, 4) from rotations (..., 3, 3) and translations (..., 3)."""
    rotation, translation = np.asarray(rotation_33, np.float64), np.asarray(translation_3, np.float64)
    out = np.zeros(rotation.shape[:-2] + (4, 4))
    out[..., :3, :3], out[..., :3, 3], out[..., 3, 3] = rotation, translation, 1.0
    return out


def invert(pose_44) -> np.ndarray:
    """Exact inverse of rigid transforms: (R, t)^-1 = (R^T, -R^T t)."""
    pose = np.asarray(pose_44, np.float64)
    rot_t = np.swapaxes(pose[..., :3, :3], -1, -2)
    return make(rot_t, -np.einsum("...ij,...j->...i", rot_t, pose[..., :3, 3]))


def apply(pose_44, points_n3) -> np.ndarray:
    """Transforms points (..., 3) by one pose (4, 4)."""
    pose = np.asarray(pose_44, np.float64)
    return np.asarray(points_n3, np.float64) @ pose[:3, :3].T + pose[:3, 3]


def rotation_about(axis_3, angle: float) -> np.ndarray:
    """Rodrigues' formula: rotation by ``angle`` (rad) about ``axis``."""
    axis = np.asarray(axis_3, np.float64)
    axis = axis / np.linalg.norm(axis)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def rotation_angle(rotation_33) -> np.ndarray:
    """Geodesic angle (rad) of rotations (..., 3, 3), stable near 0."""
    rotation = np.asarray(rotation_33, np.float64)
    skew = rotation - np.swapaxes(rotation, -1, -2)
    sin = 0.5 * np.linalg.norm(np.stack([skew[..., 2, 1], skew[..., 0, 2], skew[..., 1, 0]], -1), axis=-1)
    cos = 0.5 * (np.trace(rotation, axis1=-2, axis2=-1) - 1.0)
    return np.arctan2(sin, cos)


def pose_error(a_44, b_44) -> tuple[np.ndarray, np.ndarray]:
    """(translation distance, rotation angle) between poses, elementwise over leading axes."""
    a, b = np.asarray(a_44, np.float64), np.asarray(b_44, np.float64)
    relative = np.swapaxes(a[..., :3, :3], -1, -2) @ b[..., :3, :3]
    return np.linalg.norm(a[..., :3, 3] - b[..., :3, 3], axis=-1), rotation_angle(relative)


def retarget_ee_poses(base_from_ee_t44, world_from_base_a44, world_from_base_b44) -> np.ndarray:
    """K_t = (T_base->W_B)^-1 . T_base->W_A . T_t^{ee->base}: the end-effector poses, in the frame of a robot
    base placed at ``world_from_base_b``, that keep each pose's world placement from base placement A.

    base_from_ee (T, 4, 4) -> (T, 4, 4); world_from_base_b @ K_t == world_from_base_a @ base_from_ee_t.
    """
    return invert(world_from_base_b44) @ np.asarray(world_from_base_a44, np.float64) @ np.asarray(
        base_from_ee_t44, np.float64)
