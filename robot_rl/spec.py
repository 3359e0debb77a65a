"""Observation and action layout shared by the twin, the store, the learner and the nodes.

Plain NumPy, no ROS. The robot, the twin and every learner agree on these vectors, so the
actor node can rebuild from ROS messages exactly what the gymnasium env returns.

Observation: a dict of named arrays.
  "proprio"  float32 (8,)   ee position (3, metres, base frame), ee orientation quaternion
                            (4, w x y z, hemisphere w >= 0), gripper opening (1, metres).
  "object"   float32 (7*K,) poses of the task's K tracked objects (position + quaternion wxyz),
                            in the order the task names them (a tracker/mocap on the robot,
                            the simulator in the twin). Only for state-based policies.
  "<camera>" uint8 (H, W, 3) rgb images, one key per camera used ("front", "wrist").

Action: float32 in [-1, 1]^A, A = 4 ([vx, vy, vz, grip]) or 7 ([vx, vy, vz, wx, wy, wz, grip])
when rotation is enabled. Velocities are scaled by ActionSpec's max_lin_vel / max_ang_vel into a
twist (m/s, rad/s, base frame); grip > 0 means close, <= 0 open.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PROPRIO_DIM = 8
POSE_DIM = 7

# Per-step bookkeeping every stored step and every transition on the wire carries besides the
# observation keys and "action": key -> (shape, dtype). One table for the store and the codec.
BOOKKEEPING = {
    "reward": ((), "<f4"),
    "terminated": ((), "|b1"),
    "truncated": ((), "|b1"),
    "intervened": ((), "|b1"),
    "policy_version": ((), "<i8"),
    "timestamp": ((), "<f8"),
    "eval": ((), "|b1"),
}


def canonical_quat(quat_wxyz) -> np.ndarray:
    """Unit quaternion with w >= 0, so q and -q map to one vector."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    n = np.linalg.norm(q)
    q = q / n if n > 0 else np.array([1.0, 0.0, 0.0, 0.0])
    return -q if q[0] < 0 else q


def proprio_vector(ee_pos, ee_quat_wxyz, gripper_width: float) -> np.ndarray:
    return np.concatenate(
        [np.asarray(ee_pos, np.float64), canonical_quat(ee_quat_wxyz), [float(gripper_width)]]
    ).astype(np.float32)


def object_vector(poses) -> np.ndarray:
    """poses: iterable of (position(3), quaternion wxyz(4))."""
    parts = [np.concatenate([np.asarray(p, np.float64), canonical_quat(q)]) for p, q in poses]
    return (np.concatenate(parts) if parts else np.zeros(0)).astype(np.float32)


def policy_obs_keys(cameras=()) -> tuple[str, ...]:
    """The observation keys a policy sees: proprio plus the objects' poses when state-based, or
    plus the named cameras for a pixel policy (no object pose: a real cell does not measure it).
    The actor feeds, the learner trains and the ONNX actor takes exactly these."""
    cameras = tuple(cameras)
    return ("proprio", *cameras) if cameras else ("proprio", "object")


@dataclass(frozen=True)
class ActionSpec:
    rotation: bool = False
    max_lin_vel: float = 0.2  # m/s at |a| = 1
    max_ang_vel: float = 1.0  # rad/s at |a| = 1

    @property
    def dim(self) -> int:
        return 7 if self.rotation else 4

    @property
    def names(self) -> tuple[str, ...]:
        lin = ("vx", "vy", "vz")
        return lin + (("wx", "wy", "wz") if self.rotation else ()) + ("grip",)

    def to_command(self, action) -> tuple[np.ndarray, float]:
        """Normalised action -> (twist[6] in m/s and rad/s, gripper closing command in [-1, 1])."""
        a = np.clip(np.asarray(action, np.float64).reshape(-1), -1.0, 1.0)
        if a.shape[0] != self.dim:
            raise ValueError(f"action has {a.shape[0]} values, spec expects {self.dim}")
        twist = np.zeros(6)
        twist[:3] = a[:3] * self.max_lin_vel
        if self.rotation:
            twist[3:] = a[3:6] * self.max_ang_vel
        return twist, float(a[-1])

    def from_command(self, twist, grip: float) -> np.ndarray:
        """(twist[6], gripper command) -> normalised action, clipped to [-1, 1]."""
        t = np.asarray(twist, np.float64).reshape(6)
        parts = [t[:3] / self.max_lin_vel]
        if self.rotation:
            parts.append(t[3:] / self.max_ang_vel)
        parts.append([grip])
        return np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class ObsSpec:
    """Names, shapes and dtypes of the observation dict a policy consumes."""

    shapes: dict = field(default_factory=dict)  # key -> tuple shape
    dtypes: dict = field(default_factory=dict)  # key -> numpy dtype string

    @classmethod
    def from_space(cls, space) -> "ObsSpec":
        """Build from a gymnasium Dict space."""
        return cls(
            {k: tuple(s.shape) for k, s in space.spaces.items()},
            {k: np.dtype(s.dtype).str for k, s in space.spaces.items()},
        )

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(k for k, s in self.shapes.items() if len(s) == 3)

    @property
    def vector_keys(self) -> tuple[str, ...]:
        return tuple(k for k, s in self.shapes.items() if len(s) == 1)

    def check(self, obs: dict) -> None:
        """Raise ValueError naming the key if obs does not match this spec."""
        for k, shape in self.shapes.items():
            if k not in obs:
                raise ValueError(f"observation lacks key {k!r} (expected shape {shape})")
            v = np.asarray(obs[k])
            if tuple(v.shape) != tuple(shape):
                raise ValueError(f"observation {k!r} has shape {v.shape}, expected {shape}")

    def to_dict(self) -> dict:
        return {k: {"shape": list(s), "dtype": self.dtypes[k]} for k, s in self.shapes.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ObsSpec":
        return cls({k: tuple(v["shape"]) for k, v in d.items()}, {k: v["dtype"] for k, v in d.items()})
