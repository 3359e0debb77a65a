"""Robot-state adapter: a lab's driver topics -> the contract's joint_states + ee_pose.

Plain code (no rclpy): the node robot_rl/nodes/robot_state.py converts messages and calls this.
What it maps, by configuration:
- the driver's joint_states (e.g. ros2_control's merged /joint_states with `fr3_joint1..7` and
  `fr3_finger_joint1/2`) onto the model's names (`joint1..7`, `finger_joint1/2`), plus the
  contract's `gripper` entry = opening width in metres, as the twin publishes it;
- the fingers from joint_states or from a separate gripper state topic;
- the TCP pose from a driver pose topic when one is configured (e.g. franka's
  current_pose), else forward kinematics of the cell's model (robot_rl.robot.kinematics).
Safety: nothing is published unless every configured input is fresh. A stale or missing input
therefore stops the contract's topics, the actor's stale-observation watchdog holds the arm,
and `status()` says which input is stale or missing and since when. A message with NaN or
missing joints is dropped whole (never half-mapped) with the reason counted and returned.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.names import GRIPPER_JOINT

_DEFAULT_MODEL_ARM = ",".join(f"joint{i}" for i in range(1, 8))
_DEFAULT_MODEL_FINGERS = "finger_joint1,finger_joint2"


def csv(value) -> list[str]:
    """ROS parameters cannot hold an empty list: lists of names are spelled "a,b" ("" = none)."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [s.strip() for s in str(value or "").split(",") if s.strip()]


def _reliability(name: str, value: str) -> str:
    if value not in ("reliable", "best_effort"):
        raise ValueError(f"{name} must be reliable or best_effort, not {value!r}")
    return value


@dataclass
class RobotStateSettings:
    """The robot_state node's parameters (config/robot.yaml, section robot_state)."""

    joint_states_topic: str = "/joint_states"  # the driver's JointState (absolute: outside a cell's namespace)
    joint_states_reliability: str = "reliable"  # best_effort for franka's 1 kHz measured_joint_states
    # The driver's joint names, in model_arm_joints / model_finger_joints order (defaults:
    # franka_ros2's FR3, as config/robot.yaml and the twin's driver mode); "" = the model's own.
    arm_joints: str = ",".join(f"fr3_joint{i}" for i in range(1, 8))
    finger_joints: str = "fr3_finger_joint1,fr3_finger_joint2"
    gripper_state_topic: str = ""  # a separate JointState with the finger joints; "" = they are on joint_states
    gripper_state_reliability: str = "reliable"
    ee_pose_topic: str = ""  # the driver's TCP PoseStamped in the base frame; "" = forward kinematics
    ee_pose_reliability: str = "best_effort"  # franka's current_pose is best-effort (a reliable reader gets nothing)
    ee_pose_frame: str = ""  # the header.frame_id the driver pose must carry ("" = any)
    model: str = ""  # MJCF or URDF of the arm for FK; "" = the bundled sim/panda.xml
    model_arm_joints: str = _DEFAULT_MODEL_ARM  # the model's arm joints (the contract's names)
    model_finger_joints: str = _DEFAULT_MODEL_FINGERS
    ee_site: str = "ee"  # the model's TCP site (or a body/link: its origin)
    base_pos: tuple = (0.0, 0.0, 0.0)  # pose of the model's root in the base frame
    base_quat: tuple = (1.0, 0.0, 0.0, 0.0)  # wxyz
    gripper_width_scale: float = 1.0  # opening (m) = scale * sum(finger joint positions)
    stamp_source: str = "driver"  # driver: the driver's header stamps | receipt: this node's clock
    stale_timeout_s: float = 0.5  # an input older than this stops publishing
    diagnostics_hz: float = 1.0

    def __post_init__(self):
        for name in ("joint_states_reliability", "gripper_state_reliability", "ee_pose_reliability"):
            _reliability(name, getattr(self, name))
        if self.stamp_source not in ("driver", "receipt"):
            raise ValueError(f"stamp_source must be driver or receipt, not {self.stamp_source!r}")
        if not self.stale_timeout_s > 0 or not self.diagnostics_hz > 0:
            raise ValueError("stale_timeout_s and diagnostics_hz must be positive")
        if not self.joint_states_topic:
            raise ValueError("joint_states_topic must name the driver's JointState topic")
        arm, model_arm = self.driver_arm_joints, csv(self.model_arm_joints)
        if len(arm) != len(model_arm):
            raise ValueError(f"arm_joints names {len(arm)} joints ({arm}), model_arm_joints {len(model_arm)} ({model_arm})")
        fingers, model_fingers = self.driver_finger_joints, csv(self.model_finger_joints)
        if len(fingers) != len(model_fingers):
            raise ValueError(f"finger_joints names {len(fingers)} joints ({fingers}), "
                             f"model_finger_joints {len(model_fingers)} ({model_fingers})")
        if not model_fingers:
            raise ValueError("model_finger_joints: the contract needs a gripper opening")

    @property
    def driver_arm_joints(self) -> list[str]:
        return csv(self.arm_joints) or csv(self.model_arm_joints)

    @property
    def driver_finger_joints(self) -> list[str]:
        return csv(self.finger_joints) or csv(self.model_finger_joints)

    def inputs(self) -> list[str]:
        """The driver topics this adapter reads, joint_states first."""
        return [t for t in (self.joint_states_topic, self.gripper_state_topic, self.ee_pose_topic) if t]

    def make_kinematics(self):
        from robot_rl.robot.kinematics import Kinematics  # MuJoCo only where FK is used

        return Kinematics(self.model or None, self.ee_site, csv(self.model_arm_joints),
                          csv(self.model_finger_joints), self.base_pos, self.base_quat,
                          self.gripper_width_scale)


