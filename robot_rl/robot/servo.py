"""The contract's command/twist -> MoveIt Servo's delta-twist input, with a watchdog.

Plain code (no rclpy): robot_rl/nodes/command_adapter.py converts messages and calls this.
- Servo reads a twist in its header.frame_id (`command_frame`, written into every header) and
  drops one as stale when now - header.stamp >= incoming_command_timeout (0.1 s), so the node
  stamps every twist it sends with the current time, never the actor's observation stamp.
- The actor commands at its policy rate (10 Hz: every 0.1 s, right at Servo's timeout), so the
  newest command is re-sent on a wall-clock timer at `watchdog_hz` while it is fresh; Servo
  then moves smoothly instead of halting between actor ticks.
- ros2_control's forward_command_controller repeats its last command forever: when no command
  arrived for `watchdog_timeout_s` (a dead or stuck actor) the timer sends zero twists, and
  keeps sending them, so the arm stops and stays stopped.
- E-stop (the contract's latched `estop`): zeros while it is true, regardless of the actor; the
  held command is forgotten, so clearing it resumes only on a fresh command.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ZERO = np.zeros(6)


@dataclass
class ServoSettings:
    topic: str = "/servo_node/delta_twist_cmds"  # Servo's TwistStamped input
    reliability: str = "reliable"  # Servo subscribes with the system default QoS (reliable)
    command_frame: str = "base_link"  # header.frame_id: the frame Servo reads the twist in
    command_in_type: str = "speed_units"  # as Servo's moveit_servo.command_in_type: speed_units | unitless
    scale_linear: float = 0.4  # unitless: Servo's moveit_servo.scale.linear (m/s at 1.0)
    scale_rotational: float = 0.8  # unitless: Servo's moveit_servo.scale.rotational (rad/s at 1.0)

    def __post_init__(self):
        if self.command_in_type not in ("speed_units", "unitless"):
            raise ValueError(f"servo.command_in_type must be speed_units or unitless, not {self.command_in_type!r}")
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"servo.reliability must be reliable or best_effort, not {self.reliability!r}")
        if not (self.scale_linear > 0 and self.scale_rotational > 0):
            raise ValueError("servo.scale_linear and servo.scale_rotational must be positive")
        if not self.command_frame:
            raise ValueError("servo.command_frame must name the frame Servo reads twists in")


def servo_twist(twist6, s: ServoSettings) -> np.ndarray:
    """A contract twist (m/s, rad/s, base frame) -> what Servo takes in its command_in_type:
    passed through in speed_units; divided by Servo's scales and clipped to [-1, 1] when
    unitless (Servo multiplies back, so the arm moves at the commanded speed up to the scale).
    Raises ValueError on a wrong size or a non-finite value."""
    t = np.asarray(twist6, np.float64).reshape(-1)
    if t.shape[0] != 6:
        raise ValueError(f"twist has {t.shape[0]} values, expected 6")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"twist is not finite: {t.tolist()}")
    if s.command_in_type == "speed_units":
        return t.copy()
    out = np.empty(6)
    out[:3] = t[:3] / s.scale_linear
    out[3:] = t[3:] / s.scale_rotational
    return np.clip(out, -1.0, 1.0)


class TwistWatchdog:
    """Which twist to send, when. `command` on each actor twist, `tick` on the wall-clock timer;
    both return the twist to send now (already in Servo's units). Times: monotonic seconds."""

    def __init__(self, s: ServoSettings, timeout_s: float):
        if not timeout_s > 0:
            raise ValueError(f"watchdog_timeout_s must be positive, got {timeout_s}")
        self.s = s
        self.timeout_s = timeout_s
        self.held: np.ndarray | None = None  # the newest command, Servo units
        self.held_at: float | None = None
        self.estop = False
        self.timed_out = True  # nothing commanded yet: zeros until the actor speaks
        # counters for /diagnostics
        self.received = 0
        self.rejected = 0
        self.zeros_sent = 0  # zero twists sent because of the watchdog or the e-stop
        self.timeouts = 0  # times the actor went quiet while commanding
        self.last_error = ""

    def command(self, twist6, now: float) -> np.ndarray:
        """An actor twist arrived: the twist to send right away. A bad one (NaN, wrong size) is
        a hold: zeros now, and the held command is dropped. Raises nothing."""
        self.received += 1
        try:
            out = servo_twist(twist6, self.s)
        except ValueError as e:
            self.rejected += 1
            self.last_error = f"command rejected, holding: {e}"
            self.held, self.held_at = None, None
            return self._zero()
        if self.estop:  # not held either: a release resumes only on a command sent after it
            return self._zero()
        self.held, self.held_at, self.timed_out = out, now, False
        return out

    def tick(self, now: float) -> np.ndarray:
        """The timer: the held command while fresh, zeros otherwise (and during an e-stop)."""
        if self.estop:
            return self._zero()
        if self.held is None or now - self.held_at > self.timeout_s:
            if not self.timed_out:
                self.timed_out = True
                self.timeouts += 1
            return self._zero()
        return self.held

    def set_estop(self, flag: bool) -> np.ndarray | None:
        """The e-stop topic; on true, zeros to send at once (and the held command forgotten)."""
        self.estop = bool(flag)
        if self.estop:
            self.held, self.held_at = None, None
            return self._zero()
        return None

    def _zero(self) -> np.ndarray:
        self.zeros_sent += 1
        return ZERO.copy()

    def status(self, now: float) -> dict:
        age = None if self.held_at is None else now - self.held_at
        return {
            "estop": self.estop,
            "commanding": not self.estop and self.held is not None and age is not None and age <= self.timeout_s,
            "last_command_age_s": "never" if age is None else f"{age:.3f}",
            "commands_received": self.received,
            "commands_rejected": self.rejected,
            "zero_twists_sent": self.zeros_sent,
            "watchdog_timeouts": self.timeouts,
            "last_error": self.last_error,
        }
