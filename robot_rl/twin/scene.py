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
    if _complete_robot(spec, model, cfg):  # e.g. a URDF: servos and an ee site added
        model = spec.compile()
    return model


def servo_name(joint: str) -> str:
    """Name of the position servo the twin adds to a joint that has no actuator."""
    return f"{joint}_servo"


def _complete_robot(spec: mujoco.MjSpec, model: mujoco.MjModel, cfg: TwinConfig) -> bool:
    """Add what a bare model (a URDF) lacks: position servos on the arm joints (unless
    arm_actuators names them) and on the gripper joints (unless gripper_actuator exists), and
    a site for the ee when ee_site names a body. Returns whether anything was added."""
    r, added = cfg.robot, False
    servos = [] if r.arm_actuators else [(j, r.arm_kp) for j in _arm_joints_without_actuator(model, cfg)]
    if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, r.gripper_actuator) < 0:
        for j in r.gripper_joints:
            if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) < 0:
                raise ValueError(f"twin.robot.gripper_joints: the model has no joint {j!r}")
        servos += [(j, r.gripper_kp) for j in r.gripper_joints]
        for j in r.gripper_joints:
            # a URDF carries no motor inertia; without it light fingers make soft contacts
            # (MuJoCo scales contact stiffness with the effective mass) and sink into objects
            joint = spec.joint(j)
            joint.armature = max(joint.armature, 0.05)
        for j in r.gripper_joints[1:]:  # the fingers move as one (a URDF's mimic joints)
            spec.add_equality(type=mujoco.mjtEq.mjEQ_JOINT, name1=j, name2=r.gripper_joints[0],
                              objtype=mujoco.mjtObj.mjOBJ_JOINT)
    for joint, kp in servos:
        spec.add_actuator(
            name=servo_name(joint), target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT,
            gainprm=[kp] + [0] * 9, biastype=mujoco.mjtBias.mjBIAS_AFFINE,
            biasprm=[0, -kp, -0.1 * kp] + [0] * 7,  # kv without a force cap: implicit, stable
        )
        added = True
    if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, r.ee_site) < 0:
        body = spec.body(r.ee_site)
        if body is None:
            raise ValueError(f"twin.robot.ee_site: the model has no site or body {r.ee_site!r}")
        body.add_site(name=r.ee_site)
        added = True
    return added


def _robot_spec(cfg: TwinConfig) -> mujoco.MjSpec:
    """The arm's own spec is the base (so its names stay as they are), placed at the base pose."""
    path = Path(cfg.robot.model) if cfg.robot.model else asset_path("sim", "panda.xml")
    if not path.is_file():
        raise FileNotFoundError(f"twin.robot.model: no MJCF/URDF at {path}")
    spec = mujoco.MjSpec.from_file(str(path))
    spec.compiler.fusestatic = False  # URDF import would merge fixed links (a tool frame)
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
    for name in ("integrator", "cone", "impratio", "disableflags", "enableflags"):
        setattr(spec.option, name, getattr(cell.option, name))
    spec.option.timestep = cfg.timestep
    for name in ("ambient", "diffuse", "specular"):
        setattr(spec.visual.headlight, name, getattr(cell.visual.headlight, name))
    height, width = cfg.image_size
    spec.visual.global_.offwidth = max(int(width), 640)
    spec.visual.global_.offheight = max(int(height), 480)
    spec.visual.quality.shadowsize = 4096 if cfg.render_shadows else 0
    spec.visual.quality.offsamples = int(cfg.render_multisample)
    _copy_options(spec.option, cell.option)  # identical options: attach reports no conflict
    spec.attach(cell, frame=spec.worldbody.add_frame(), prefix=CELL_PREFIX)
    for light in spec.lights:
        light.castshadow = bool(cfg.render_shadows)


def _copy_options(src, dst) -> None:
    for name in dir(src):
        if name.startswith("_"):
            continue
        value = getattr(src, name)
        if callable(value):
            continue
        try:
            setattr(dst, name, value)
        except (AttributeError, TypeError):  # read-only members
            pass


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
