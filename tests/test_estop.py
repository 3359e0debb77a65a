"""The e-stop through real topics: `robot-rl estop` makes the actor's commands zero within 0.5 s,
they stay zero until `robot-rl estop --clear`, a false on the topic alone does not release,
and an actor restarted meanwhile still holds."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from conftest import SpunNode  # noqa: E402
from std_msgs.msg import Bool  # noqa: E402

from robot_rl import codec, contract as C  # noqa: E402
from robot_rl.nodes.estop import send_estop  # noqa: E402
from robot_rl.nodes.ros import publisher, subscription  # noqa: E402
from test_actor_core import observation, onnx_policy  # noqa: E402


class Robot(SpunNode):
    """Publishes the robot's sensors at 20 Hz with wall stamps; records the actor's twists."""

    def __init__(self):
        super().__init__("robot_stand_in")
        self.pubs = {t: publisher(self.node, t) for t in (C.JOINT_STATES, C.EE_POSE, C.OBJECT_POSES, C.TASK_STATUS)}
        self.estop = publisher(self.node, C.ESTOP)  # an e-stop source (a button's driver, the teleop)
        self.twists: list[tuple[float, float]] = []  # (arrival, vx)
        subscription(self.node, C.COMMAND_TWIST, lambda m: self.twists.append((time.monotonic(), m.twist.linear.x)))
        self.node.create_timer(0.05, self._publish)
        self.start()

    def _publish(self):
        msgs = observation(self.node.get_clock().now().nanoseconds * 1e-9)
        for topic, msg in msgs.items():
            self.pubs[topic].publish(msg)

    def moving_after(self, t0: float) -> list[float]:
        return [vx for at, vx in self.twists if at > t0]


def start_actor(run_dir, policy):
    return subprocess.Popen(
        [sys.executable, "-m", "robot_rl.nodes.actor", "--ros-args", "-p", "trigger:=timer", "-p", f"run_dir:={run_dir}",
         "-p", "use_sim_time:=false", "-p", "wait_for_learner:=false", "-p", "learner_sync_lag:=0",
         "-p", "eval_every:=0", "-p", f"policy_file:={policy}"],
        stdout=open(run_dir / "actor.log", "a"), stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def wait(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_estop_holds_latches_across_a_restart_and_needs_a_clear(tmp_path):
    policy = tmp_path / "actor.onnx"
    policy.write_bytes(onnx_policy([0.5] * 4))  # +x at 0.1 m/s
    robot = Robot()
    actor = start_actor(tmp_path, policy)
    try:
        assert wait(lambda: any(vx > 0.05 for _, vx in robot.twists)), (tmp_path / "actor.log").read_text()[-2000:]
        assert wait(lambda: robot.estop.get_subscription_count() > 0)
        t_sent = time.monotonic()
        robot.estop.publish(Bool(data=True))
        assert wait(lambda: any(at > t_sent and vx == 0.0 for at, vx in robot.twists), 5)
        stopped = [at for at, vx in robot.twists if at > t_sent and vx == 0.0]
        assert stopped[0] - t_sent < 0.5, "zero twists within 0.5 s of the e-stop"
        result = {}
        threading.Thread(target=lambda: result.update(r=send_estop(True, timeout_s=15))).start()
        assert wait(lambda: "r" in result, 20) and result["r"][0], result  # the CLI sees it confirmed
        t_held = stopped[0] + 0.05
        time.sleep(1.0)
        assert robot.moving_after(t_held) and max(robot.moving_after(t_held)) == 0.0

        actor.terminate(); actor.wait(20)  # a restarted actor still holds
        actor = start_actor(tmp_path, policy)
        t_restart = time.monotonic()
        assert wait(lambda: len(robot.moving_after(t_restart)) > 20)
        assert max(robot.moving_after(t_restart)) == 0.0, "the latch survives the restart"

        ok, why = send_estop(False, timeout_s=15)  # false on the topic, then the clear service
        assert ok, why
        assert wait(lambda: any(vx > 0.05 for vx in robot.moving_after(t_restart))), "moving again after the clear"
    finally:
        actor.terminate()
        actor.wait(20)
        robot.close()


def test_estop_without_a_graph_says_so():
    ok, why = send_estop(True, timeout_s=1.0)
    assert not ok and "no node listens" in why