class StateError(ValueError):
    """A driver message that was dropped; the text says why."""


@dataclass
class RobotState:
    """One contract sample: joint_states (names, positions, velocities) and the TCP pose."""

    names: list
    position: np.ndarray
    velocity: np.ndarray
    stamp: float
    ee_pos: np.ndarray
    ee_quat: np.ndarray
    ee_stamp: float
    ee_source: str  # fk | topic


@dataclass
class _Input:
    topic: str
    last_at: float | None = None  # receipt time of the newest accepted message (node clock, s)
    received: int = 0
    rejected: int = 0
    data: dict = field(default_factory=dict)
    index: tuple = ((), {})  # (names, name -> i) of the last message: drivers keep their order


class RobotStateCore:
    def __init__(self, s: RobotStateSettings, now: float, kinematics=None):
        self.s = s
        self.started_at = now
        self.arm = s.driver_arm_joints
        self.fingers = s.driver_finger_joints
        self.model_arm = csv(s.model_arm_joints)
        self.model_fingers = csv(s.model_finger_joints)
        self.out_names = self.model_arm + self.model_fingers + [GRIPPER_JOINT]
        # FK is needed without a pose topic, and with one it cross-checks the driver's pose.
        self.kin = kinematics if kinematics is not None else s.make_kinematics()
        self.fingers_on_joint_states = not s.gripper_state_topic
        self.inputs = {t: _Input(t) for t in s.inputs()}
        self.published = 0
        self.held = 0  # joint_states that arrived while another input was stale/missing
        self.last_error = ""
        self.last_error_at: float | None = None
        self.fk_vs_driver_m: float | None = None
        self.zero_stamp_warned = False

    # ------------------------------------------------------------------ inputs
    def joint_states(self, names, position, velocity, stamp: float, now: float) -> RobotState | None:
        """A driver joint_states message -> the contract sample to publish, or None while another
        input is stale/missing. Raises StateError (message dropped) on NaN / missing joints."""
        inp = self.inputs[self.s.joint_states_topic]
        wanted = self.arm + (self.fingers if self.fingers_on_joint_states else [])
        pos, vel = self._select(inp, names, position, velocity, wanted, now)
        inp.last_at, inp.received = now, inp.received + 1
        inp.data = dict(stamp=self._stamp(stamp, now))
        n_arm = len(self.arm)
        arm_pos, arm_vel = pos[:n_arm], vel[:n_arm]
        if self.fingers_on_joint_states:
            finger_pos, finger_vel = pos[n_arm:], vel[n_arm:]
        else:
            g = self.inputs[self.s.gripper_state_topic]
            if not self._fresh(g, now):
                self.held += 1
                return None
            finger_pos, finger_vel = g.data["position"], g.data["velocity"]
        fk_pos, fk_quat = self.kin.fk(arm_pos)
        ee_pos, ee_quat, ee_stamp, source = fk_pos, fk_quat, inp.data["stamp"], "fk"
        if self.s.ee_pose_topic:
            e = self.inputs[self.s.ee_pose_topic]
            if not self._fresh(e, now):
                self.held += 1
                return None
            ee_pos, ee_quat, ee_stamp, source = e.data["pos"], e.data["quat"], e.data["stamp"], "topic"
            self.fk_vs_driver_m = float(np.linalg.norm(ee_pos - fk_pos))
        width = self.kin.gripper_width(finger_pos)
        self.published += 1
        return RobotState(
            names=list(self.out_names),
            position=np.concatenate([arm_pos, finger_pos, [width]]),
            velocity=np.concatenate([arm_vel, finger_vel, [0.0]]),
            stamp=inp.data["stamp"], ee_pos=ee_pos, ee_quat=ee_quat, ee_stamp=ee_stamp, ee_source=source)

    def gripper_state(self, names, position, velocity, stamp: float, now: float) -> None:
        inp = self.inputs[self.s.gripper_state_topic]
        pos, vel = self._select(inp, names, position, velocity, self.fingers, now)
        inp.last_at, inp.received = now, inp.received + 1
        inp.data = dict(position=pos, velocity=vel, stamp=self._stamp(stamp, now))

    def ee_pose(self, pos, quat_wxyz, frame_id: str, stamp: float, now: float) -> None:
        inp = self.inputs[self.s.ee_pose_topic]
        p = np.asarray(pos, np.float64).reshape(3)
        q = np.asarray(quat_wxyz, np.float64).reshape(4)
        if self.s.ee_pose_frame and frame_id != self.s.ee_pose_frame:
            self._reject(inp, f"{inp.topic}: frame_id {frame_id!r}, expected {self.s.ee_pose_frame!r}", now)
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))):
            self._reject(inp, f"{inp.topic}: pose is not finite", now)
        norm = np.linalg.norm(q)
        if not 0.9 < norm < 1.1:  # a zero quaternion (an unset pose) is not an orientation
            self._reject(inp, f"{inp.topic}: quaternion norm {norm:.3f} is not 1", now)
        q = q / norm
        inp.last_at, inp.received = now, inp.received + 1
        inp.data = dict(pos=p, quat=q if q[0] >= 0 else -q, stamp=self._stamp(stamp, now))

    # ------------------------------------------------------------------ status
    def problems(self, now: float) -> dict:
        """topic -> (kind "missing" | "stale", since: time of the last message or of start-up)."""
        out = {}
        for t, inp in self.inputs.items():
            if inp.last_at is None:
                out[t] = ("missing", self.started_at)
            elif now - inp.last_at > self.s.stale_timeout_s:
                out[t] = ("stale", inp.last_at)
        return out

    def status(self, now: float) -> tuple[int, str, dict]:
        """(level 0 ok | 1 warn | 2 error, message, values) for /diagnostics."""
        problems = self.problems(now)
        values = {
            "publishing": not problems,
            "ee_source": "topic" if self.s.ee_pose_topic else "fk",
            "published": self.published,
            "held_for_stale_inputs": self.held,
        }
        for t, inp in self.inputs.items():
            kind = problems.get(t, ("ok",))[0]
            values[f"{t}.state"] = kind
            values[f"{t}.received"] = inp.received
            values[f"{t}.rejected"] = inp.rejected
            values[f"{t}.last_received"] = "never" if inp.last_at is None else f"{inp.last_at:.3f}"
        if self.zero_stamp_warned:
            values["driver_stamps"] = "zero stamps seen: those messages stamped on receipt"
        if self.fk_vs_driver_m is not None:
            values["fk_vs_driver_mm"] = f"{1000 * self.fk_vs_driver_m:.2f}"
        if self.last_error:
            values["last_error"] = self.last_error
            values["last_error_at"] = f"{self.last_error_at:.3f}"
        if problems:
            parts = [f"{t} {kind} since {since:.3f} ({now - since:.1f} s)" for t, (kind, since) in problems.items()]
            return 2, "not publishing: " + "; ".join(parts), values
        if self.last_error and now - self.last_error_at < 5.0:
            return 1, f"dropping messages: {self.last_error}", values
        return 0, "", values

    # ------------------------------------------------------------------ internals
    def _fresh(self, inp: _Input, now: float) -> bool:
        return inp.last_at is not None and now - inp.last_at <= self.s.stale_timeout_s

    def _stamp(self, stamp: float, now: float) -> float:
        if self.s.stamp_source == "receipt":
            return now
        if stamp <= 0.0:  # an unstamped driver message would be stale to the actor forever
            self.zero_stamp_warned = True
            return now
        return stamp

    def _reject(self, inp: _Input, reason: str, now: float):
        inp.rejected += 1
        self.last_error, self.last_error_at = reason, now
        raise StateError(reason)

    def _select(self, inp: _Input, names, position, velocity, wanted: list, now: float):
        """The wanted joints' positions and velocities, in wanted order; StateError if any is
        missing or a position is not finite (velocities: non-finite or absent read as 0)."""
        names = tuple(names)
        if len(position) != len(names):
            self._reject(inp, f"{inp.topic}: {len(names)} names but {len(position)} positions", now)
        cached_names, index = inp.index
        if cached_names != names:
            index = {n: i for i, n in enumerate(names)}
            inp.index = (names, index)
        missing = [w for w in wanted if w not in index]
        if missing:
            self._reject(inp, f"{inp.topic}: lacks joints {missing} (has {list(names)})", now)
        idx = [index[w] for w in wanted]
        pos = np.asarray(position, np.float64)[idx]
        bad = [w for w, p in zip(wanted, pos) if not np.isfinite(p)]
        if bad:
            self._reject(inp, f"{inp.topic}: non-finite positions for {bad}", now)
        if len(velocity) == len(names):
            vel = np.nan_to_num(np.asarray(velocity, np.float64)[idx], nan=0.0, posinf=0.0, neginf=0.0)
        else:  # a driver may publish positions only
            vel = np.zeros(len(wanted))
        return pos, vel
