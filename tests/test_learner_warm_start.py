"""The learner node continues a checkpoint (robot-rl pretrain's agent.pt, a run's
learner_checkpoint.pt): `robot-rl sim --init CKPT` trains that agent, not a fresh one, and a
checkpoint of another kind or observation layout is refused at start with the reason."""
import json
import subprocess
import sys

import pytest
import torch

pytest.importorskip("rclpy")
from conftest import own_domain_env  # noqa: E402

from robot_rl.learn import make_agent  # noqa: E402
from robot_rl.spec import ObsSpec  # noqa: E402

SMALL = {"actor_hidden": [32, 32], "critic_hidden": [32, 32], "n_critics": 2, "chunk_len": 4}


def _checkpoint(path, kind="flow", updates=1234):
    """An agent the graph's own config would never build (other sizes), with a known counter."""
    spec = ObsSpec({"proprio": (8,), "object": (7,)}, {"proprio": "<f4", "object": "<f4"})
    agent = make_agent(kind, spec, 4, SMALL, device="cpu")
    agent.num_updates = updates
    agent.save(path)
    return path


def test_sim_trains_the_given_checkpoint(tmp_path):
    ckpt = _checkpoint(tmp_path / "agent.pt")
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli", "sim", "--steps", "30", "--demos", "2", "--kind", "flow",
         "--init", str(ckpt), "--run-dir", str(run_dir), "-p", "min_steps:=100000", "-p", "eval_every:=0"],
        capture_output=True, text=True, timeout=600, env=own_domain_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((run_dir / "learner_summary.json").read_text())
    assert summary["warm_started_at_updates"] == 1234 and summary["updates"] == 0
    # No update ran (min_steps), so the learner's final checkpoint is the given agent, weights and all.
    mine, theirs = torch.load(ckpt, weights_only=True), torch.load(run_dir / "learner_checkpoint.pt", weights_only=True)
    assert theirs["config"]["actor_hidden"] == [32, 32]
    assert mine["nets"].keys() == theirs["nets"].keys()
    assert all(torch.equal(mine["nets"][k], theirs["nets"][k]) for k in mine["nets"])
    assert "warm start from" in (run_dir / "logs" / "learner.log").read_text()


@pytest.mark.parametrize("kind, cameras, why", [
    ("sac", "''", "does not fit: kind flow, this learner: sac"),
    ("flow", "wrist", "does not fit: observations ['object', 'proprio'], this learner: ['proprio', 'wrist']"),
])
def test_a_checkpoint_that_does_not_fit_is_refused_at_start(tmp_path, kind, cameras, why):
    ckpt = _checkpoint(tmp_path / "agent.pt")
    proc = subprocess.run(
        [sys.executable, "-m", "robot_rl.nodes.learner", "--ros-args", "-p", f"init_checkpoint:={ckpt}",
         "-p", f"kind:={kind}", "-p", f"policy_cameras:={cameras}", "-p", f"run_dir:={tmp_path}"],
        capture_output=True, text=True, timeout=120, env=own_domain_env())
    assert proc.returncode != 0
    assert why in proc.stdout + proc.stderr, proc.stderr[-2000:]


def test_a_missing_checkpoint_is_named(tmp_path):
    r = subprocess.run([sys.executable, "-m", "robot_rl.cli", "sim", "--init", str(tmp_path / "nope.pt"),
                        "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "no checkpoint at" in r.stderr
