"""Simulated robot-arm manipulation episodes (MuJoCo): the project's default data.

An episode: a 6-joint arm (spherical wrist) with a parallel gripper pushes, picks, or picks and places a
cube whose yaw, mass, friction and damping are random. A scripted policy plans gripper waypoints in
Cartesian space (with a finger heading and a wrist tilt) and follows them at 50 Hz with damped-least-
squares IK on critically damped, gravity-compensated position servos; the closed gripper squeezes.
Success (``task_success``) over 30 seeds at 33 frames / 8 fps (4 s), from ``gw-jax bench sim``: see the
README; at 16 fps (2 s episodes) the arm must move twice as fast and fewer picks and places succeed.
Written in the seed's layout: ``i.mp4``, ``i.txt`` (prompt) and ``i.npz`` (ground truth: joints, actions,
camera intrinsics/extrinsics, depth, arm segmentation, object physics). ``views=N`` also renders N extra
cameras orbiting the main one (``view_frames``, ``view_depth``, ``view_arm_mask``, ``view_intrinsics``,
``view_extrinsics``; drawn from their own seeded stream, so the episode itself does not change).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gw_jax.data.sim_scene import (ARM_BASE_Y, ARM_JOINTS, COLOURS, GRIPPER_JOINTS, TABLE_TOP, default_camera,
                                   scene_xml)
from gw_jax.data.video import read_video, write_video
from gw_jax.data.workers import imap_unordered
from gw_jax.errors import UserInputError
from gw_jax.geometry import camera as cam_geometry
from gw_jax.geometry import se3
from gw_jax.storage import as_path, make_output_dir, native, write_bytes, write_text

TASKS = ("push", "pick", "place")
ARM_BODIES = ("arm_base", "link1", "link2", "link3", "link4", "link5", "link6", "finger_l", "finger_r")
HOME = np.array([0.0, 0.9, -1.9, -0.57, 0.0, 0.0])  # gripper down, above the table
GRIPPER_OPEN, GRIPPER_CLOSED = 0.035, -0.02  # closed is past the joint limit: the fingers squeeze
CONTROL_HZ = 50.0
SCHEMA_VERSION = 1


os.environ.setdefault("MUJOCO_GL", "egl")  # read when mujoco is first imported: set it before that


def _no_gl(e: Exception) -> UserInputError:
    return UserInputError(
        f"MuJoCo could not open an offscreen GL context (MUJOCO_GL={os.environ.get('MUJOCO_GL')}): "
        f"{type(e).__name__}: {e}. Install EGL with Mesa: apt-get install -y libegl1 libegl-mesa0 libgl1 "
        "libgl1-mesa-dri (renders without a GPU too; Colab's GPU runtimes have EGL), or OSMesa: apt-get install -y "
        "libosmesa6 and set MUJOCO_GL=osmesa before gw_jax is imported")


def _mujoco():
    try:
        import mujoco  # loads the MUJOCO_GL backend's libraries (through PyOpenGL) right away
    except ModuleNotFoundError as e:
        if e.name == "mujoco":
            raise
        raise _no_gl(e) from e
    except (AttributeError, ImportError, OSError) as e:  # PyOpenGL without the library: 'NoneType' ... glGetError
        raise _no_gl(e) from e
    return mujoco


def _renderer(mujoco, model, height, width):
    try:
        return mujoco.Renderer(model, height, width)
    except Exception as e:  # no GL context: say what to install
        raise _no_gl(e) from e


def _draw_episode(rng: np.random.Generator, task: str, random_background: bool, distractors: int,
                  random_camera: bool, camera: dict | None = None) -> dict:
    colour = list(COLOURS)[rng.integers(len(COLOURS))]
    cube = dict(name="cube", size=0.025, pos=(rng.uniform(-0.18, 0.18), rng.uniform(-0.02, 0.16)),
                mass=rng.uniform(0.05, 0.4), friction=rng.uniform(0.5, 1.2), damping=rng.uniform(0.0, 0.05),
                rgba=COLOURS[colour], yaw=rng.uniform(-np.pi / 4, np.pi / 4))
    side = ["left", "right"][rng.integers(2)]
    target = np.array([(-0.14 if side == "left" else 0.14) + rng.uniform(-0.03, 0.03), rng.uniform(0.0, 0.12)])
    if abs(target[0] - cube["pos"][0]) < 0.08:
        target[0] = -target[0]
        side = "left" if target[0] < 0 else "right"
    others = [dict(type=["box", "sphere", "cylinder"][rng.integers(3)], size=rng.uniform(0.015, 0.04),
                   pos=(rng.uniform(-0.45, 0.45), rng.uniform(0.2, 0.4)), rgba=rng.uniform(0, 1, 3))
              for _ in range(distractors)]
    prompt = {"push": f"push the {colour} cube to the {side}",
              "pick": f"pick up the {colour} cube",
              "place": f"pick up the {colour} cube and place it on the {side}"}[task]
    # How the wrist moves: the gripper's turn while carrying (rad) and its sideways tilt in transit (rad).
    wrist = dict(turn=rng.uniform(-0.6, 0.6), tilt=rng.choice([-1, 1]) * rng.uniform(0.4, 0.8))
    return dict(cube=cube, target=target, colour=colour, prompt=prompt, distractors=others, wrist=wrist,
                background=tuple(rng.uniform(0.1, 0.9, 3)) if random_background else None,
                camera=default_camera(rng if random_camera else None, **(camera or {})))


def _arm_heading(xy) -> float:
    """The heading (rad) the shoulder yaw gives the fingers when the gripper is above ``xy``."""
    return float(np.arctan2(-xy[0], xy[1] - ARM_BASE_Y))


def _grasp_heading(cube: dict) -> float:
    """World heading (rad) for the fingers that matches a face pair of the cube, chosen nearest the arm's
    own heading at the cube so that the wrist roll stays within +-pi/4 (the gripper looks the same turned
    by pi, so rolls must stay within +-pi/2 for the video to determine them)."""
    quarter_turns = np.round((_arm_heading(cube["pos"]) - cube["yaw"]) / (np.pi / 2))
    return float(cube["yaw"] + quarter_turns * np.pi / 2)


def _waypoints(task: str, cube: dict, target_xy, wrist: dict):
    """[(time fraction, xyz, gripper opening, (heading, tilt))]: the scripted policy's plan. ``heading`` is
    the fingers' world heading (None: follow the arm), ``tilt`` the sideways wrist tilt, 0 whenever the
    gripper is near the table or holds the cube, so grasps and pushes happen with the gripper straight down."""
    cx, cy = cube["pos"]
    tx, ty = target_xy
    grip_z = TABLE_TOP + cube["size"] - 0.012  # fingertips just below the cube's middle, above the table
    hover = grip_z + 0.13
    turn, tilt = wrist["turn"], wrist["tilt"]
    if task == "push":
        direction = np.array([tx - cx, ty - cy])
        direction /= np.linalg.norm(direction) + 1e-9
        start = np.array([cx, cy]) - 0.07 * direction
        end = np.array([tx, ty]) - 0.03 * direction
        heading = _arm_heading(start) + turn  # the closed fingers push alike at any heading
        return [(0.0, None, GRIPPER_CLOSED, (None, 0.0)), (0.25, (*start, hover), GRIPPER_CLOSED, (heading, tilt)),
                (0.4, (*start, grip_z + 0.017), GRIPPER_CLOSED, (heading, 0.0)),
                (0.85, (*end, grip_z + 0.017), GRIPPER_CLOSED, (heading, 0.0)),
                (1.0, (*end, hover), GRIPPER_CLOSED, (heading - turn, -tilt))]
    grasp = _grasp_heading(cube)
    plan = [(0.0, None, GRIPPER_OPEN, (None, 0.0)), (0.2, (cx, cy, hover), GRIPPER_OPEN, (grasp, tilt)),
            (0.35, (cx, cy, grip_z), GRIPPER_OPEN, (grasp, 0.0)),
            (0.45, (cx, cy, grip_z), GRIPPER_CLOSED, (grasp, 0.0))]
    # Carrying, the wrist turns the cube about the vertical but never tilts: a tilted grip drops it.
    if task == "pick":
        return plan + [(0.75, (cx, cy, hover + 0.05), GRIPPER_CLOSED, (grasp + turn, 0.0)),
                       (1.0, (cx, cy, hover + 0.05), GRIPPER_CLOSED, (grasp + turn, 0.0))]
    return plan + [(0.6, (cx, cy, hover), GRIPPER_CLOSED, (grasp, 0.0)),
                   (0.78, (tx, ty, hover), GRIPPER_CLOSED, (grasp + turn, 0.0)),
                   (0.88, (tx, ty, grip_z + 0.022), GRIPPER_CLOSED, (grasp + turn, 0.0)),
                   (0.93, (tx, ty, grip_z + 0.022), GRIPPER_OPEN, (grasp + turn, 0.0)),
                   (1.0, (tx, ty, hover), GRIPPER_OPEN, (grasp + turn, tilt))]


def _interpolate(plan, start_xyz, start_heading, fraction):
    """Cosine-eased position, wrist heading and tilt along the plan; the gripper switches half-way."""
    points = [(t, np.asarray(start_xyz if p is None else p, float), g,
               np.array([start_heading if w[0] is None else w[0], w[1]], float)) for t, p, g, w in plan]
    for (t0, p0, g0, w0), (t1, p1, g1, w1) in itertools.pairwise(points):
        if fraction <= t1:
            s = 0.5 - 0.5 * np.cos(np.pi * np.clip((fraction - t0) / max(t1 - t0, 1e-9), 0, 1))
            return p0 + s * (p1 - p0), (g1 if s > 0.5 else g0), w0 + s * (w1 - w0)
    return points[-1][1], points[-1][2], points[-1][3]


def _arm_pose(q_yaw_pitch_elbow: np.ndarray, heading: float, tilt: float) -> np.ndarray:
    """Full 6-joint pose: the wrist pitch keeps the gripper pointing down, the roll (about the vertical
    forearm, so it subtracts from the shoulder's heading) turns the fingers to ``heading``, and the
    wrist yaw tilts the gripper sideways by ``tilt``."""
    yaw, pitch, elbow = q_yaw_pitch_elbow
    roll = np.arctan2(np.sin(yaw - heading), np.cos(yaw - heading))
    return np.array([yaw, pitch, elbow, -np.pi / 2 - pitch - elbow, roll, tilt])


def _solve_ik(mujoco, model, scratch, qpos_arm, joint_ids, site_id, target, wrist, iters=20, damping=0.03):
    """Damped least squares for the gripper position over (yaw, shoulder pitch, elbow); the wrist joints
    follow from ``_arm_pose`` (so dq_wrist_pitch = -dq_pitch - dq_elbow and dq_roll = dq_yaw)."""
    q = qpos_arm[:3].copy()
    dof = np.array([model.jnt_dofadr[j] for j in joint_ids])
    adr = np.array([model.jnt_qposadr[j] for j in joint_ids])
    low, high = model.jnt_range[joint_ids, 0], model.jnt_range[joint_ids, 1]
    jac_pos = np.zeros((3, model.nv))
    coupling = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, -1, -1], [1, 0, 0], [0, 0, 0]], float)
    for _ in range(iters):
        scratch.qpos[adr] = _arm_pose(q, *wrist)
        mujoco.mj_kinematics(model, scratch)
        mujoco.mj_comPos(model, scratch)
        err = target - scratch.site_xpos[site_id]
        if np.linalg.norm(err) < 1e-4:
            break
        mujoco.mj_jacSite(model, scratch, jac_pos, None, site_id)
        jac = jac_pos[:, dof] @ coupling
        q = q + jac.T @ np.linalg.solve(jac @ jac.T + damping ** 2 * np.eye(3), err)
        q = np.clip(q, low[:3], high[:3])
    return np.clip(_arm_pose(q, *wrist), low, high)


def simulate_episode(seed: int, *, frames: int = 33, height: int = 64, width: int = 64, fps: float = 16.0,
                     task: str | None = None, tasks=TASKS, random_background: bool = False, distractors: int = 0,
                     random_camera: bool = False, render_scale: int = 2, views: int = 0,
                     camera: dict | None = None) -> dict:
    """One episode as a dict: ``frames`` uint8 (F,H,W,3), ``prompt`` and the ground-truth arrays (and
    those of ``views`` extra cameras, see the module docstring). ``camera``: keyword arguments of
    ``sim_scene.default_camera`` (fovy, target, distance) that frame the main camera differently; the
    episode's draws (objects, motion) do not depend on it."""
    mujoco = _mujoco()
    rng = np.random.default_rng(seed)
    task = task or tasks[rng.integers(len(tasks))]
    if task not in TASKS:
        raise UserInputError(f"unknown task {task!r}; tasks are {TASKS}")
    ep = _draw_episode(rng, task, random_background, distractors, random_camera, camera)
    extra = view_cameras(seed, views, ep["camera"])
    model = mujoco.MjModel.from_xml_string(scene_xml(rng, objects=[ep["cube"]], background=ep["background"],
                                                     distractors=ep["distractors"], camera=ep["camera"],
                                                     views=tuple(extra)))
    data, scratch = mujoco.MjData(model), mujoco.MjData(model)
    joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in ARM_JOINTS]
    grip_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in GRIPPER_JOINTS]
    arm_adr = np.array([model.jnt_qposadr[j] for j in joint_ids])
    grip_adr = np.array([model.jnt_qposadr[j] for j in grip_ids])
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "grip")
    cube_adr = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "cube_free")]
    data.qpos[arm_adr] = HOME
    mujoco.mj_forward(model, data)
    scratch.qpos[:] = data.qpos
    start_xyz = data.site_xpos[site].copy()
    plan = _waypoints(task, ep["cube"], ep["target"], ep["wrist"])

    renderer = _renderer(mujoco, model, height * render_scale, width * render_scale)
    arm_geoms = {g for g in range(model.ngeom) if mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY,
                                                                     model.geom_bodyid[g]) in ARM_BODIES}
    substeps = max(1, int(round(1.0 / fps / model.opt.timestep)))
    # The policy re-plans at CONTROL_HZ whatever the frame rate, so low-fps episodes move as smoothly.
    control_every = max(1, min(substeps, int(round(1.0 / CONTROL_HZ / model.opt.timestep))))
    plan_steps = max(frames - 1, 1) * substeps
    cameras = ["main"] + [f"view{v}" for v in range(views)]
    rgb, depth, mask = ({c: [] for c in cameras} for _ in range(3))
    joints, actions, cube_pos, grip_pos = [], [], [], []
    q_target = HOME.copy()
    for i in range(frames):
        joints.append(np.concatenate([data.qpos[arm_adr], [data.qpos[grip_adr].sum()]]))
        cube_pos.append(data.qpos[cube_adr:cube_adr + 3].copy())
        grip_pos.append(data.site_xpos[site].copy())
        for c in cameras:
            rgb[c].append(_render(renderer, data, "rgb", render_scale, c))
            depth[c].append(_render(renderer, data, "depth", render_scale, c))
            seg = _render(renderer, data, "seg", render_scale, c)
            mask[c].append(np.isin(seg, list(arm_geoms)).astype(np.uint8))
        for step in range(0, substeps, control_every):
            fraction = min((i * substeps + step) / plan_steps, 1.0)
            target_xyz, grip, wrist = _interpolate(plan, start_xyz, HOME[0], fraction)
            q_target = _solve_ik(mujoco, model, scratch, q_target, joint_ids, site, target_xyz, wrist)
            data.ctrl[:6], data.ctrl[6:8] = q_target, grip
            if step == 0:  # the frame's action: the command issued as it was captured
                actions.append(np.concatenate([q_target, [2 * grip]]))
            mujoco.mj_step(model, data, nstep=min(control_every, substeps - step))
    renderer.close()
    camera = ep["camera"]
    out = dict(frames=np.stack(rgb["main"]), prompt=ep["prompt"], task=task, seed=seed, fps=float(fps),
                joints=np.asarray(joints, np.float32), actions=np.asarray(actions, np.float32),
                joint_names=np.array(ARM_JOINTS + ("gripper",)),
                intrinsics=camera_intrinsics(camera["fovy"], height, width),
                extrinsics=camera_extrinsics(camera["pos"], camera["xyaxes"]),
                depth=np.stack(depth["main"]).astype(np.float16), arm_mask=np.stack(mask["main"]),
                object_names=np.array(["cube"]), object_mass=np.array([ep["cube"]["mass"]], np.float32),
                object_friction=np.array([ep["cube"]["friction"]], np.float32),
                object_damping=np.array([ep["cube"]["damping"]], np.float32),
                object_positions=np.asarray(cube_pos, np.float32)[:, None, :],
                gripper_positions=np.asarray(grip_pos, np.float32),
                target_xy=np.asarray(ep["target"], np.float32))
    if views:
        out.update(view_frames=np.stack([np.stack(rgb[c]) for c in cameras[1:]]),
                   view_depth=np.stack([np.stack(depth[c]) for c in cameras[1:]]).astype(np.float16),
                   view_arm_mask=np.stack([np.stack(mask[c]) for c in cameras[1:]]),
                   view_intrinsics=np.stack([camera_intrinsics(v["fovy"], height, width) for v in extra]),
                   view_extrinsics=np.stack([camera_extrinsics(v["pos"], v["xyaxes"]) for v in extra]))
    return out


