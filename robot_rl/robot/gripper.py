"""The contract's command/gripper -> what a lab's gripper controller takes.

The contract's gripper command (robot_rl/codec.py gripper_msg / gripper_from_msg) is a closing
command in [-1, 1] (> 0 closes), on the wire as an opening fraction 0 (closed) .. 1 (open).
Here it becomes a target opening width between `closed_width` and `open_width` (metres), then
per-joint targets: each finger joint at `joint_scale` * width (a Franka hand's fingers each
travel half the opening: 0.5), as
- `float64_array`: std_msgs/Float64MultiArray, e.g. a position controller's `~/commands`
  (forward_command_controller holds the last value: a gripper holds its position);
- `joint_state`: a sensor_msgs/JointState target naming `joints`.
`mode` binary thresholds at 0 like the twin does (a policy trained in the twin commands open
or closed), continuous maps the command linearly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INTERFACES = ("float64_array", "joint_state", "none")


@dataclass
class GripperSettings:
    interface: str = "float64_array"  # float64_array | joint_state | none
    topic: str = "/gripper_controller/commands"  # the twin driver's default too
    reliability: str = "reliable"
    joints: str = "finger_joint1,finger_joint2"  # target joints (JointState names; one array entry each)
    open_width: float = 0.08  # m, the opening commanded at grip = -1 (open)
    closed_width: float = 0.0  # m, at grip = +1 (a grasp stops on the object)
    joint_scale: float = 0.5  # joint target = joint_scale * width (0.5: two fingers, half each)
    mode: str = "binary"  # binary (the twin's: closed if grip > 0) | continuous

    def __post_init__(self):
        if self.interface not in INTERFACES:
            raise ValueError(f"gripper.interface must be one of {INTERFACES}, not {self.interface!r}")
        if self.mode not in ("binary", "continuous"):
            raise ValueError(f"gripper.mode must be binary or continuous, not {self.mode!r}")
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"gripper.reliability must be reliable or best_effort, not {self.reliability!r}")
        if not (np.isfinite(self.open_width) and np.isfinite(self.closed_width) and self.open_width > self.closed_width >= 0):
            raise ValueError(f"gripper: need open_width > closed_width >= 0, got {self.open_width}, {self.closed_width}")
        if self.interface != "none" and not self.joint_names:
            raise ValueError("gripper.joints must name at least one joint")

    @property
    def joint_names(self) -> list[str]:
        return [s.strip() for s in str(self.joints or "").split(",") if s.strip()]


def gripper_width(grip: float, s: GripperSettings) -> float:
    """Closing command in [-1, 1] -> target opening in metres; ValueError if not finite."""
    g = float(grip)
    if not np.isfinite(g):
        raise ValueError(f"gripper command is not finite: {g}")
    g = float(np.clip(g, -1.0, 1.0))
    if s.mode == "binary":
        return s.closed_width if g > 0 else s.open_width
    closing = (g + 1.0) / 2.0  # 0 open .. 1 closed
    return s.open_width + closing * (s.closed_width - s.open_width)


def gripper_targets(grip: float, s: GripperSettings) -> list[float]:
    """Closing command -> one position target per configured joint."""
    w = gripper_width(grip, s)
    return [s.joint_scale * w] * len(s.joint_names)
