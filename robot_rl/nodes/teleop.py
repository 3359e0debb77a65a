"""Teleop node: a person's device, or in sim the scripted human (the twin's expert + a takeover
rule), publishing teleop/twist + teleop/gripper, teleop/engaged and teleop/event.

driver: scripted    answers every observation (a zero twist while released), stamped with the
                    observation it answers, so the actor in lock-step knows the human has decided.
driver: spacemouse | gamepad | keyboard | spacemouse+keyboard (any '+' join): a person. A wall
                    clock timer at rate_hz polls the device through the operator state machine
                    (robot_rl/teleop/session.py, operator.py) and publishes, every tick, gripper
                    and twist stamped with the node clock's now, then engaged (a zero twist while
                    released: the actor uses them only while engaged, and in the lock-step sim an
                    answer to every observation keeps the twin moving); takeover | release |
                    success | failure | reset | estop on teleop/event, and on estop the
                    contract's latched `estop` topic (true). A device that goes away mid-run:
                    released, engaged false, ERROR on /diagnostics (name `teleop`), the reason
                    logged; the node stays up saying so. No device at start: the DeviceError
                    (what was looked for, what is there) logged, exit code 2, no traceback.
Device settings: config/teleop_devices.yaml, or a lab's file of the same shape named by the
`devices_file` parameter (merged over the shipped one); see docs/teleop.md.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_msgs.msg import Bool, String

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import csv_list, make_node_options, publisher, run, settings, subscription
from robot_rl.safety import SafetyConfig
from robot_rl.spec import ActionSpec
from robot_rl.teleop.device import DeviceError
from robot_rl.teleop.scripted import ScriptedHuman
from robot_rl.teleop.takeover import TakeoverConfig


@dataclass
class TeleopSettings:
    """The teleop node's parameters; defaults are config/sim.yaml's (tests/test_settings.py)."""

    task: str = "pick_cube"
    run_dir: str = "runs/sim"
    seed: int = 0
    driver: str = "scripted"  # scripted (the twin's expert + a takeover rule) in sim; a person:
    # spacemouse | gamepad | keyboard, or several joined by '+' (spacemouse+keyboard)
    devices_file: str = ""  # a lab's device settings (teleop_devices.yaml's shape); "" = shipped
    rate_hz: float = 10.0  # the control rate: a person's device is polled once per period
    expert_noise: float = 0.1
    operator: str = "expert"  # who drives the scripted takeovers: expert | sloppy (a hesitant person)
    gripper_joints: str = C.GRIPPER_JOINT  # as the actor's
    action: ActionSpec = field(default_factory=ActionSpec)
    safety: SafetyConfig = field(default_factory=SafetyConfig)  # the takeover rule's workspace
    takeover: TakeoverConfig = field(default_factory=TakeoverConfig)

    def __post_init__(self):
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {self.rate_hz}")


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop", **make_node_options())
        s = settings(self, TeleopSettings)
        self.run_dir = Path(s.run_dir)
        self.session = None
        if s.driver != "scripted":
            self._init_device(s)
            return
        self.task = s.task
        self.human = ScriptedHuman(s.task, s.action, s.takeover, s.safety.workspace_min, s.safety.workspace_max,
                                   noise=s.expert_noise, seed=s.seed, operator=s.operator)
        self.gripper_joints = csv_list(s.gripper_joints)
        self.latest: dict = {}
        self.last_key = -1
        self.answer = None  # (engaged, twist, grip, stamp) of the last observation answered
        self.engaged_steps: list[float] = []  # obs stamps answered while engaged
        self.takeovers = 0
        self.releases = 0
        self.takeover_reasons: Counter = Counter()  # why the rule stepped in

        self.required = [C.JOINT_STATES, C.EE_POSE, C.OBJECT_POSES, C.TASK_STATUS]
        for topic in self.required:
            subscription(self, topic, lambda m, t=topic: self._on_sensor(t, m))
        self.evaluating = False  # the actor's evaluation episodes allow no intervention
        subscription(self, C.EVALUATING, lambda m: setattr(self, "evaluating", bool(m.data)))
        self.pub_engaged = publisher(self, C.TELEOP_ENGAGED)
        self.pub_twist = publisher(self, C.TELEOP_TWIST)
        self.pub_grip = publisher(self, C.TELEOP_GRIPPER)
        self.pub_event = publisher(self, C.TELEOP_EVENT)
        self.pub_engaged.publish(Bool(data=False))
        self.get_logger().info(f"teleop up: scripted human ({s.operator}) for {self.task}, rule {self.human.rule.cfg}")

    def _on_sensor(self, topic: str, msg) -> None:
        self.latest[topic] = msg
        stamps = {codec.stamp_key(self.latest[t].header.stamp) for t in self.required if t in self.latest}
        if len(self.latest) < len(self.required) or len(stamps) != 1:
            return
        key = stamps.pop()
        if key < self.last_key:
            return
        if key == self.last_key:  # the twin repeats its first observation while nodes start:
            self._publish_answer()  # say the same again, for an actor that missed it
            return
        self.last_key = key
        try:
            self._answer()
        except codec.CodecError as e:
            self.get_logger().error(f"bad observation, not answering: {e}")

    def _answer(self) -> None:
        status = codec.status_from_msg(self.latest[C.TASK_STATUS])
        if status["terminated"] or status["truncated"]:
            return  # terminal observation: nobody acts on it
        t = codec.from_stamp(self.latest[C.TASK_STATUS].header.stamp)
        obs = codec.observation_from_msgs(self.latest, gripper_joints=self.gripper_joints)
        a = self.human.answer(obs, status["episode"], self.evaluating)
        for e in a.events:
            self._event(e)
        if a.engaged:
            self.engaged_steps.append(t)
        if a.reason:
            self.takeover_reasons[a.reason] += 1
        self.answer = (a.engaged, a.twist, a.grip, t)
        self._publish_answer()

    def _publish_answer(self) -> None:
        if self.answer is None:
            return
        engaged, twist, grip, t = self.answer
        self.pub_engaged.publish(Bool(data=engaged))
        self.pub_grip.publish(codec.gripper_msg(grip, t))
        self.pub_twist.publish(codec.twist_msg(twist, t, C.BASE_FRAME))

    def _event(self, name: str) -> None:
        self.takeovers += name == "takeover"
        self.releases += name == "release"
        self.pub_event.publish(String(data=name))

    # ------------------------------------------------------------------ a person's device
    def _init_device(self, s: TeleopSettings) -> None:
        from robot_rl.teleop.session import DeviceTeleop

        try:
            try:
                self.session = DeviceTeleop.open(s.driver, s.devices_file or None)
            except (ValueError, OSError) as e:  # a typo in the devices file, a missing file
                raise DeviceError(f"bad teleop device settings: {e}") from e
        except DeviceError as e:
            self.get_logger().fatal(f"teleop driver {s.driver}: {e}")
            raise
        self.pub_engaged = publisher(self, C.TELEOP_ENGAGED)
        self.pub_twist = publisher(self, C.TELEOP_TWIST)
        self.pub_grip = publisher(self, C.TELEOP_GRIPPER)
        self.pub_event = publisher(self, C.TELEOP_EVENT)
        self.pub_estop = publisher(self, C.ESTOP)  # made now: matched long before it is needed
        self.pub_diag = publisher(self, C.DIAGNOSTICS)
        subscription(self, C.COMMAND_GRIPPER, self._on_command_gripper)
        # Our latched true outlives the e-stop: once the operator releases it (`robot-rl estop
        # --clear` publishes false, then calls the actor's clear service) a restarted actor would
        # still get our old true and latch again. So our latched value follows a release. A
        # false never releases an actor by itself (that takes the service): this is safe.
        self.estop_sent = False
        subscription(self, C.ESTOP, self._on_estop)
        self.pub_engaged.publish(Bool(data=False))
        wall = Clock(clock_type=ClockType.STEADY_TIME)  # a person's pace, also under sim time
        self.create_timer(1.0 / s.rate_hz, self._device_tick, clock=wall)
        self.create_timer(1.0, self._publish_diagnostics, clock=wall)
        self.get_logger().info(f"teleop up: {s.driver} at {s.rate_hz} Hz, operator {self.session.operator.cfg}")

    def _on_command_gripper(self, msg) -> None:
        try:
            self.session.robot_gripper(codec.gripper_from_msg(msg))
        except codec.CodecError:
            pass  # not the actor's dialect: the actor itself logs bad gripper commands

    def _on_estop(self, msg) -> None:
        if not msg.data and self.estop_sent:
            self.estop_sent = False
            self.pub_estop.publish(Bool(data=False))

    def _device_tick(self) -> None:
        t = self.get_clock().now().nanoseconds * 1e-9
        tick = self.session.tick()
        for e in tick.events:
            self.pub_event.publish(String(data=e))
            if e == "estop":
                self.estop_sent = True
                self.pub_estop.publish(Bool(data=True))  # latched; the actor holds until cleared
                self.get_logger().warning("E-STOP pressed on the teleop device")
        if tick.lost_now:
            self.get_logger().error(f"teleop device lost ({tick.reason}): released; the actor holds "
                                    "on the policy or its watchdog; restart the teleop to reconnect")
            self._publish_diagnostics()
        # the command before the flag: an actor ticking between the two on the takeover tick
        # would otherwise take the released tick's zero twist for the person's command
        self.pub_grip.publish(codec.gripper_msg(tick.gripper, t))
        self.pub_twist.publish(codec.twist_msg(tick.twist, t, C.BASE_FRAME))
        self.pub_engaged.publish(Bool(data=tick.engaged))

    def _publish_diagnostics(self) -> None:
        level, message, values = self.session.diagnostics()
        t = self.get_clock().now().nanoseconds * 1e-9
        self.pub_diag.publish(codec.diagnostics_msg(t, "teleop", values, level, message))

    def close(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.session is not None:
            self.session.close()  # a keyboard gets its terminal back
            summary = self.session.summary()
        else:
            summary = {"takeovers": self.takeovers, "releases": self.releases, "engaged_stamps": self.engaged_steps,
                       "takeover_reasons": self.takeover_reasons}
        (self.run_dir / "teleop_summary.json").write_text(json.dumps(summary))


def main(args=None) -> int:
    try:
        return run(TeleopNode, args)
    except DeviceError:
        return 2  # said by the node's log and run()'s fatal line; a traceback would bury it


if __name__ == "__main__":
    sys.exit(main())