def view_cameras(seed: int, count: int, main: dict, *, yaw_deg=(10.0, 35.0), elevation_deg=(-12.0, 8.0)) -> list:
    """``count`` cameras orbiting ``main`` about the point it looks at on the table: |yaw| in ``yaw_deg``
    either way, elevation in ``elevation_deg``; drawn from the episode seed's own stream."""
    rng = np.random.default_rng([seed, 17])
    extrinsics = camera_extrinsics(main["pos"], main["xyaxes"]).astype(np.float64)
    pivot = cam_geometry.axis_hit(extrinsics, TABLE_TOP)
    out = []
    for _ in range(count):
        yaw = rng.choice([-1, 1]) * np.deg2rad(rng.uniform(*yaw_deg))
        moved = cam_geometry.orbit(extrinsics, pivot, yaw, np.deg2rad(rng.uniform(*elevation_deg)))
        out.append(mujoco_camera(moved, main["fovy"]))
    return out


def mujoco_camera(extrinsics, fovy: float) -> dict:
    """The inverse of ``camera_extrinsics``: MuJoCo's camera (pos, xyaxes, fovy) of an OpenCV world -> camera."""
    world_from_cam = se3.invert(extrinsics)
    axes = world_from_cam[:3, :3]
    return dict(pos=world_from_cam[:3, 3], xyaxes=np.concatenate([axes[:, 0], -axes[:, 1]]), fovy=fovy)


