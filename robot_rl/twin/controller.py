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
                 home_qpos, workspace_min, workspace_max, damping=0.05, leash=0.04,
                 null_gain=0.5, max_dq=0.5):
        self.m, self.d = model, data
        self.qpos_idx = _as_slice(arm_qpos_idx)
        self.dof_idx = _as_slice(arm_dof_idx)
        self.ctrl_idx = _as_slice(arm_ctrl_idx)
        self.site = ee_site_id
        self.home = np.asarray(home_qpos, np.float64)
        self.lo = np.asarray(workspace_min, np.float64)
        self.hi = np.asarray(workspace_max, np.float64)
        self.lam2 = damping ** 2
        self.leash = leash
        self.null_gain = null_gain
        self.max_dq = max_dq
        n = len(self.home)
        jnt = model.dof_jntid[np.arange(model.nv)[self.dof_idx]]
        limited = model.jnt_limited[jnt].astype(bool)
        self.q_lo = np.where(limited, model.jnt_range[jnt, 0], -np.inf)
        self.q_hi = np.where(limited, model.jnt_range[jnt, 1], np.inf)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._J = np.zeros((6, n))
        self._A = np.zeros((6, 6))
        self._x = np.zeros(6)
        self._err = np.zeros(6)
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
        ee = self.d.site_xpos[self.site]
        ref = self.ref_pos + twist[:3] * dt
        off = ref - ee
        dist = np.sqrt(off @ off)
        if dist > self.leash:  # blocked (contact) or far behind: do not wind up
            ref = ee + off * (self.leash / dist)
        # the box last, so the target never leaves it (np.minimum/maximum: np.clip costs ~5 us
        # a call on arrays this small, and this runs every step)
        self.ref_pos = np.minimum(np.maximum(ref, self.lo), self.hi)
        w = twist[3:]
        speed = np.sqrt(w @ w)
        if speed > 0.0:
            dq = np.empty(4)
            mujoco.mju_axisAngle2Quat(dq, w / speed, speed * dt)
            out = np.empty(4)
            mujoco.mju_mulQuat(out, dq, self.ref_quat)
            self.ref_quat = out / np.linalg.norm(out)
        q_target = self._ik_step(self.ref_pos, self.ref_quat)
        self.d.ctrl[self.ctrl_idx] = q_target
        return q_target

    def _ik_step(self, pos, quat) -> np.ndarray:
        m, d = self.m, self.d
        q = d.qpos[self.qpos_idx]
        mujoco.mju_mat2Quat(self._quat, d.site_xmat[self.site])
        mujoco.mj_jacSite(m, d, self._jacp, self._jacr, self.site)
        J = self._J
        J[:3] = self._jacp[:, self.dof_idx]
        J[3:] = self._jacr[:, self.dof_idx]
        JJt = J @ J.T
        err = self._err
        err[:3] = pos - d.site_xpos[self.site]
        err[3:] = quat_error(quat, self._quat)
        dq0 = self.null_gain * (self.home - q)
        # Task: damped least squares (robust near singularities). Posture: projected with the
        # (nearly) undamped null space, since the damped one leaks into the ee pose as a steady
        # offset. 6x6 Cholesky solves in MuJoCo's C (numpy's solve costs ~15 us a call here).
        A, x = self._A, self._x
        A[:] = JJt
        A.flat[::7] += self.lam2
        mujoco.mju_cholFactor(A, 0.0)
        mujoco.mju_cholSolve(x, A, err)
        task = x.copy()
        A[:] = JJt
        A.flat[::7] += 1e-6
        mujoco.mju_cholFactor(A, 0.0)
        mujoco.mju_cholSolve(x, A, J @ dq0)
        dq = J.T @ (task - x) + dq0
        dq = np.minimum(np.maximum(dq, -self.max_dq), self.max_dq)
        return np.minimum(np.maximum(q + dq, self.q_lo), self.q_hi)

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


def _as_slice(idx):
    """Contiguous indices as a slice (views, cheaper indexing), else an index array."""
    idx = np.asarray(idx, dtype=int).ravel()
    if len(idx) and np.all(np.diff(idx) == 1):
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx
