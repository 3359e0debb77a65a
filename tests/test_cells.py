"""Several cells, one learner: two actors' transition streams in their own namespaces
(cell_a/..., cell_b/...) reach one learner node (`cells: cell_a,cell_b`), which keys each step
by its cell (the two actors number their episodes alike) and sends its policy to both."""
import json
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

CELLS = ("cell_a", "cell_b")
STEPS = 80  # per cell: past min_steps, so the learner trains and publishes a newer policy


def step(rng, t):
    return {"proprio": rng.normal(size=8).astype(np.float32), "object": rng.normal(size=7).astype(np.float32),
            "action": rng.uniform(-1, 1, 4).astype(np.float32), "reward": np.float32(0.0),
            "terminated": False, "truncated": False, "intervened": False, "policy_version": np.int64(0),
            "timestamp": float(t), "eval": False}


class TwoCells(SpunNode):
    def __init__(self):
        super().__init__("two_cells")
        self.pubs = {c: publisher(self.node, C.TRANSITIONS, namespace=c) for c in CELLS}
        self.policies = {c: [] for c in CELLS}
        for c in CELLS:
            subscription(self.node, C.POLICY, lambda m, c=c: self.policies[c].append(codec.decode_policy(m)[0]),
                         namespace=c)
        self.start()


def test_two_namespaced_cells_feed_one_learner(tmp_path):
    cells = TwoCells()
    learner = subprocess.Popen(
        [sys.executable, "-m", "robot_rl.nodes.learner", "--ros-args", "-p", "cells:=cell_a,cell_b",
         "-p", f"run_dir:={tmp_path}", "-p", "min_steps:=50", "-p", "publish_every:=10", "-p", "utd:=1.0"],
        stdout=open(tmp_path / "learner.log", "w"), stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(p.get_subscription_count() for p in cells.pubs.values()):
            time.sleep(0.1)
        rng = np.random.default_rng(0)
        for i in range(STEPS):  # both cells: episode 0, steps 0..STEPS-1
            for c in CELLS:
                cells.pubs[c].publish(codec.encode_transitions([step(rng, i * 0.1)], {"episode": 0, "index": i}))
            time.sleep(0.005)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not all(any(v > 0 for v in cells.policies[c]) for c in CELLS):
            time.sleep(0.2)
        assert all(cells.policies[c] for c in CELLS), (tmp_path / "learner.log").read_text()[-2000:]
        assert all(max(cells.policies[c]) > 0 for c in CELLS), "a trained policy reaches both cells"
    finally:
        learner.terminate()
        learner.wait(30)
        cells.close()
    summary = json.loads((tmp_path / "learner_summary.json").read_text())
    assert summary["received_by_cell"] == {"cell_a": STEPS, "cell_b": STEPS}
    assert len(summary["received"]) == 2 * STEPS, "steps with the same (episode, index) in two cells are both kept"
