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


def _sim(run_dir, *args):
    proc = subprocess.run([sys.executable, "-m", "robot_rl.cli", "sim", "--kind", "flow", "--run-dir", str(run_dir),
                           "-p", "eval_every:=0", *args], capture_output=True, text=True, timeout=600,
                          env=own_domain_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return json.loads((run_dir / "learner_summary.json").read_text())


def test_a_run_is_resumed_from_its_checkpoint_and_stores(tmp_path):
    """Run A trains a small agent; run B resumes it: A's checkpoint (weights, network config,
    update counter) and A's stores (its demos, its experience) in replay."""
    a, b = tmp_path / "a", tmp_path / "b"
    first = _sim(a, "--steps", "60", "--demos", "2", "-p", "min_steps:=20", "-p", "agent.actor_hidden:=[32,32]")
    ck_a = torch.load(a / "learner_checkpoint.pt", weights_only=True)
    assert first["updates"] > 0 and ck_a["counters"]["num_updates"] > 0
    second = _sim(b, "--steps", "30", "--init", str(a / "learner_checkpoint.pt"),
                  "--demos", f"{a / 'demos.zarr'},{a / 'store.zarr'}", "-p", "min_steps:=100000")
    assert second["warm_started_at_updates"] == ck_a["counters"]["num_updates"] and second["updates"] == 0
    # No update ran in B (min_steps): its final checkpoint is A's agent, weights, config and all.
    ck_b = torch.load(b / "learner_checkpoint.pt", weights_only=True)
    assert ck_b["config"]["actor_hidden"] == [32, 32] and ck_a["nets"].keys() == ck_b["nets"].keys()
    assert all(torch.equal(ck_a["nets"][k], ck_b["nets"][k]) for k in ck_a["nets"])
    log = (b / "logs" / "learner.log").read_text()
    assert "warm start from" in log
    assert f"replay from {a / 'demos.zarr'}: 2 episodes" in log
    logged = json.loads((a / "actor_summary.json").read_text())["steps_logged"]
    assert f"replay from {a / 'store.zarr'}: " in log and f", {logged} steps" in log and logged >= 59


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