def task_success(episode: dict) -> bool:
    """Did the scripted policy do what the prompt says? push: the cube moved 5 cm; pick: it ends 5 cm up;
    place: it was lifted and ends on the table within 6 cm of the target."""
    cube = episode["object_positions"][:, 0]
    lifted = cube[:, 2].max() - cube[0, 2] > 0.045
    if episode["task"] == "push":
        return bool(np.linalg.norm(cube[-1, :2] - cube[0, :2]) > 0.05)
    if episode["task"] == "pick":
        return bool(cube[-1, 2] - cube[0, 2] > 0.05)
    on_table = abs(cube[-1, 2] - cube[0, 2]) < 0.01
    return bool(lifted and on_table and np.linalg.norm(cube[-1, :2] - episode["target_xy"]) < 0.06)


def bench_sim(seeds: int = 30, *, frames: int = 33, fps: float = 8.0, first_seed: int = 1000) -> dict:
    """Task success rates of the scripted policy over ``seeds`` episodes per task (rendered tiny: physics
    only matters here), and simulation speed."""
    start, results = time.perf_counter(), {}
    for task in TASKS:
        results[task] = sum(task_success(simulate_episode(first_seed + i, frames=frames, height=16, width=16, fps=fps,
                                                          task=task, render_scale=1)) for i in range(seeds))
    elapsed = time.perf_counter() - start
    return dict(seeds=seeds, frames=frames, fps=fps, successes=results, seconds=elapsed,
                episodes_per_s=len(TASKS) * seeds / elapsed)


