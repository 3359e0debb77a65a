"""The twin posing as a real cell's drivers (plain code; robot_rl/nodes/twin_driver.py wraps it).

What a lab's cell runs, and so what the robot graph must cope with, instead of the contract:
- wall clock, no /clock, no lock-step: the "robot controller" steps at its own rate
  (`physics_hz`) with whatever command it last received;
- joint states under the arm's own joint names (franka_ros2: fr3_joint1..7,
  fr3_finger_joint1/2), no end-effector pose (the robot graph computes it by FK);
- MoveIt Servo's delta-twist input (TwistStamped in its header frame, `speed_units` or
  `unitless` scaled by scale.linear / scale.rotational; a command is stale, and the arm stops,
  once now - header.stamp >= incoming_command_timeout, so a zero stamp always is);
- a position-controlled gripper (Float64MultiArray of finger positions, metres).
The twin also stands in for two things a real cell adds: an object tracker (object_poses) and
a reward source (task/status from its success check); a robot needs a reset between
episodes, so a finished episode holds its terminal status for `reset_s` before the next starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from robot_rl.safety import SafetyConfig
from robot_rl.spec import ActionSpec

SERVO_TYPES = ("speed_units", "unitless")


@dataclass
class DriverCellSettings:
    """The twin_driver node's parameters (config/robot_twin.yaml)."""

    task: str = "pick_cube"
    seed: int = 0
    rate_hz: float = 10.0  # the policy's rate: what an episode's step count and limit are in
    physics_hz: float = 50.0  # the cell's own controller rate (wall clock)
    max_episode_steps: int = 100  # in policy periods; then the episode is truncated
    reset_s: float = 1.0  # a finished episode's terminal status holds this long (a robot's reset)
    joint_prefix: str = "fr3_"  # franka_ros2's names: fr3_joint1..7, fr3_finger_joint1/2
    joint_states_topic: str = "/joint_states"
    servo_topic: str = "/servo_node/delta_twist_cmds"
    servo_frame: str = "fr3_link0"  # the only frame this twin's Servo stand-in accepts (the arm's base)
    servo_command_in_type: str = "speed_units"  # speed_units (m/s, rad/s) | unitless
    servo_scale_linear: float = 0.4  # moveit_servo scale.linear (unitless)
    servo_scale_rotational: float = 0.8  # moveit_servo scale.rotational (unitless)
    servo_timeout_s: float = 0.1  # moveit_servo incoming_command_timeout
    gripper_topic: str = "/gripper_controller/commands"  # Float64MultiArray, finger positions (m)
    cameras: str = "front"  # rendered at camera_hz and served to the camera node(s)
    camera_hz: float = 10.0
    image_size: tuple = (96, 128)  # (height, width): the calibration's 4:3, as a real camera's mode
    mjpeg_port: int = 8090  # frames served at http://127.0.0.1:<port>/<camera>.mjpg (0 = any free port)
    action: ActionSpec = field(default_factory=ActionSpec)
    safety: SafetyConfig = field(default_factory=SafetyConfig)  # the workspace box the twin clips to

    def __post_init__(self):
        if self.servo_command_in_type not in SERVO_TYPES:
            raise ValueError(f"servo_command_in_type must be one of {SERVO_TYPES}, not {self.servo_command_in_type!r}")
        if not (self.physics_hz > 0 and self.rate_hz > 0):
            raise ValueError("physics_hz and rate_hz must be positive")


