"""Twin driver node: the twin posing as a real cell's drivers (robot_rl.twin.driver_cell), so
the robot graph runs its real code path with no hardware: franka_ros2-style /joint_states, MoveIt
Servo's delta-twist input, a position-controlled gripper, camera frames as MJPEG streams read by
the camera node's OpenCV driver, plus a tracker's object_poses and a reward source's task/status.
Wall clock, no /clock, no lock-step.
"""
from __future__ import annotations


from geometry_msgs.msg import TwistStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import csv_list, make_node_options, publisher, qos, run, settings, subscription
from robot_rl.twin.driver_cell import DriverCell, DriverCellSettings

DRIVER_QOS = C.Qos(depth=10)  # system default, as ros2_control's and Servo's topics are


class TwinDriverNode(Node):
    def __init__(self):
        super().__init__("twin_driver", **make_node_options())
        s = settings(self, DriverCellSettings)
        self.cell = DriverCell(s, log=self.get_logger().error)
        from robot_rl.twin.mjpeg import MjpegServer

        self.cameras = csv_list(s.cameras)
        self.mjpeg = MjpegServer(s.mjpeg_port) if self.cameras else None
        self.pub_joints = self.create_publisher(JointState, s.joint_states_topic, qos(DRIVER_QOS))
        self.pub_objects = publisher(self, C.OBJECT_POSES)
        self.pub_status = publisher(self, C.TASK_STATUS)
        self.create_subscription(TwistStamped, s.servo_topic, self._on_servo, qos(DRIVER_QOS))
        self.create_subscription(Float64MultiArray, s.gripper_topic, self._on_gripper, qos(DRIVER_QOS))
        subscription(self, C.ESTOP, lambda m: setattr(self.cell, "estop", bool(m.data)))
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(1.0 / s.physics_hz, self._on_physics, clock=wall)
        if self.cameras:
            self.create_timer(1.0 / s.camera_hz, self._on_camera, clock=wall)
        served = ", ".join(self.mjpeg.url(c) for c in self.cameras) if self.cameras else "none"
        self.get_logger().info(
            f"twin as the cell's drivers: {s.task}, joints {self.cell.joint_names[0]}.., servo {s.servo_topic} "
            f"({s.servo_command_in_type}), gripper {s.gripper_topic}, cameras {served}")

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_servo(self, msg: TwistStamped) -> None:
        self.cell.servo(codec.twist_from_msg(msg), codec.from_stamp(msg.header.stamp), msg.header.frame_id)

    def _on_gripper(self, msg: Float64MultiArray) -> None:
        self.cell.gripper(list(msg.data))

    def _on_physics(self) -> None:
        t = self.now()
        self.cell.step(t)
        names, pos, vel = self.cell.joint_state()
        self.pub_joints.publish(codec.joint_state_msg(names, pos, vel, t))
        self.pub_objects.publish(codec.pose_array_msg(self.cell.object_poses(), t, C.BASE_FRAME))
        self.pub_status.publish(codec.status_msg(t, self.cell.status()))

    def _on_camera(self) -> None:
        for cam in self.cameras:
            self.mjpeg.publish(cam, self.cell.render(cam))

    def close(self) -> None:
        if self.mjpeg is not None:
            self.mjpeg.close()


def main(args=None) -> int:
    return run(TwinDriverNode, args)


if __name__ == "__main__":
    main()
