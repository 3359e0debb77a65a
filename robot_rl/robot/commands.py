"""The command adapter's settings and core: Servo twists with their watchdog, gripper targets,
the e-stop. Plain code; robot_rl/nodes/command_adapter.py is its thin node."""
from __future__ import annotations

from dataclasses import dataclass, field

from robot_rl.robot.gripper import GripperSettings, gripper_targets
from robot_rl.robot.servo import ServoSettings, TwistWatchdog


@dataclass
class CommandAdapterSettings:
    """The command_adapter node's parameters (config/robot.yaml, section command_adapter)."""

    servo: ServoSettings = field(default_factory=ServoSettings)
    gripper: GripperSettings = field(default_factory=GripperSettings)
    watchdog_hz: float = 50.0  # wall-clock rate of the re-send / zero-twist timer
    watchdog_timeout_s: float = 0.2  # no command/twist for this long -> zero twists
    diagnostics_hz: float = 1.0

    def __post_init__(self):
        if not (self.watchdog_hz > 0 and self.watchdog_timeout_s > 0 and self.diagnostics_hz > 0):
            raise ValueError("watchdog_hz, watchdog_timeout_s and diagnostics_hz must be positive")
        if self.watchdog_timeout_s < 1.0 / self.watchdog_hz:
            raise ValueError(f"watchdog_timeout_s {self.watchdog_timeout_s} is shorter than one "
                             f"watchdog period (1/{self.watchdog_hz} s): every command would time out")


class CommandAdapterCore:
    def __init__(self, s: CommandAdapterSettings):
        self.s = s
        self.watchdog = TwistWatchdog(s.servo, s.watchdog_timeout_s)
        self.grip_sent = 0
        self.grip_rejected = 0
        self.grip_held_for_estop = 0
        self.last_grip_error = ""
        self.last_targets: list[float] | None = None

    def twist(self, twist6, now: float):
        return self.watchdog.command(twist6, now)

    def tick(self, now: float):
        return self.watchdog.tick(now)

    def set_estop(self, flag: bool):
        return self.watchdog.set_estop(flag)

    def gripper(self, grip: float) -> list[float] | None:
        """A closing command -> joint targets to send, or None: rejected (not finite: raises
        ValueError for the node to log) or held (e-stop: the gripper keeps its last command,
        as the twin does, so an e-stop never drops a held object)."""
        if self.watchdog.estop:
            self.grip_held_for_estop += 1
            return None
        try:
            targets = gripper_targets(grip, self.s.gripper)
        except ValueError as e:
            self.grip_rejected += 1
            self.last_grip_error = str(e)
            raise
        self.grip_sent += 1
        self.last_targets = targets
        return targets

    def status(self, now: float) -> tuple[int, str, dict]:
        values = self.watchdog.status(now)
        values.update(gripper_sent=self.grip_sent, gripper_rejected=self.grip_rejected,
                      gripper_held_for_estop=self.grip_held_for_estop,
                      gripper_last_targets="none" if self.last_targets is None else
                      ",".join(f"{x:.4f}" for x in self.last_targets),
                      gripper_last_error=self.last_grip_error,
                      servo_topic=self.s.servo.topic, command_frame=self.s.servo.command_frame,
                      command_in_type=self.s.servo.command_in_type)
        if values["estop"]:
            return 2, "e-stop: sending zero twists", values
        if not values["commanding"]:
            return 1, "actor quiet: sending zero twists", values
        return 0, "", values
