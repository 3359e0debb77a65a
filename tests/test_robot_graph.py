"""The robot graph end to end against the twin posing as the cell's drivers: `robot-rl robot
--twin` brings up the camera node (on the twin's MJPEG stream), robot_state (FK), the actor on
its wall-clock timer and the command adapters, in the `cell` namespace."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

pytest.importorskip("rclpy")

from conftest import own_domain_env  # noqa: E402
from test_actor_core import onnx_policy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def robot(tmp_path, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "robot_rl.cli", "robot", "--twin", "--cameras", "front",
                           "--run-dir", str(tmp_path / "run"), *args],
                          env=own_domain_env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_a_policy_moves_the_twin_through_the_robot_graph(tmp_path):
    policy = tmp_path / "plus_x.onnx"
    policy.write_bytes(onnx_policy([0.5] * 4))  # +x at 0.1 m/s, gripper open
    p = robot(tmp_path, "--policy", str(policy), "--steps", "25")
    logs = "\n".join(f"--- {f.name}\n{f.read_text()[-1500:]}" for f in sorted((tmp_path / "run/logs").glob("*.log")))
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:] + logs
    root = zarr.open_group(str(tmp_path / "run/store.zarr"), mode="r")
    x = root["data/proprio"][:, 0]
    assert len(x) == 25
    assert x[-1] - x[0] > 0.1 * 0.1 * 10, "the ee moved +x at ~0.1 m/s: FK, actor, Servo adapter and twin are wired"
    # after the startup holds and the policy's ease-in (config/robot.yaml ease_in_ticks: 5)
    assert np.all(root["data/action"][10:, 0] > 0.4), "the executed actions are the policy's"
    camera_log = (tmp_path / "run/logs/camera_front.log").read_text()
    assert "camera/front/image_raw" in camera_log and "128x96" in camera_log


@pytest.mark.slow
def test_a_pretrained_policy_picks_through_the_robot_graph(tmp_path):
    """The acceptance run, short: pre-train in the twin, then >= 80 % of 10 episodes through the
    robot graph (bench/bench_robot_graph.py runs 20 and the lock-step sim graph beside it)."""
    env = own_domain_env()
    subprocess.run([sys.executable, "-m", "robot_rl.cli", "pretrain", "--task", "pick_cube", "--config",
                    str(ROOT / "bench/configs/small.yaml"), "--utd", "2", "--env-steps", "3000",
                    "--eval-every", "3000", "--out", str(tmp_path / "pre")],
                   env=env, capture_output=True, text=True, timeout=900, check=True, cwd=ROOT)
    p = robot(tmp_path, "--policy", str(tmp_path / "pre/actor.onnx"), "--episodes", "10", timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    s = json.loads((tmp_path / "run/actor_summary.json").read_text())
    assert s["episodes"] == 10 and s["successes"] >= 8, s
