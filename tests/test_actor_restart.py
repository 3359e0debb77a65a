"""An actor killed beside the robot (`robot-rl robot --twin`): the command adapter's watchdog
sends zero twists to Servo meanwhile, not the last command; the supervisor restarts the actor,
which reopens its store (the episode it had open closed as interrupted) and goes on; the steps
of both lives are in the store."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from geometry_msgs.msg import TwistStamped  # noqa: E402

from conftest import SpunNode, own_domain_env, wait_for  # noqa: E402
from robot_rl.nodes.ros import qos  # noqa: E402
from robot_rl import contract as C  # noqa: E402
from test_actor_core import onnx_policy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class ServoEar(SpunNode):
    """Listens where MoveIt Servo would: what reaches the arm, and when."""

    def __init__(self):
        super().__init__("servo_ear")
        self.got: list[tuple[float, float]] = []  # (arrival, vx)
        self.node.create_subscription(TwistStamped, "/servo_node/delta_twist_cmds",
                                      lambda m: self.got.append((time.monotonic(), m.twist.linear.x)), qos(C.Qos(depth=10)))
        self.start()


def test_a_killed_actor_leaves_the_arm_still_and_comes_back(tmp_path):
    env = own_domain_env()
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]  # the ear listens on the graph's domain
    policy = tmp_path / "plus_x.onnx"
    policy.write_bytes(onnx_policy([0.5] * 4))  # +x at 0.1 m/s
    ear = ServoEar()
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "robot_rl.cli", "robot", "--twin", "--policy", str(policy),
                             "--steps", "60", "--run-dir", str(run_dir)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        # the adapter re-sends at 50 Hz: 100 twists ~ 2 s ~ 20 steps of the first life
        wait_for(lambda: sum(vx > 0.05 for _, vx in ear.got) > 100, 90, "the policy's twists at Servo")
        actor_pid = json.loads((run_dir / "pids.json").read_text())["nodes"]["actor"]
        t_kill = time.monotonic()
        os.kill(actor_pid, signal.SIGKILL)
        wait_for(lambda: any(at > t_kill and vx == 0.0 for at, vx in ear.got), 5, "zero twists after the kill")
        zero_at = min(at for at, vx in ear.got if at > t_kill and vx == 0.0)
        assert zero_at - t_kill < 0.5, "the watchdog's zeros within 0.5 s"
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        ear.close()
    assert proc.returncode == 0, out[-3000:]
    assert "actor exited (killed by SIGKILL), restarted" in out
    # Once the watchdog has taken over, nothing but zeros until the new actor drives: a starting
    # actor takes well over a second (Python, rclpy, onnxruntime), a stale command of the dead one
    # would come within a few hundred ms. (The new actor's commands may be small: the workspace
    # clip near the box's +x face.)
    after = [(at - t_kill, vx) for at, vx in ear.got if at > zero_at]
    first_motion = next((dt for dt, vx in after if vx != 0.0), None)
    assert first_motion is not None and any(vx > 0.0 for _, vx in after), "the restarted actor drives again"
    assert first_motion > 1.0, f"a non-zero twist {first_motion:.2f} s after the kill: {after[:20]}"

    from robot_rl.data.store import EpisodeStore

    store = EpisodeStore.open(str(run_dir / "store.zarr"), "r")
    table = store.episode_table()
    assert table["interrupted"].any(), "the episode open at the kill is closed as interrupted"
    second_life = json.loads((run_dir / "actor_summary.json").read_text())["steps_logged"]
    assert second_life == 60 and store.n_steps >= 60 + 10, "both lives' steps are in the store"
    assert np.all(np.diff(table["end"]) > 0)
