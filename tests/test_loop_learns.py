"""Issue 10's promise in short: through the live ROS graph, with a scripted human, the robot
gets better while it runs. Slow (a couple of minutes on 2 cores): pytest -m slow."""
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import own_domain_env
import zarr

pytestmark = pytest.mark.slow
pytest.importorskip("rclpy")


def test_the_loop_learns_pick_cube_through_the_graph(tmp_path):
    run_dir = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli", "sim", "--task", "pick_cube", "--steps", "2000", "--seed", "3",
         "--run-dir", str(run_dir), "-p", "eval_every:=400", "-p", "eval_episodes:=5",
         # the first evaluation (after the first episode) then measures the untrained warm-start actor
         "-p", "min_steps:=150"],
        capture_output=True, text=True, timeout=1200, env=own_domain_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    actor = json.loads((run_dir / "actor_summary.json").read_text())
    learner = json.loads((run_dir / "learner_summary.json").read_text())
    teleop = json.loads((run_dir / "teleop_summary.json").read_text())
    root = zarr.open_group(str(run_dir / "store.zarr"), mode="r")
    n = root["data/action"].shape[0]
    # every logged transition reached the learner
    assert n == 2000 and len(learner["received"]) == n and learner["trainer_error"] is None
    # at least three policy versions were swapped in and acted
    versions = np.unique(root["data/policy_version"][:])
    assert (versions >= 0).sum() >= 3
    # the scripted human stepped in and let go, and its steps are flagged (never during eval)
    assert teleop["takeovers"] >= 1 and teleop["releases"] >= 1
    intervened, is_eval = root["data/intervened"][:].astype(bool), root["data/eval"][:].astype(bool)
    assert intervened.any() and not (intervened & is_eval).any()
    # evaluation after training beats the warm-start policy's
    evals = actor["evaluations"]
    assert len(evals) >= 2, evals
    assert evals[0]["policy_version"] == 0  # the warm-start actor, before any update
    assert evals[-1]["success_rate"] > evals[0]["success_rate"], evals