class DriverCell:
    def __init__(self, s: DriverCellSettings, log=print):
        from robot_rl.twin import make_env

        self.s = s
        self.log = log
        self.env = make_env(task=s.task, cameras=(), image_size=s.image_size, seed=s.seed,
                            control_hz=s.physics_hz, max_episode_steps=10**9,  # episodes are ours
                            workspace_min=s.safety.workspace_min, workspace_max=s.safety.workspace_max,
                            rotation=s.action.rotation, max_lin_vel=s.action.max_lin_vel,
                            max_ang_vel=s.action.max_ang_vel)
        self.sim = self.env.unwrapped
        self.joint_names = [s.joint_prefix + n for n in self.sim.joint_names]
        self.twist = np.zeros(6)
        self.twist_stamp = -math.inf  # a zero/absent stamp is always stale, as in Servo
        self.grip = -1.0  # open
        self.estop = False
        self.episode = 0
        self.episode_time = 0.0
        self.outcome: dict | None = None  # terminal status while the reset runs
        self.reset_left = 0.0
        self.rejected = 0
        self.stale_steps = 0
        self.env.reset(seed=s.seed)

    # ------------------------------------------------------------------ commands in
    def servo(self, twist, stamp: float, frame_id: str) -> bool:
        """A delta-twist command; False (and dropped) if Servo would refuse it."""
        v = np.asarray(twist, np.float64).reshape(6)
        if frame_id != self.s.servo_frame or not np.isfinite(v).all():
            self.rejected += 1
            self.log(f"servo command rejected: frame {frame_id!r} (expected {self.s.servo_frame!r}) or non-finite {v}")
            return False
        if self.s.servo_command_in_type == "unitless":
            v = np.clip(v, -1.0, 1.0) * np.repeat([self.s.servo_scale_linear, self.s.servo_scale_rotational], 3)
        self.twist, self.twist_stamp = v, float(stamp)
        return True

    def gripper(self, positions) -> bool:
        """Finger position targets (m, one per finger or one for both): closing when below half
        the open width, the twin's binary gripper."""
        p = np.asarray(positions, np.float64).reshape(-1)
        if p.size == 0 or not np.isfinite(p).all():
            self.rejected += 1
            self.log(f"gripper command rejected: {p}")
            return False
        per_finger = float(p.mean())
        self.grip = 1.0 if per_finger < 0.5 * self.sim.cfg.robot.gripper_ctrl_open else -1.0
        return True

    # ------------------------------------------------------------------ the controller's tick
    def step(self, now: float) -> None:
        dt = 1.0 / self.s.physics_hz
        if self.outcome is not None:  # the reset between episodes
            self.reset_left -= dt
            if self.reset_left <= 0:
                self.outcome = None
                self.episode += 1
                self.episode_time = 0.0
                self.env.reset()
                self.grip = -1.0
            return
        stale = now - self.twist_stamp >= self.s.servo_timeout_s
        self.stale_steps += int(stale)
        twist = np.zeros(6) if (stale or self.estop) else self.twist
        action = self.s.action.from_command(twist, self.grip)
        _, reward, _, _, info = self.env.step(action)
        self.episode_time += dt
        steps = self.steps
        success = bool(info.get("success", False))
        if success or steps >= self.s.max_episode_steps:
            self.outcome = dict(reward=float(reward), terminated=success, truncated=not success,
                                success=success, episode=self.episode, step=steps)
            self.reset_left = self.s.reset_s

    @property
    def steps(self) -> int:
        """Policy periods elapsed in this episode."""
        return int(round(self.episode_time * self.s.rate_hz))

    # ------------------------------------------------------------------ what the drivers publish
    def joint_state(self) -> tuple[list[str], list[float], list[float]]:
        st = self.sim.robot_state()
        return self.joint_names, [float(x) for x in st["joint_pos"]], [float(x) for x in st["joint_vel"]]

    def object_poses(self) -> list:
        return [(p, q) for _, p, q in self.sim.object_poses()]

    def status(self) -> dict:
        if self.outcome is not None:
            return dict(self.outcome)
        return dict(reward=0.0, terminated=False, truncated=False, success=False,
                    episode=self.episode, step=self.steps)

    def render(self, camera: str) -> np.ndarray:
        return self.sim.render(camera)

    def camera_info(self, camera: str) -> dict:
        return self.sim.camera_info(camera)
