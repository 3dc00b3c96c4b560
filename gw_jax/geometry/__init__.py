"""Camera geometry for ViewTransfer and the data-engine gates (numpy, float64 by default).

    from gw_jax.geometry import se3, camera, warp
    pose_44 = se3.invert(extrinsics_44)                       # camera -> world from world -> camera
    points_hw3 = camera.unproject(depth_hw, intrinsics_33, extrinsics_44)       # world points per pixel
    uv_n2, z_n = camera.project(points_n3, intrinsics_33, extrinsics_44)       # pixels + depth
    out = warp.forward_warp(image_hwc, depth_hw, K_a, E_a, K_b, E_b)          # z-buffered A -> B
    pair = warp.double_projection(image_hwc, depth_hw, K, E, E_virtual)       # A -> B -> A training input
    K_t = se3.retarget_ee_poses(ee_in_base_t44, base_in_world_a, base_in_world_b)

Conventions are the simulator's (``gw_jax/data/sim.py``): intrinsics ``[[f, 0, W/2], [0, f, H/2], [0, 0, 1]]``
with pixel centres at integer + 0.5, extrinsics world -> camera in OpenCV axes (x right, y down, z forward),
depth is the z-depth along the optical axis in metres.
"""

from gw_jax.geometry import camera, se3, warp

__all__ = ["camera", "se3", "warp"]
