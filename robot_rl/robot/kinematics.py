"""Forward kinematics of the cell's arm with MuJoCo's own kinematics (mj_kinematics on a private
MjData): joint positions -> TCP pose in the robot base frame, finger positions -> gripper width.

The model is the twin's (sim/panda.xml by default) or any MJCF/URDF MuJoCo loads, so the pose a
state adapter computes on the robot is, by construction, the pose the twin reports for the same
joints. No stepping, no dynamics: a call costs a few microseconds.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # headless before mujoco is first imported

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from robot_rl.spec import canonical_quat  # noqa: E402

DEFAULT_ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
DEFAULT_FINGER_JOINTS = ("finger_joint1", "finger_joint2")


def model_path(model: str | os.PathLike | None) -> Path:
    """The robot model file: `model` as given, or the bundled sim/panda.xml (source checkout or
    installed share/robot_rl/sim)."""
    if model:
        p = Path(model)
        if not p.is_file():
            raise FileNotFoundError(f"robot model {p} does not exist (an MJCF or URDF path)")
        return p
    from robot_rl.paths import share_file

    return share_file("sim", "panda.xml")


class Kinematics:
    """FK of one arm. Poses are in the base frame: the model's world frame moved by
    (base_pos, base_quat), the pose of the model's root in the base frame (as the twin's
    RobotConfig spells it)."""

    def __init__(self, model: str | os.PathLike | None = None, ee_site: str = "ee",
                 arm_joints=DEFAULT_ARM_JOINTS, finger_joints=DEFAULT_FINGER_JOINTS,
                 base_pos=(0.0, 0.0, 0.0), base_quat=(1.0, 0.0, 0.0, 0.0),
                 gripper_width_scale: float = 1.0):
        path = model_path(model)
        spec = mujoco.MjSpec.from_file(str(path))
        spec.compiler.fusestatic = False  # a URDF's fixed tool links must survive the import
        if spec.site(ee_site) is None:
            # A URDF has no sites: a link of that name gives its origin (as the twin does).
            body = spec.body(ee_site)
            if body is None:
                raise ValueError(f"robot model {path}: no site or body {ee_site!r} for the TCP")
            body.add_site(name=ee_site)
        try:
            self.model = spec.compile()
        except Exception as e:  # noqa: BLE001  MuJoCo's own message says what is wrong
            raise ValueError(f"robot model {path} does not compile: {e}") from None
        self.data = mujoco.MjData(self.model)  # private: nothing else moves it
        m = self.model
        self.path = path
        self.arm_joints = tuple(arm_joints)
        self.finger_joints = tuple(finger_joints)
        self.arm_qpos = self._qposadr(self.arm_joints, "arm_joints")
        self.finger_qpos = self._qposadr(self.finger_joints, "finger_joints")
        ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) for n in self.arm_joints]
        limited = m.jnt_limited[ids].astype(bool)
        self.lower = np.where(limited, m.jnt_range[ids, 0], -np.pi)
        self.upper = np.where(limited, m.jnt_range[ids, 1], np.pi)
        self.site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, ee_site)
        self.base_pos = np.asarray(base_pos, np.float64).reshape(3)
        bq = np.asarray(base_quat, np.float64).reshape(4)
        self.base_quat = bq / np.linalg.norm(bq)
        self.gripper_width_scale = float(gripper_width_scale)
        self._quat = np.zeros(4)

    def _qposadr(self, names, what: str) -> np.ndarray:
        m = self.model
        out = []
        for n in names:
            jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n)
            if jid < 0:
                have = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, i) for i in range(m.njnt)]
                raise ValueError(f"{what}: the robot model {self.path} has no joint {n!r}; it has {have}")
            if int(m.jnt_type[jid]) not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
                raise ValueError(f"{what}: joint {n!r} is not a hinge or slide joint")
            out.append(m.jnt_qposadr[jid])
        return np.asarray(out, np.int64)

    def fk(self, arm_positions, finger_positions=None) -> tuple[np.ndarray, np.ndarray]:
        """Arm joint positions (in arm_joints order; fingers optional, they do not move the TCP
        site) -> (TCP position (3), quaternion wxyz (4), w >= 0) in the base frame."""
        q = np.asarray(arm_positions, np.float64).reshape(-1)
        if q.shape[0] != len(self.arm_joints):
            raise ValueError(f"fk takes {len(self.arm_joints)} arm joint positions, got {q.shape[0]}")
        if not np.all(np.isfinite(q)):
            raise ValueError("fk: joint positions are not finite")
        d = self.data
        d.qpos[self.arm_qpos] = q
        if finger_positions is not None:
            d.qpos[self.finger_qpos] = np.asarray(finger_positions, np.float64).reshape(-1)
        mujoco.mj_kinematics(self.model, d)
        mujoco.mju_mat2Quat(self._quat, d.site_xmat[self.site])
        pos, quat = d.site_xpos[self.site].copy(), self._quat.copy()
        if np.any(self.base_pos) or self.base_quat[0] != 1.0:
            rotated = np.zeros(3)
            mujoco.mju_rotVecQuat(rotated, pos, self.base_quat)
            pos = rotated + self.base_pos
            out = np.zeros(4)
            mujoco.mju_mulQuat(out, self.base_quat, quat)
            quat = out
        return pos, canonical_quat(quat)

    def gripper_width(self, finger_positions) -> float:
        """Opening in metres: gripper_width_scale * the sum of the finger joint positions (a
        Franka hand's two fingers each travel half the opening), as the twin computes it."""
        f = np.asarray(finger_positions, np.float64).reshape(-1)
        if f.shape[0] != len(self.finger_joints):
            raise ValueError(f"gripper_width takes {len(self.finger_joints)} finger positions, got {f.shape[0]}")
        return float(self.gripper_width_scale * f.sum())

    def random_configuration(self, rng: np.random.Generator) -> np.ndarray:
        """Uniform within the arm's joint limits (tests, benchmarks)."""
        return rng.uniform(self.lower, self.upper)
