"""Assemble the twin's MuJoCo model: cell (sim/cell.xml) + arm + calibrated cameras + task objects."""
from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from robot_rl.calibration.cell import (
    CameraCalibration,
    CellCalibration,
    mat_to_quat,
    optical_to_mujoco_quat,
    quat_to_mat,
)
from robot_rl.twin.assets import asset_path
from robot_rl.twin.config import TwinConfig

# MuJoCo takes intrinsics in length units; any pixel pitch works, the renderer uses ratios.
_PIXEL_PITCH = 1e-5
CELL_PREFIX = "cell/"  # names from sim/cell.xml: cell/table, cell/floor, cell/top


def build_model(cfg: TwinConfig, cell: CellCalibration, task) -> mujoco.MjModel:
    spec = _robot_spec(cfg)
    _add_cell(spec, cfg)
    for cam in cell.cameras.values():
        _add_camera(spec, cam)
    task.build(spec)
    model = spec.compile()
    missing = _arm_joints_without_actuator(model, cfg)
    if missing and not cfg.robot.arm_actuators:
        for j in missing:  # e.g. a URDF: drive those joints with position servos
            kp = cfg.robot.arm_kp
            spec.add_actuator(
                name=f"{j}_servo", target=j, trntype=mujoco.mjtTrn.mjTRN_JOINT,
                gainprm=[kp] + [0] * 9, biastype=mujoco.mjtBias.mjBIAS_AFFINE,
                biasprm=[0, -kp, -0.1 * kp] + [0] * 7,
            )
        model = spec.compile()
    return model


def _robot_spec(cfg: TwinConfig) -> mujoco.MjSpec:
    """The arm's own spec is the base (so its names stay as they are), placed at the base pose."""
    path = Path(cfg.robot.model) if cfg.robot.model else asset_path("sim", "panda.xml")
    if not path.is_file():
        raise FileNotFoundError(f"twin.robot.model: no MJCF/URDF at {path}")
    spec = mujoco.MjSpec.from_file(str(path))
    base = np.eye(4)
    base[:3, :3] = quat_to_mat(cfg.robot.base_quat)
    base[:3, 3] = cfg.robot.base_pos
    for body in spec.worldbody.bodies:  # top-level bodies only
        local = np.eye(4)
        local[:3, :3] = quat_to_mat(body.quat)
        local[:3, 3] = body.pos
        pose = base @ local
        body.pos, body.quat = pose[:3, 3], mat_to_quat(pose[:3, :3])
    # The real arm's controller compensates gravity; so does the twin's (no servo sag).
    for body in spec.bodies:
        if body.name != "world":
            body.gravcomp = 1.0
    return spec


def _add_cell(spec: mujoco.MjSpec, cfg: TwinConfig) -> None:
    """sim/cell.xml (table, floor, lights) with its physics and render settings."""
    cell = mujoco.MjSpec.from_file(str(asset_path("sim", "cell.xml")))
    for name in ("integrator", "cone", "impratio"):
        setattr(spec.option, name, getattr(cell.option, name))
    spec.option.timestep = cfg.timestep
    for name in ("ambient", "diffuse", "specular"):
        setattr(spec.visual.headlight, name, getattr(cell.visual.headlight, name))
    height, width = cfg.image_size
    spec.visual.global_.offwidth = max(int(width), 640)
    spec.visual.global_.offheight = max(int(height), 480)
    spec.visual.quality.shadowsize = 4096 if cfg.render_shadows else 0
    spec.visual.quality.offsamples = int(cfg.render_multisample)
    spec.attach(cell, frame=spec.worldbody.add_frame(), prefix=CELL_PREFIX)
    for light in spec.lights:
        light.castshadow = bool(cfg.render_shadows)


def _add_camera(spec: mujoco.MjSpec, cam: CameraCalibration) -> None:
    pose = cam.extrinsic
    if cam.parent in ("base", "world"):
        body = spec.worldbody
    else:
        body = spec.body(cam.parent)
        if body is None:
            site = spec.site(cam.parent)
            if site is None:
                raise ValueError(
                    f"camera {cam.name!r}: parent {cam.parent!r} is neither 'base' nor a body/site of the model"
                )
            body = site.parent
            site_pose = np.eye(4)
            site_pose[:3, :3] = quat_to_mat(site.quat)
            site_pose[:3, 3] = site.pos
            pose = site_pose @ pose
    c = body.add_camera()
    c.name = cam.name
    c.pos = pose[:3, 3]
    c.quat = optical_to_mujoco_quat(mat_to_quat(pose[:3, :3]))
    c.fovy = cam.fovy_deg  # what viewers show; the intrinsics below are what renders
    p = _PIXEL_PITCH
    c.resolution = [cam.width, cam.height]
    c.sensor_size = [cam.width * p, cam.height * p]
    c.focal_length = [cam.fx * p, cam.fy * p]
    # MuJoCo's principal offset is (sensor centre - principal point) on both axes (measured by
    # tests/test_twin_cameras.py); OpenCV pixel centres sit at integers, hence the +0.5.
    c.principal_length = [(cam.width / 2 - cam.cx - 0.5) * p, (cam.height / 2 - cam.cy - 0.5) * p]


def _arm_joints_without_actuator(model: mujoco.MjModel, cfg: TwinConfig) -> list:
    driven = {
        int(model.actuator_trnid[i, 0])
        for i in range(model.nu)
        if model.actuator_trntype[i] == mujoco.mjtTrn.mjTRN_JOINT
    }
    out = []
    for name in cfg.robot.arm_joints:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            raise ValueError(f"twin.robot.arm_joints: the model has no joint {name!r}")
        if jid not in driven:
            out.append(name)
    return out