def markdown_table(report: dict) -> str:
    rows = [f"| {task} | {n} / {report['seeds']} |" for task, n in report["successes"].items()]
    return "\n".join([f"Scripted-policy success, {report['frames']} frames at {report['fps']:g} fps "
                      f"({report['episodes_per_s']:.1f} episodes/s)", "", "| task | succeeded |", "|---|---|", *rows])


def _render(renderer, data, kind: str, scale: int, camera: str = "main") -> np.ndarray:
    renderer.disable_depth_rendering()
    renderer.disable_segmentation_rendering()
    if kind == "depth":
        renderer.enable_depth_rendering()
    elif kind == "seg":
        renderer.enable_segmentation_rendering()
    renderer.update_scene(data, camera=camera)
    image = renderer.render()
    if kind == "rgb":  # box-filter downsample: anti-aliased frames at the requested size
        h, w = image.shape[0] // scale, image.shape[1] // scale
        return image.reshape(h, scale, w, scale, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    if kind == "seg":
        return image[scale // 2::scale, scale // 2::scale, 0]
    return image[scale // 2::scale, scale // 2::scale]


def camera_intrinsics(fovy_deg: float, height: int, width: int) -> np.ndarray:
    focal = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2)
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], np.float32)


def camera_extrinsics(pos, xyaxes) -> np.ndarray:
    """World -> camera (OpenCV: x right, y down, z forward) from MuJoCo's camera frame (y up, looks -z)."""
    x_axis, y_axis = np.asarray(xyaxes[:3]), np.asarray(xyaxes[3:])
    z_axis = np.cross(x_axis, y_axis)
    world_from_mujoco_cam = np.stack([x_axis, y_axis, z_axis], axis=1)
    cv_from_mujoco_cam = np.diag([1.0, -1.0, -1.0])
    rotation = cv_from_mujoco_cam @ world_from_mujoco_cam.T
    extrinsics = np.eye(4)
    extrinsics[:3, :3], extrinsics[:3, 3] = rotation, -rotation @ np.asarray(pos)
    return extrinsics.astype(np.float32)


