"""The MuJoCo scene of ``gw-jax sim``: a 6-joint arm with a parallel gripper, a table and objects.

Everything random about an episode (object pose, colour, mass, friction, damping, background) is drawn
from one numpy Generator, so a seed fixes the episode.
"""

from __future__ import annotations

import numpy as np

ARM_JOINTS = ("shoulder_yaw", "shoulder_pitch", "elbow", "wrist_pitch", "wrist_roll", "wrist_yaw")
GRIPPER_JOINTS = ("finger_left", "finger_right")
COLOURS = {"red": (0.85, 0.15, 0.12), "green": (0.15, 0.7, 0.2), "blue": (0.15, 0.3, 0.85),
           "yellow": (0.9, 0.8, 0.1)}
TABLE_TOP = 0.40  # metres
ARM_BASE_Y = -0.35  # the arm stands at (0, ARM_BASE_Y) on the table


def _arm_xml() -> str:
    link = 'rgba="0.75 0.75 0.78 1" group="1"'
    return f"""
    <body name="arm_base" pos="0 {ARM_BASE_Y} {TABLE_TOP}">
      <geom type="cylinder" size="0.06 0.03" pos="0 0 0.03" {link}/>
      <body name="link1" gravcomp="1" pos="0 0 0.06">
        <joint name="shoulder_yaw" type="hinge" axis="0 0 1" range="-2.6 2.6" damping="2"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.12" size="0.045" {link}/>
        <body name="link2" gravcomp="1" pos="0 0 0.12">
          <joint name="shoulder_pitch" type="hinge" axis="1 0 0" range="-1.8 1.8" damping="2"/>
          <geom type="capsule" fromto="0 0 0 0 0.26 0" size="0.038" {link}/>
          <body name="link3" gravcomp="1" pos="0 0.26 0">
            <joint name="elbow" type="hinge" axis="1 0 0" range="-2.6 2.6" damping="1.5"/>
            <geom type="capsule" fromto="0 0 0 0 0.22 0" size="0.032" {link}/>
            <body name="link4" gravcomp="1" pos="0 0.22 0">
              <joint name="wrist_pitch" type="hinge" axis="1 0 0" range="-2.2 2.2" damping="1"/>
              <geom type="capsule" fromto="0 0 0 0 0.06 0" size="0.028" {link}/>
              <body name="link5" gravcomp="1" pos="0 0.06 0">
                <joint name="wrist_roll" type="hinge" axis="0 1 0" range="-3 3" damping="0.5"/>
                <geom type="sphere" size="0.027" {link}/>
                <body name="link6" gravcomp="1" pos="0 0.03 0" euler="1.5708 0 0">
                  <!-- axis y here is link5's z: perpendicular to the roll axis, so the wrist is spherical
                       and roll and yaw are both observable (a yaw along z would be coaxial with roll) -->
                  <joint name="wrist_yaw" type="hinge" axis="0 1 0" range="-1.2 1.2" damping="0.5"/>
                  <geom type="box" size="0.06 0.02 0.015" {link}/>
                  <site name="grip" pos="0 0 -0.09" size="0.01"/>
                  <body name="finger_l" gravcomp="1" pos="0.02 0 -0.04">
                    <joint name="finger_left" type="slide" axis="1 0 0" range="0 0.035" damping="2" solreflimit="0.004 1"/>
                    <geom type="box" size="0.008 0.015 0.045" friction="2 0.05 0.01" rgba="0.3 0.3 0.32 1"/>
                  </body>
                  <body name="finger_r" gravcomp="1" pos="-0.02 0 -0.04">
                    <joint name="finger_right" type="slide" axis="-1 0 0" range="0 0.035" damping="2" solreflimit="0.004 1"/>
                    <geom type="box" size="0.008 0.015 0.045" friction="2 0.05 0.01" rgba="0.3 0.3 0.32 1"/>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def _camera_xml(name: str, camera: dict) -> str:
    pos = " ".join(f"{v:.5f}" for v in camera["pos"])
    axes = " ".join(f"{v:.6f}" for v in camera["xyaxes"])
    return f'<camera name="{name}" pos="{pos}" xyaxes="{axes}" fovy="{camera["fovy"]}"/>'


def scene_xml(rng: np.random.Generator, *, objects: list[dict], background: tuple | None,
              distractors: list[dict], camera: dict, views: tuple[dict, ...] = ()) -> str:
    """The episode's MJCF: camera "main" and the extra cameras "view0", "view1", ... (``views``)."""
    floor = background or (0.55, 0.55, 0.58)
    table = (0.62, 0.48, 0.33) if background is None else tuple(rng.uniform(0.2, 0.9, 3))
    object_xml = "".join(
        f"""<body name="{o['name']}" pos="{o['pos'][0]:.4f} {o['pos'][1]:.4f} {TABLE_TOP + o['size']:.4f}"
              euler="0 0 {o.get('yaw', 0.0):.4f}">
          <joint name="{o['name']}_free" type="free" damping="{o['damping']:.4f}"/>
          <geom name="{o['name']}_geom" type="box" size="{o['size']} {o['size']} {o['size']}" mass="{o['mass']:.4f}"
                friction="{o['friction']:.4f} 0.01 0.001" rgba="{o['rgba'][0]} {o['rgba'][1]} {o['rgba'][2]} 1"/>
        </body>""" for o in objects)
    distractor_xml = "".join(
        f"""<geom name="distractor{i}" type="{d['type']}" size="{d['size']:.3f} {d['size']:.3f} {d['size']:.3f}"
              pos="{d['pos'][0]:.3f} {d['pos'][1]:.3f} {TABLE_TOP + d['size']:.3f}" contype="0" conaffinity="0"
              rgba="{d['rgba'][0]:.3f} {d['rgba'][1]:.3f} {d['rgba'][2]:.3f} 1"/>""" for i, d in enumerate(distractors))
    actuators = "".join(f'<position joint="{j}" kp="{kp}" dampratio="1" ctrlrange="-3 3"/>'
                        for j, kp in zip(ARM_JOINTS, (400, 500, 400, 200, 80, 80), strict=True))
    actuators += "".join(f'<position joint="{j}" kp="300" ctrlrange="-0.02 0.035"/>' for j in GRIPPER_JOINTS)
    return f"""<mujoco model="gw_sim">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual><global offwidth="640" offheight="640"/><quality shadowsize="1024"/></visual>
  <worldbody>
    <light pos="0.3 -0.4 2.2" dir="-0.1 0.2 -1" diffuse="0.8 0.8 0.8" castshadow="true"/>
    <light pos="-0.6 0.6 1.8" dir="0.3 -0.3 -1" diffuse="0.35 0.35 0.35" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" rgba="{floor[0]:.3f} {floor[1]:.3f} {floor[2]:.3f} 1"/>
    <geom name="table" type="box" pos="0 0 {TABLE_TOP / 2}" size="0.5 0.45 {TABLE_TOP / 2}"
          rgba="{table[0]:.3f} {table[1]:.3f} {table[2]:.3f} 1"/>
    <camera name="main" pos="{camera['pos'][0]:.3f} {camera['pos'][1]:.3f} {camera['pos'][2]:.3f}"
            xyaxes="{' '.join(f'{v:.4f}' for v in camera['xyaxes'])}" fovy="{camera['fovy']}"/>
    {''.join(_camera_xml(f"view{i}", v) for i, v in enumerate(views))}
    {_arm_xml()}
    {object_xml}
    {distractor_xml}
  </worldbody>
  <actuator>{actuators}</actuator>
</mujoco>"""


DEFAULT_TARGET = (0.0, -0.05, TABLE_TOP)  # where the main camera looks (metres)


def default_camera(rng: np.random.Generator | None = None, *, fovy: float = 50.0, target=DEFAULT_TARGET,
                   distance: float = 1.0) -> dict:
    """Front-right view of the table; jittered when ``rng`` is given (--random-camera). ``fovy`` (degrees),
    ``target`` (the point looked at) and ``distance`` (a factor on the distance to it, along the same line of
    sight) frame it differently: `gw-jax demo --camera workspace` frames the cube's workspace (train.defaults.DEMO_CAMERAS)."""
    target = np.asarray(target, np.float64)
    pos = target + distance * (np.array([0.42, 0.55, 0.85]) - np.asarray(DEFAULT_TARGET))
    if rng is not None:
        pos = pos + rng.uniform(-0.12, 0.12, 3)
    forward = target - pos
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return dict(pos=pos, xyaxes=np.concatenate([right, up]), fovy=float(fovy))
