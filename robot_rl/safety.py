"""The one safety filter every command passes before it leaves the stack.

Order of checks, each tick:
  1. e-stop, stale observation, non-finite ee position -> hold (zero twist, gripper unchanged)
  2. non-finite command -> hold
  3. clip linear/angular speed to the bounds
  4. rate limit (acceleration) from the previous command; a hold is always allowed at once
  5. workspace box: no velocity component that would carry the end effector past a face of
     the box within one control period (outside the box, only motion back in is allowed)
The filter is plain NumPy; the actor node calls it, tests call it directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.configs import from_mapping


@dataclass
class SafetyConfig:
    max_lin_vel: float = 0.35  # m/s, hard bound on the norm (>= the action scale on 3 axes)
    max_ang_vel: float = 1.0  # rad/s
    max_lin_accel: float = 8.0  # m/s^2, change of commanded linear velocity per second
    max_ang_accel: float = 20.0  # rad/s^2
    workspace_min: tuple = (0.25, -0.35, 0.01)  # metres, base frame
    workspace_max: tuple = (0.75, 0.35, 0.45)
    stale_timeout_s: float = 0.5  # observation older than this -> hold

    @classmethod
    def from_dict(cls, d: dict | None) -> "SafetyConfig":
        d = dict(d or {})
        for k in ("workspace_min", "workspace_max"):
            if k in d:
                d[k] = tuple(float(x) for x in d[k])
                if len(d[k]) != 3:
                    raise ValueError(f"safety.{k} needs 3 values (x, y, z)")
        cfg = from_mapping(cls, d, "safety")
        if np.any(np.asarray(cfg.workspace_min) >= np.asarray(cfg.workspace_max)):
            raise ValueError("safety.workspace_min must be below workspace_max on every axis")
        return cfg


@dataclass
class SafetyResult:
    twist: np.ndarray
    grip: float
    held: bool
    reasons: tuple = field(default_factory=tuple)


class SafetyFilter:
    def __init__(self, cfg: SafetyConfig, control_dt: float):
        """control_dt: the control period (1 / the graph's rate_hz): what the acceleration bound
        and the workspace look-ahead are taken over, so it is never set apart from the rate."""
        if not control_dt > 0:
            raise ValueError(f"control_dt must be positive, got {control_dt}")
        self.cfg = cfg
        self.control_dt = float(control_dt)
        self.lo = np.asarray(cfg.workspace_min, np.float64)
        self.hi = np.asarray(cfg.workspace_max, np.float64)
        self.prev_twist = np.zeros(6)
        self.prev_grip = -1.0  # open

    def hold(self, *reasons: str) -> SafetyResult:
        self.prev_twist = np.zeros(6)
        return SafetyResult(np.zeros(6), self.prev_grip, True, tuple(reasons))

    def filter(self, twist, grip, ee_pos, obs_age_s: float, estop: bool = False) -> SafetyResult:
        cfg = self.cfg
        if estop:
            return self.hold("estop")
        if not np.isfinite(obs_age_s) or obs_age_s > cfg.stale_timeout_s:
            return self.hold(f"stale observation ({obs_age_s:.3f} s)")
        ee = np.asarray(ee_pos, np.float64).reshape(3)
        if not np.isfinite(ee).all():
            return self.hold("non-finite ee position")
        v = np.asarray(twist, np.float64).reshape(6)
        if not np.isfinite(v).all() or not np.isfinite(grip):
            return self.hold("non-finite command")
        reasons = []
        v = v.copy()
        v[:3], r = _clip_norm(v[:3], cfg.max_lin_vel)
        if r:
            reasons.append("linear speed clipped")
        v[3:], r = _clip_norm(v[3:], cfg.max_ang_vel)
        if r:
            reasons.append("angular speed clipped")
        dv_lin, r1 = _clip_norm(v[:3] - self.prev_twist[:3], cfg.max_lin_accel * self.control_dt)
        dv_ang, r2 = _clip_norm(v[3:] - self.prev_twist[3:], cfg.max_ang_accel * self.control_dt)
        v[:3], v[3:] = self.prev_twist[:3] + dv_lin, self.prev_twist[3:] + dv_ang
        if r1 or r2:
            reasons.append("rate limited")
        # Workspace: velocity that lands exactly on the face is the fastest allowed outward move.
        dt = self.control_dt
        upper = np.maximum((self.hi - ee) / dt, 0.0)
        lower = np.minimum((self.lo - ee) / dt, 0.0)
        clipped = np.clip(v[:3], lower, upper)
        if not np.allclose(clipped, v[:3]):
            reasons.append("workspace")
        v[:3] = clipped
        g = float(np.clip(grip, -1.0, 1.0))
        self.prev_twist, self.prev_grip = v, g
        return SafetyResult(v, g, False, tuple(reasons))


def _clip_norm(v: np.ndarray, limit: float) -> tuple[np.ndarray, bool]:
    n = float(np.linalg.norm(v))
    if n > limit:
        return v * (limit / n), True
    return v, False


def within_bounds(twist, cfg: SafetyConfig, tol: float = 1e-6) -> bool:
    """What an outside observer checks of every command on the wire."""
    v = np.asarray(twist, np.float64).reshape(6)
    return bool(
        np.isfinite(v).all()
        and np.linalg.norm(v[:3]) <= cfg.max_lin_vel + tol
        and np.linalg.norm(v[3:]) <= cfg.max_ang_vel + tol
    )
