"""Inner Cartesian controller: twist commands -> joint position targets for the arm's servos.

Once per control step (never per physics substep) it moves an end-effector reference by the
commanded twist, clips it into the workspace box, keeps it on a short leash to the real ee, and
solves one damped-least-squares differential-IK step from the current joints to it. MuJoCo's
position actuators then servo to those joint targets at the physics rate. A null-space term
pulls the redundant joint towards the home posture.
"""
from __future__ import annotations

import mujoco
import numpy as np


def quat_error(q_target, q_current) -> np.ndarray:
    """Rotation vector (world frame) that takes orientation q_current to q_target."""
    qc_inv = np.empty(4)
    mujoco.mju_negQuat(qc_inv, q_current)
    q_err = np.empty(4)
    mujoco.mju_mulQuat(q_err, q_target, qc_inv)
    if q_err[0] < 0:
        q_err = -q_err
    vel = np.empty(3)
    mujoco.mju_quat2Vel(vel, q_err, 1.0)
    return vel


class CartesianController:
    def __init__(self, model, data, arm_qpos_idx, arm_dof_idx, arm_ctrl_idx, ee_site_id,
                 home_qpos, workspace_min, workspace_max, damping=0.05, leash=0.03,
                 null_gain=0.5, max_dq=0.5):
        self.m, self.d = model, data
        self.qpos_idx = np.asarray(arm_qpos_idx)
        self.dof_idx = np.asarray(arm_dof_idx)
        self.ctrl_idx = np.asarray(arm_ctrl_idx)
        self.site = ee_site_id
        self.home = np.asarray(home_qpos, np.float64)
        self.lo = np.asarray(workspace_min, np.float64)
        self.hi = np.asarray(workspace_max, np.float64)
        self.lam2 = damping ** 2
        self.leash = leash
        self.null_gain = null_gain
        self.max_dq = max_dq
        jnt = model.dof_jntid[self.dof_idx]
        self.q_lo = model.jnt_range[jnt, 0].copy()
        self.q_hi = model.jnt_range[jnt, 1].copy()
        limited = model.jnt_limited[jnt].astype(bool)
        self.q_lo[~limited], self.q_hi[~limited] = -np.inf, np.inf
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._quat = np.empty(4)
        self.ref_pos = np.zeros(3)
        self.ref_quat = np.array([1.0, 0.0, 0.0, 0.0])

    # -- state of the ee (data must have had mj_kinematics + mj_comPos) --
    def ee_pos(self) -> np.ndarray:
        return self.d.site_xpos[self.site].copy()

    def ee_quat(self) -> np.ndarray:
        mujoco.mju_mat2Quat(self._quat, self.d.site_xmat[self.site])
        return self._quat.copy()

    def reset(self, ref_quat) -> None:
        self.ref_pos = self.ee_pos()
        self.ref_quat = np.asarray(ref_quat, np.float64) / np.linalg.norm(ref_quat)

    def command(self, twist, dt: float) -> np.ndarray:
        """Advance the reference by twist*dt and write the arm's joint targets to data.ctrl."""
        ee = self.ee_pos()
        ref = np.clip(self.ref_pos + twist[:3] * dt, self.lo, self.hi)
        off = ref - ee
        dist = np.linalg.norm(off)
        if dist > self.leash:  # blocked (contact) or far behind: do not wind up
            ref = ee + off * (self.leash / dist)
        self.ref_pos = ref
        if np.any(twist[3:]):
            dq = np.empty(4)
            mujoco.mju_axisAngle2Quat(dq, twist[3:] / (np.linalg.norm(twist[3:])), np.linalg.norm(twist[3:]) * dt)
            out = np.empty(4)
            mujoco.mju_mulQuat(out, dq, self.ref_quat)
            self.ref_quat = out / np.linalg.norm(out)
        q_target = self._ik_step(self.ref_pos, self.ref_quat, ee)
        self.d.ctrl[self.ctrl_idx] = q_target
        return q_target

    def _ik_step(self, pos, quat, ee=None) -> np.ndarray:
        q = self.d.qpos[self.qpos_idx]
        ee = self.ee_pos() if ee is None else ee
        err = np.concatenate([pos - ee, quat_error(quat, self.ee_quat())])
        mujoco.mj_jacSite(self.m, self.d, self._jacp, self._jacr, self.site)
        J = np.vstack([self._jacp[:, self.dof_idx], self._jacr[:, self.dof_idx]])
        JJt = J @ J.T
        # Task: damped least squares (robust near singularities). Posture: projected with the
        # undamped null space, since the damped one leaks into the ee pose (steady offset).
        dq = J.T @ np.linalg.solve(JJt + self.lam2 * np.eye(6), err)
        dq0 = self.null_gain * (self.home - q)
        dq += dq0 - J.T @ np.linalg.solve(JJt + 1e-6 * np.eye(6), J @ dq0)
        dq = np.clip(dq, -self.max_dq, self.max_dq)
        return np.clip(q + dq, self.q_lo, self.q_hi)

    def solve(self, pos, quat, iters: int = 100, tol: float = 1e-4) -> np.ndarray:
        """Kinematic IK (moves data.qpos of the arm) to put the ee at pos/quat; used at reset."""
        for _ in range(iters):
            mujoco.mj_kinematics(self.m, self.d)
            mujoco.mj_comPos(self.m, self.d)
            err = np.linalg.norm(pos - self.ee_pos()) + np.linalg.norm(quat_error(quat, self.ee_quat()))
            if err < tol:
                break
            self.d.qpos[self.qpos_idx] = self._ik_step(pos, quat)
        mujoco.mj_kinematics(self.m, self.d)
        mujoco.mj_comPos(self.m, self.d)
        return self.d.qpos[self.qpos_idx].copy()
