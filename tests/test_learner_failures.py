"""Failures reach the user: a learner that cannot start, or whose trainer died, ends its process
with the reason, and `robot-rl sim` stops non-zero saying which node and why (instead of a
learner that rejects every message forever, or a run that ends "budget spent", exit 0)."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
from conftest import SpunNode, own_domain_env  # noqa: E402

from robot_rl import codec, contract as C  # noqa: E402
from robot_rl.nodes.ros import publisher  # noqa: E402


def _step(i: int) -> dict:
    rng = np.random.default_rng(i)
    return {"proprio": rng.normal(size=8).astype(np.float32), "object": rng.normal(size=7).astype(np.float32),
            "action": rng.uniform(-1, 1, 4).astype(np.float32), "reward": np.float32(0), "terminated": False,
            "truncated": False, "intervened": False, "policy_version": np.int32(-1), "timestamp": 0.0, "eval": False}


def test_a_first_transition_that_does_not_fit_fails_the_learners_start_naming_the_key(tmp_path):
    """The learner expects 7-D actions (rotation on); the actor sends 4-D ones: no later message
    could fit, so the learner ends at once, naming 'action'."""
    learner = subprocess.Popen(
        [sys.executable, "-m", "robot_rl.nodes.learner", "--ros-args", "-p", "action.rotation:=true",
         "-p", f"run_dir:={tmp_path}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ))  # this test's domain: the sender below is on it
    actor = SpunNode("fake_actor")
    pub = publisher(actor.node, C.TRANSITIONS)
    actor.start()
    try:
        deadline, i = time.monotonic() + 90, 0
        while learner.poll() is None and time.monotonic() < deadline:
            pub.publish(codec.encode_transitions([_step(i)], {"episode": 0, "index": i}))
            i += 1
            time.sleep(0.2)
    finally:
        actor.close()
        if learner.poll() is None:
            learner.kill()
        out = learner.communicate(timeout=30)[0]
    assert learner.returncode not in (0, None), out[-3000:]
    assert "[learner] fatal: LearnerFailed: the first transition does not fit: transitions key 'action'" in out, \
        out[-3000:]


def test_a_trainer_exception_stops_robot_rl_sim_with_the_reason(tmp_path):
    """A real failure in a real update: a learning rate Adam cannot even apply (its step
    overflows float32) makes the first update raise. The run must end non-zero, naming the
    learner and the exception, well before its step budget."""
    run_dir = tmp_path / "run"
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli", "sim", "--steps", "3000", "--demos", "1", "--run-dir", str(run_dir),
         "-p", "eval_every:=0", "-p", "min_steps:=5", "-p", "agent.lr:=1.0e38"],
        capture_output=True, text=True, timeout=600, env=own_domain_env())
    assert r.returncode != 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "robot-rl sim: learner exited: LearnerFailed: trainer stopped after 0 updates: RuntimeError: " in r.stdout, \
        r.stdout[-3000:] + r.stderr[-2000:]
    assert "budget spent" not in r.stdout
    summary = (run_dir / "learner_summary.json").read_text()
    assert "RuntimeError" in summary  # the learner closed cleanly and recorded why it stopped
    assert time.monotonic() - t0 < 300
