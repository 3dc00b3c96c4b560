"""The simulator's arm on its own: forward kinematics, re-targeting to a moved base, kinematic renders.

    arm = ArmModel()                                        # the arm on the table, no objects
    world_from_ee_t44 = arm.ee_poses(joints_t7)             # the "grip" site's pose per frame
    joints_b = arm.retarget(joints_t7, world_from_base_b)   # same end-effector world poses, base moved
    frames, masks = arm.render(joints_t7, intrinsics, extrinsics, 64, 64)   # replay joints on camera

``joints`` are the episode layout: 6 arm joints + the gripper opening (sum of both fingers).
"""

from __future__ import annotations

import numpy as np

from gw_jax.data.sim import ARM_BODIES, _mujoco, _render, _renderer, mujoco_camera
from gw_jax.data.sim_scene import ARM_JOINTS, GRIPPER_JOINTS, default_camera, scene_xml
from gw_jax.geometry import se3


def fovy_of(intrinsics, height: int) -> float:
    """Vertical field of view (degrees) of the simulator's intrinsics at ``height`` pixels."""
    return float(np.rad2deg(2 * np.arctan(0.5 * height / float(np.asarray(intrinsics)[1, 1]))))


class ArmModel:
    """A MuJoCo model of the arm on the table (no objects), for kinematics and replay renders."""

    def __init__(self, camera: dict | None = None):
        self.mujoco = mj = _mujoco()
        xml = scene_xml(np.random.default_rng(0), objects=[], background=None, distractors=[],
                        camera=camera or default_camera())
        self.model = mj.MjModel.from_xml_string(xml)
        self.data = mj.MjData(self.model)
        ids = lambda names, kind: [mj.mj_name2id(self.model, kind, n) for n in names]
        self.arm_adr = np.array([self.model.jnt_qposadr[j] for j in ids(ARM_JOINTS, mj.mjtObj.mjOBJ_JOINT)])
        self.arm_dof = np.array([self.model.jnt_dofadr[j] for j in ids(ARM_JOINTS, mj.mjtObj.mjOBJ_JOINT)])
        self.grip_adr = np.array([self.model.jnt_qposadr[j] for j in ids(GRIPPER_JOINTS, mj.mjtObj.mjOBJ_JOINT)])
        self.limits = self.model.jnt_range[ids(ARM_JOINTS, mj.mjtObj.mjOBJ_JOINT)].copy()
        self.site = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_SITE, "grip")
        self.base = mj.mj_name2id(self.model, mj.mjtObj.mjOBJ_BODY, "arm_base")
        self.arm_geoms = [g for g in range(self.model.ngeom) if mj.mj_id2name(
            self.model, mj.mjtObj.mjOBJ_BODY, self.model.geom_bodyid[g]) in ARM_BODIES]
        self.home_base = self.world_from_base()

    def world_from_base(self) -> np.ndarray:
        quat = self.model.body_quat[self.base]
        rotation = np.zeros(9)
        self.mujoco.mju_quat2Mat(rotation, quat)
        return se3.make(rotation.reshape(3, 3), self.model.body_pos[self.base])

    def set_base(self, world_from_base_44) -> None:
        """Places the arm's base (its parent is the world, so its body pose is its world pose)."""
        pose = np.asarray(world_from_base_44, np.float64)
        quat = np.zeros(4)
        self.mujoco.mju_mat2Quat(quat, pose[:3, :3].reshape(-1))
        self.model.body_pos[self.base], self.model.body_quat[self.base] = pose[:3, 3], quat

    def _pose(self, joints_7) -> None:
        self.data.qpos[self.arm_adr] = joints_7[:6]
        self.data.qpos[self.grip_adr] = 0.5 * joints_7[6]
        self.mujoco.mj_kinematics(self.model, self.data)

    def _site_pose(self) -> np.ndarray:
        return se3.make(self.data.site_xmat[self.site].reshape(3, 3), self.data.site_xpos[self.site])

    def ee_poses(self, joints_t7) -> np.ndarray:
        """(T, 4, 4) world_from_ee of the "grip" site at each frame's joints (with the current base)."""
        out = []
        for q in np.asarray(joints_t7, np.float64):
            self._pose(q)
            out.append(self._site_pose())
        return np.stack(out)

    def retarget(self, joints_t7, world_from_base_b, *, iters: int = 300, tol: float = 1e-10, damping: float = 1e-6,
                 max_step: float = 0.1) -> np.ndarray:
        """Joints (T, 7) that put the end effector at the same world poses with the base at
        ``world_from_base_b``: K_t = (T_base->W_B)^-1 T_base->W_A T_t^{ee->base} (geometry.se3), then
        damped least squares on the full pose, warm-started from the original joints. Leaves the base at B."""
        joints = np.asarray(joints_t7, np.float64)
        world_from_base_a = self.world_from_base()
        base_from_ee = se3.invert(world_from_base_a)[None] @ self.ee_poses(joints)
        targets = np.asarray(world_from_base_b, np.float64)[None] @ se3.retarget_ee_poses(
            base_from_ee, world_from_base_a, world_from_base_b)
        self.set_base(world_from_base_b)
        jac_pos, jac_rot = np.zeros((3, self.model.nv)), np.zeros((3, self.model.nv))
        out, offset = joints.copy(), np.zeros(7)
        for t, target in enumerate(targets):
            q = joints[t] + offset  # warm start: the previous frame's correction
            for _ in range(iters):
                self._pose(q)
                self.mujoco.mj_comPos(self.model, self.data)
                current = self._site_pose()
                err_rot = current[:3, :3] @ _log_so3(current[:3, :3].T @ target[:3, :3])  # world frame
                err = np.concatenate([target[:3, 3] - current[:3, 3], err_rot])
                if np.linalg.norm(err) < tol:
                    break
                self.mujoco.mj_jacSite(self.model, self.data, jac_pos, jac_rot, self.site)
                jac = np.concatenate([jac_pos[:, self.arm_dof], jac_rot[:, self.arm_dof]])
                step = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), err)
                q[:6] += step * min(1.0, max_step / max(np.abs(step).max(), 1e-12))  # trust region
            out[t], offset = q, q - joints[t]
        return out

    def render(self, joints_t7, intrinsics, extrinsics, height: int, width: int, *, scale: int = 2):
        """(frames uint8 (T, H, W, 3), arm masks uint8 (T, H, W)): the joints replayed kinematically
        (limits not enforced) on the table, seen by the given camera."""
        mj = self.mujoco
        self.model.cam_fovy[0] = fovy_of(intrinsics, height)
        cam = mujoco_camera(extrinsics, self.model.cam_fovy[0])
        world_from_cam = se3.invert(extrinsics)
        quat = np.zeros(4)
        mujoco_axes = world_from_cam[:3, :3] @ np.diag([1.0, -1.0, -1.0])  # OpenCV -> MuJoCo camera axes
        mj.mju_mat2Quat(quat, mujoco_axes.reshape(-1))
        self.model.cam_pos[0], self.model.cam_quat[0] = cam["pos"], quat
        renderer = _renderer(mj, self.model, height * scale, width * scale)
        frames, masks = [], []
        try:
            for q in np.asarray(joints_t7, np.float64):
                self._pose(q)
                mj.mj_forward(self.model, self.data)
                frames.append(_render(renderer, self.data, "rgb", scale))
                seg = _render(renderer, self.data, "seg", scale)
                masks.append(np.isin(seg, self.arm_geoms).astype(np.uint8))
        finally:
            renderer.close()
        return np.stack(frames), np.stack(masks)


def _log_so3(rotation_33) -> np.ndarray:
    """Axis * angle of a rotation (the rotation-error vector for IK)."""
    angle = se3.rotation_angle(rotation_33)
    skew = np.array([rotation_33[2, 1] - rotation_33[1, 2], rotation_33[0, 2] - rotation_33[2, 0],
                     rotation_33[1, 0] - rotation_33[0, 1]])
    if angle < 1e-12:
        return 0.5 * skew
    return angle / (2 * np.sin(angle)) * skew
