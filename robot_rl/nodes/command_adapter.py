"""Command adapter node: the contract's commands -> what the lab's arm and gripper take.

command/twist -> MoveIt Servo's TwistStamped (header frame = servo.command_frame, stamped now),
re-sent at watchdog_hz while fresh and zero after watchdog_timeout_s (robot_rl.robot.servo);
command/gripper -> a Float64MultiArray or JointState target (robot_rl.robot.gripper); estop ->
zero twists while true. The logic is in robot_rl.robot.commands; this class converts messages.
"""
from __future__ import annotations

import time

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from geometry_msgs.msg import TwistStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import make_node_options, publisher, qos, run, settings, subscription
from robot_rl.robot.commands import CommandAdapterCore, CommandAdapterSettings


def _driver_qos(reliability: str):
    return qos(C.Qos(depth=10, reliable=reliability == "reliable"))


class CommandAdapterNode(Node):
    def __init__(self):
        super().__init__("command_adapter", **make_node_options())
        s = settings(self, CommandAdapterSettings)
        self.s = s
        self.core = CommandAdapterCore(s)
        self.pub_servo = self.create_publisher(TwistStamped, s.servo.topic, _driver_qos(s.servo.reliability))
        g = s.gripper
        self.pub_grip = None
        if g.interface == "float64_array":
            self.pub_grip = self.create_publisher(Float64MultiArray, g.topic, _driver_qos(g.reliability))
        elif g.interface == "joint_state":
            self.pub_grip = self.create_publisher(JointState, g.topic, _driver_qos(g.reliability))
        self.pub_diag = publisher(self, C.DIAGNOSTICS)
        # command/twist is taken only once Servo is matched: the actor acts (and logs steps as
        # executed) only while command/twist has a taker, so that taker must reach the arm.
        self.sub_twist = None
        subscription(self, C.COMMAND_GRIPPER, self._on_gripper)
        subscription(self, C.ESTOP, self._on_estop)
        # Wall clock: the watchdog must fire when everything else (sim time included) stands still.
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(1.0 / s.watchdog_hz, self._on_watchdog, clock=wall)
        self.create_timer(1.0 / s.diagnostics_hz, self._publish_diagnostics, clock=wall)
        self.get_logger().info(
            f"command_adapter up: command/twist -> {s.servo.topic} ({s.servo.command_in_type}, frame "
            f"{s.servo.command_frame}), watchdog {s.watchdog_timeout_s} s at {s.watchdog_hz} Hz; "
            f"command/gripper -> {g.interface} {g.topic if self.pub_grip else ''}")

    def _send(self, twist) -> None:
        # Stamped now: Servo drops a twist whose stamp is >= 0.1 s old as stale.
        self.pub_servo.publish(codec.twist_msg(twist, self.get_clock().now().nanoseconds * 1e-9,
                                               self.s.servo.command_frame))

    def _on_twist(self, msg) -> None:
        rejected = self.core.watchdog.rejected
        self._send(self.core.twist(codec.twist_from_msg(msg), time.monotonic()))
        if self.core.watchdog.rejected != rejected:
            self.get_logger().error(self.core.watchdog.last_error, throttle_duration_sec=1.0)

    def _on_watchdog(self) -> None:
        if self.sub_twist is None and self.pub_servo.get_subscription_count() > 0:
            self.sub_twist = subscription(self, C.COMMAND_TWIST, self._on_twist)
            self.get_logger().info(f"{self.s.servo.topic} has a subscriber: taking command/twist")
        self._send(self.core.tick(time.monotonic()))

    def _on_estop(self, msg) -> None:
        was = self.core.watchdog.estop
        zero = self.core.set_estop(msg.data)
        if zero is not None:
            self._send(zero)
        if zero is not None and not was:
            self.get_logger().warning("e-stop: sending zero twists")
        elif zero is None and was:
            self.get_logger().info("e-stop released: twists resume on the next fresh command")

    def _on_gripper(self, msg) -> None:
        try:
            targets = self.core.gripper(codec.gripper_from_msg(msg))
        except ValueError as e:  # CodecError is one too
            self.get_logger().error(f"gripper command dropped: {e}", throttle_duration_sec=1.0)
            return
        if targets is None or self.pub_grip is None:
            return
        if self.s.gripper.interface == "float64_array":
            out = Float64MultiArray()
            out.data = targets
        else:
            out = codec.joint_state_msg(self.s.gripper.joint_names, targets, [],
                                        self.get_clock().now().nanoseconds * 1e-9)
        self.pub_grip.publish(out)

    def _publish_diagnostics(self) -> None:
        level, message, values = self.core.status(time.monotonic())
        now = self.get_clock().now().nanoseconds * 1e-9
        self.pub_diag.publish(codec.diagnostics_msg(now, "command_adapter", values, level, message))


def main(args=None) -> int:
    return run(CommandAdapterNode, args)


if __name__ == "__main__":
    main()
