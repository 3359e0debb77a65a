"""Actor node: messages in, robot_rl.control.actor_core out. The control loop (lock-step set
assembly, the chunk queue, evaluation scheduling, policy gating, e-stop latch, safety filter,
zarr logging) lives in the core; this class converts and publishes.

Triggers: `timer` (robot: rate_hz on the node clock) or `observation` (sim: one tick per complete
observation, in lock-step with the twin, so sim time runs as fast as compute allows).
Service `actor/clear_estop` (std_srvs/Trigger): releases a latched e-stop once the topic is false,
and a latched trip (guard.py: out-of-distribution observation, saturated commands) with it: one
operator act for every latched hold, so `robot-rl estop --clear` clears both.
"""
from __future__ import annotations

import json
import os

from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from robot_rl import codec, contract as C
from robot_rl.control.actor_core import ActorCore, ActorSettings
from robot_rl.nodes.ros import make_node_options, publisher, run, settings, subscription

CLEAR_ESTOP_SERVICE = "actor/clear_estop"


class ActorNode(Node):
    def __init__(self):
        super().__init__("actor", **make_node_options())
        s = settings(self, ActorSettings)
        self.core = ActorCore(s, self, cell=self.get_namespace().strip("/"))
        self.pub_twist = publisher(self, C.COMMAND_TWIST)
        self.pub_grip = publisher(self, C.COMMAND_GRIPPER)
        self.pub_transitions = publisher(self, C.TRANSITIONS)
        self.pub_diag = publisher(self, C.DIAGNOSTICS)
        self.pub_eval = publisher(self, C.EVALUATING)
        self.pub_eval.publish(Bool(data=False))
        sensor_qos = C.sensor_qos(s.sensor_reliability)
        for topic in self.core.required:
            subscription(self, topic, lambda m, t=topic: self.core.sensor(t, m), sensor_qos)
        subscription(self, C.TELEOP_ENGAGED, lambda m: self.core.set_engaged(m.data))
        subscription(self, C.TELEOP_GRIPPER, lambda m: self.core.teleop(C.TELEOP_GRIPPER, m))
        subscription(self, C.TELEOP_TWIST, lambda m: self.core.teleop(C.TELEOP_TWIST, m))
        subscription(self, C.POLICY, self.core.offer_policy)
        subscription(self, C.LEARNER_PROGRESS, lambda m: self.core.set_progress(m.data))
        subscription(self, C.ESTOP, lambda m: self.core.set_estop(m.data))
        self.create_service(Trigger, CLEAR_ESTOP_SERVICE, self._on_clear_estop)
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        if s.trigger == "timer":
            self.create_timer(1.0 / s.rate_hz, self.core.timer)
        else:  # lock-step: ticks come from observations; this only enforces the teleop wait
            self.create_timer(0.02, self.core.poll, clock=wall)
        self.create_timer(1.0, self._publish_diagnostics, clock=wall)
        self.get_logger().info(
            f"actor up: task={s.task} trigger={s.trigger} cameras={s.cameras or 'none (state)'} "
            f"action_dim={s.action.dim} run_dir={s.run_dir}")

    # ActorIO: what the core calls
    def command(self, twist, grip: float, stamp: float) -> None:
        self.pub_grip.publish(codec.gripper_msg(grip, stamp))  # the twin steps once both of this stamp are in
        self.pub_twist.publish(codec.twist_msg(twist, stamp, C.BASE_FRAME))

    def transition(self, msg) -> None:
        self.pub_transitions.publish(msg)

    def evaluating(self, flag: bool) -> None:
        self.pub_eval.publish(Bool(data=bool(flag)))

    def log(self, level: str, text: str) -> None:
        # one call site per severity: rclpy refuses one site logging at two severities
        if level == "error":
            self.get_logger().error(text)
        elif level == "warn":
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def learner_listening(self) -> bool:
        return self.count_subscribers(C.TRANSITIONS) > 0

    def teleop_present(self) -> bool:
        return self.count_publishers(C.TELEOP_TWIST) > 0

    def arm_listening(self) -> bool:
        return self.count_subscribers(C.COMMAND_TWIST) > 0

    # callbacks of its own
    def _on_clear_estop(self, _request, response):
        response.success, response.message = self.core.clear_estop()
        return response

    def _publish_diagnostics(self) -> None:
        values = self.core.diagnostics()
        level, message = self.core.diagnostics_status()
        self.pub_diag.publish(codec.diagnostics_msg(self.now(), "actor", values, level, message))

    def close(self) -> None:
        summary = self.core.close()
        if summary is not None:
            (self.core.run_dir / "actor_summary.json").write_text(json.dumps(summary, indent=1))


def main(args=None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return run(ActorNode, args)


if __name__ == "__main__":
    main()
