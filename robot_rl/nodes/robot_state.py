"""Robot-state node: a lab's driver topics -> the contract's joint_states + ee_pose.

The mapping, freshness checks and FK live in robot_rl.robot.state_adapter; this class converts
messages and publishes. The driver's topics are not the contract's: they are opened by their
configured names (absolute ones stay outside a cell's namespace) with their own reliability
(franka's 1 kHz topics are best-effort, and a reliable reader gets nothing from them).
"""
from __future__ import annotations

from geometry_msgs.msg import PoseStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import make_node_options, publisher, qos, run, settings
from robot_rl.robot.state_adapter import RobotStateCore, RobotStateSettings, StateError


def _driver_qos(reliability: str):
    return qos(C.Qos(depth=10, reliable=reliability == "reliable"))


class RobotStateNode(Node):
    def __init__(self):
        super().__init__("robot_state", **make_node_options())
        s = settings(self, RobotStateSettings)
        self.s = s
        self._refuse_collisions(s)
        self.core = RobotStateCore(s, self.now())
        self.pub_joints = publisher(self, C.JOINT_STATES)
        self.pub_ee = publisher(self, C.EE_POSE)
        self.pub_diag = publisher(self, C.DIAGNOSTICS)
        self.create_subscription(JointState, s.joint_states_topic, self._on_joint_states,
                                 _driver_qos(s.joint_states_reliability))
        if s.gripper_state_topic:
            self.create_subscription(JointState, s.gripper_state_topic, self._on_gripper_state,
                                     _driver_qos(s.gripper_state_reliability))
        if s.ee_pose_topic:
            self.create_subscription(PoseStamped, s.ee_pose_topic, self._on_ee_pose,
                                     _driver_qos(s.ee_pose_reliability))
        # Wall clock: diagnostics must keep coming when every driver topic has gone quiet.
        self.create_timer(1.0 / s.diagnostics_hz, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.was_ok = True
        self.zero_stamp_logged = False
        self.get_logger().info(
            f"robot_state up: {s.joint_states_topic} arm {self.core.arm} -> {self.core.model_arm}, "
            f"fingers {self.core.fingers} from {s.gripper_state_topic or s.joint_states_topic}, "
            f"ee pose from {s.ee_pose_topic or 'FK of ' + str(self.core.kin.path)}")

    def _refuse_collisions(self, s: RobotStateSettings) -> None:
        # Without a namespace the driver's /joint_states and the contract's joint_states are one
        # topic: the arm's own consumers (robot_state_publisher, MoveIt) would get our renamed
        # joints and this node its own output. The robot graph runs in a namespace for that.
        for driver, contract in ((s.joint_states_topic, C.JOINT_STATES), (s.gripper_state_topic, C.JOINT_STATES),
                                 (s.ee_pose_topic, C.EE_POSE)):
            if driver and self.resolve_topic_name(driver) == self.resolve_topic_name(contract):
                raise ValueError(
                    f"driver topic {driver!r} and the contract's {contract!r} are both "
                    f"{self.resolve_topic_name(contract)}: run robot_state in a namespace (the cell's, "
                    f"e.g. __ns:=/cell) or point the driver topic elsewhere")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_states(self, msg: JointState) -> None:
        try:
            state = self.core.joint_states(msg.name, msg.position, msg.velocity,
                                           codec.from_stamp(msg.header.stamp), self.now())
        except StateError as e:
            self.get_logger().error(f"dropped: {e}", throttle_duration_sec=1.0)
            return
        if self.core.zero_stamp_warned and not self.zero_stamp_logged:
            self.zero_stamp_logged = True  # the actor ages observations by stamp: say it once
            self.get_logger().warning(f"{self.s.joint_states_topic} or another driver topic has zero "
                                      "header stamps: stamping those on receipt (stamp_source: receipt "
                                      "says so explicitly)")
        if state is None:
            return  # another input is stale: the diagnostics say which
        self.pub_joints.publish(codec.joint_state_msg(state.names, state.position, state.velocity, state.stamp))
        self.pub_ee.publish(codec.pose_stamped_msg(state.ee_pos, state.ee_quat, state.ee_stamp, C.BASE_FRAME))

    def _on_gripper_state(self, msg: JointState) -> None:
        try:
            self.core.gripper_state(msg.name, msg.position, msg.velocity,
                                    codec.from_stamp(msg.header.stamp), self.now())
        except StateError as e:
            self.get_logger().error(f"dropped: {e}", throttle_duration_sec=1.0)

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        p, o = msg.pose.position, msg.pose.orientation
        try:
            self.core.ee_pose((p.x, p.y, p.z), (o.w, o.x, o.y, o.z), msg.header.frame_id,
                              codec.from_stamp(msg.header.stamp), self.now())
        except StateError as e:
            self.get_logger().error(f"dropped: {e}", throttle_duration_sec=1.0)

    def _publish_diagnostics(self) -> None:
        now = self.now()
        level, message, values = self.core.status(now)
        ok = level < 2
        if ok != self.was_ok:  # say it in the log too, once per change
            if ok:
                self.get_logger().info("driver topics fresh again: publishing")
            else:
                self.get_logger().warning(message)
            self.was_ok = ok
        self.pub_diag.publish(codec.diagnostics_msg(now, "robot_state", values, level, message))


def main(args=None) -> int:
    return run(RobotStateNode, args)


if __name__ == "__main__":
    main()
