"""A cell's camera calibration YAML (schema in calibration/default_cell.yaml) as dataclasses.

Frames: the extrinsic of a camera is the pose of its OpenCV/ROS optical frame (x right, y down,
z forward, out of the lens) in its parent frame: `base` for the robot base frame, or the name
of a body/site of the robot model (the wrist camera's hand-eye pose is given in `flange`).
MuJoCo cameras look down their -z axis with y up; `optical_to_mujoco_quat` converts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

# Rotation by pi about x: optical (z forward, y down) <-> MuJoCo camera (-z forward, y up).
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def quat_to_mat(q_wxyz) -> np.ndarray:
    w, x, y, z = np.asarray(q_wxyz, np.float64) / np.linalg.norm(q_wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def mat_to_quat(r) -> np.ndarray:
    """Rotation matrix -> unit quaternion wxyz with w >= 0 (Shepperd's method)."""
    r = np.asarray(r, np.float64)
    t = np.trace(r)
    if t > 0:
        s = 2.0 * np.sqrt(1.0 + t)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = np.zeros(4)
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    q = np.asarray(q) / np.linalg.norm(q)
    return -q if q[0] < 0 else q


def optical_to_mujoco_quat(q_optical_wxyz) -> np.ndarray:
    """Orientation of an optical frame -> orientation of the MuJoCo camera that sees the same."""
    return mat_to_quat(quat_to_mat(q_optical_wxyz) @ _FLIP_YZ)


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """4x4 pose of an optical frame at `eye` looking at `target`, image 'up' towards `up`."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to `up`")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], axis=1)
    pose[:3, 3] = eye
    return pose


@dataclass(frozen=True)
class CameraCalibration:
    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple = (0.0, 0.0, 0.0, 0.0, 0.0)
    distortion_model: str = "plumb_bob"
    parent: str = "base"  # "base" or a body/site name of the robot model
    extrinsic: np.ndarray = field(default_factory=lambda: np.eye(4))  # optical frame in parent
    frame_id: str = ""

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def fovy_deg(self) -> float:
        return float(np.degrees(2.0 * np.arctan(self.height / (2.0 * self.fy))))

    @property
    def position(self) -> np.ndarray:
        return self.extrinsic[:3, 3].copy()

    @property
    def quat_optical(self) -> np.ndarray:
        return mat_to_quat(self.extrinsic[:3, :3])

    def scaled_K(self, width: int, height: int) -> np.ndarray:
        """K of the same camera rendered/resized to width x height (pixel centres at integers)."""
        sx, sy = width / self.width, height / self.height
        return np.array([
            [self.fx * sx, 0.0, (self.cx + 0.5) * sx - 0.5],
            [0.0, self.fy * sy, (self.cy + 0.5) * sy - 0.5],
            [0.0, 0.0, 1.0],
        ])


@dataclass(frozen=True)
class CellCalibration:
    name: str
    cameras: dict  # name -> CameraCalibration
    source: str = ""

    def camera(self, name: str) -> CameraCalibration:
        if name not in self.cameras:
            raise KeyError(f"cell {self.name!r} has no camera {name!r}; it has {sorted(self.cameras)}")
        return self.cameras[name]


def _extrinsic(name: str, e: dict) -> np.ndarray:
    if "matrix" in e:
        m = np.asarray(e["matrix"], np.float64)
        if m.shape != (4, 4):
            raise ValueError(f"camera {name!r}: extrinsic.matrix must be 4x4, got {m.shape}")
        if not np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-4):
            raise ValueError(f"camera {name!r}: extrinsic.matrix rotation is not orthonormal")
        return m
    if "position" in e and "quaternion_wxyz" in e:
        pose = np.eye(4)
        pose[:3, :3] = quat_to_mat(e["quaternion_wxyz"])
        pose[:3, 3] = np.asarray(e["position"], np.float64).reshape(3)
        return pose
    raise ValueError(
        f"camera {name!r}: extrinsic needs either `matrix` (4x4) or `position` + `quaternion_wxyz`"
    )


_REQUIRED = ("width", "height", "fx", "fy", "cx", "cy", "extrinsic")


def camera_from_dict(name: str, d: dict) -> CameraCalibration:
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ValueError(f"camera {name!r} lacks {missing} (needs {list(_REQUIRED)})")
    return CameraCalibration(
        name=name,
        width=int(d["width"]),
        height=int(d["height"]),
        fx=float(d["fx"]),
        fy=float(d["fy"]),
        cx=float(d["cx"]),
        cy=float(d["cy"]),
        distortion=tuple(float(v) for v in d.get("distortion", (0.0,) * 5)),
        distortion_model=str(d.get("distortion_model", "plumb_bob")),
        parent=str(d.get("parent", "base")),
        extrinsic=_extrinsic(name, d["extrinsic"]),
        frame_id=str(d.get("frame_id", f"{name}_camera_optical_frame")),
    )


def load_cell(path) -> CellCalibration:
    """Load a cell calibration YAML (schema: calibration/default_cell.yaml)."""
    path = Path(path)
    with open(path) as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict) or "cameras" not in raw:
        raise ValueError(f"{path}: expected a mapping with a `cameras:` section")
    cams = {n: camera_from_dict(n, c) for n, c in (raw["cameras"] or {}).items()}
    return CellCalibration(name=str(raw.get("cell", path.stem)), cameras=cams, source=str(path))