# ---- datasets in the seed's layout ---------------------------------------------------------------
def _episode_complete(out_dir, index: int) -> bool:
    return all((out_dir / f"{index}.{ext}").exists() for ext in ("mp4", "txt", "npz"))


def write_episode(out_dir, index: int, episode: dict) -> None:
    """Writes i.npz, i.txt, then i.mp4, each atomically; the episode counts as complete once all exist."""
    out_dir = as_path(out_dir)
    arrays = {k: v for k, v in episode.items() if k not in ("frames", "prompt")}
    npz = io.BytesIO()
    np.savez_compressed(npz, **arrays)
    write_bytes(out_dir / f"{index}.npz", npz.getvalue())
    write_text(out_dir / f"{index}.txt", episode["prompt"] + "\n")
    write_video(out_dir / f"{index}.mp4", episode["frames"], fps=episode["fps"])


def _simulate_one(job):
    out_dir, index, seed, kwargs = job
    write_episode(out_dir, index, simulate_episode(seed, **kwargs))
    return index


def simulate_dataset(out_dir: str | Path, episodes: int, *, seed: int = 0, workers: int = 1, progress: bool = True,
                     **kwargs):
    """Simulates episodes 0..N-1 (episode i uses seed ``seed * 100003 + i``) into a folder or ``gs://`` URI;
    skips complete ones."""
    out_dir = as_path(out_dir, flag="--out")
    height, width = kwargs.get("height", 64), kwargs.get("width", 64)
    if height % 16 or width % 16 or height <= 0 or width <= 0:
        raise UserInputError(f"--size {height}x{width}: both sides must be positive multiples of 16")
    if kwargs.get("frames", 33) < 1:
        raise UserInputError("--frames must be at least 1")
    make_output_dir(out_dir, flag="--out")
    todo = [(str(out_dir), i, seed * 100003 + i, kwargs) for i in range(episodes) if not _episode_complete(out_dir, i)]
    with tqdm(total=episodes, initial=episodes - len(todo), desc="sim", disable=not progress) as bar:
        for _ in imap_unordered(_simulate_one, todo, workers=workers):
            bar.update()
    manifest = dict(schema_version=SCHEMA_VERSION, episodes=episodes, seed=seed,
                    args={k: v for k, v in kwargs.items()}, layout="i.mp4, i.txt, i.npz")
    write_text(out_dir / "manifest.json", json.dumps(manifest, indent=1, default=str))
    return native(out_dir)


def load_episode(directory, index: int) -> dict:
    """Frames (uint8 F,H,W,3), prompt and every ground-truth array of episode ``index``."""
    directory = as_path(directory)
    frames, fps = read_video(directory / f"{index}.mp4")
    prompt_path = directory / f"{index}.txt"
    if not prompt_path.is_file():
        raise UserInputError(f"{prompt_path}: missing prompt file")
    episode = dict(frames=frames, prompt=prompt_path.read_text().strip(), fps=fps)  # the npz's fps wins
    npz = directory / f"{index}.npz"
    if npz.is_file():
        with np.load(io.BytesIO(npz.read_bytes())) as data:
            episode.update({k: data[k] for k in data.files})
    return episode
