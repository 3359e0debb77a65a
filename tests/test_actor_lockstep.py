"""The actor node in lock-step, driven by this test as twin and teleop over real DDS: the human's
engaged flag travels on its own topic, so the actor must not act on a teleop answer before the
flag that goes with it has arrived (a late flag would label a human's step as the policy's)."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from conftest import SpunNode  # noqa: E402
from robot_rl import codec, contract as C  # noqa: E402
from robot_rl.nodes.ros import publisher, subscription  # noqa: E402


class TwinAndHuman(SpunNode):
    def __init__(self):
        from std_msgs.msg import Bool

        super().__init__("lockstep_test")
        self.Bool = Bool
        self.sensors = {t: publisher(self.node, t)
                        for t in (C.JOINT_STATES, C.EE_POSE, C.OBJECT_POSES, C.TASK_STATUS)}
        self.twist = publisher(self.node, C.TELEOP_TWIST)
        self.grip = publisher(self.node, C.TELEOP_GRIPPER)
        self.engaged = publisher(self.node, C.TELEOP_ENGAGED)
        self.commands: dict[int, tuple[np.ndarray, float]] = {}
        subscription(self.node, C.COMMAND_TWIST, self._on_command)
        self.start()

    def _on_command(self, msg):
        self.commands[codec.stamp_key(msg.header.stamp)] = (codec.twist_from_msg(msg), time.monotonic())

    def observe(self, i: int) -> float:
        t = 1.0 + 0.1 * i
        joints = [f"joint{j}" for j in range(1, 8)] + [C.GRIPPER_JOINT]
        self.sensors[C.JOINT_STATES].publish(codec.joint_state_msg(joints, [0.0] * 7 + [0.04], [0.0] * 8, t))
        self.sensors[C.EE_POSE].publish(codec.pose_stamped_msg([0.5, 0.0, 0.2], [0, 1, 0, 0], t, C.BASE_FRAME))
        self.sensors[C.OBJECT_POSES].publish(codec.pose_array_msg([([0.5, 0.1, 0.02], [1, 0, 0, 0])], t, C.BASE_FRAME))
        self.sensors[C.TASK_STATUS].publish(codec.status_msg(t, dict(
            reward=0.0, terminated=False, truncated=False, success=False, episode=0, step=i)))
        return t

    def answer(self, t: float, twist, grip: float, engaged: bool, flag_delay_s: float) -> float:
        """The teleop's answer with its flag sent late; returns when the flag went out."""
        self.grip.publish(codec.gripper_msg(grip, t))
        self.twist.publish(codec.twist_msg(np.asarray(twist, float), t, C.BASE_FRAME))
        time.sleep(flag_delay_s)
        sent = time.monotonic()
        self.engaged.publish(self.Bool(data=engaged))
        return sent

    def command(self, t: float, timeout: float = 10.0):
        key = codec.stamp_key(codec.to_stamp(t))
        deadline = time.monotonic() + timeout
        while key not in self.commands and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.commands.get(key)


@pytest.fixture
def actor_and_world(tmp_path):
    world = TwinAndHuman()
    proc = subprocess.Popen(
        [sys.executable, "-m", "robot_rl.nodes.actor", "--ros-args", "-p", "trigger:=observation",
         "-p", f"run_dir:={tmp_path}", "-p", "use_sim_time:=false", "-p", "teleop_wait_s:=10.0",
         "-p", "safety.stale_timeout_s:=1000.0", "-p", "wait_for_learner:=false"],
        stdout=open(tmp_path / "actor.log", "w"), stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                world.node.count_subscribers(C.TASK_STATUS) == 0 or world.node.count_subscribers(C.TELEOP_ENGAGED) == 0
                or world.node.count_publishers(C.COMMAND_TWIST) == 0):
            time.sleep(0.1)
        time.sleep(0.5)
        yield world, tmp_path
    finally:
        proc.terminate()
        proc.wait(20)
        world.close()


def test_a_late_engaged_flag_is_waited_for_in_both_directions(actor_and_world):
    world, run_dir = actor_and_world
    human = np.array([0.1, 0.0, 0.0, 0.0, 0.0, 0.0])  # the human pushes +x; no policy loaded
    cases = [(human, True), (human, True), (np.zeros(6), False), (human, True)]
    for i, (twist, engaged) in enumerate(cases):
        t = world.observe(i)
        flag_sent = world.answer(t, twist, 1.0 if engaged else -1.0, engaged, flag_delay_s=0.4)
        got = world.command(t)
        assert got is not None, (run_dir / "actor.log").read_text()[-2000:]
        cmd, at = got
        assert at >= flag_sent, f"step {i}: the actor acted before the human's flag arrived"
        # Engaged: the human's twist goes out (safety-filtered); released: the policy's hold.
        assert (cmd[0] > 0.05) == engaged, (i, cmd)
