"""A pixel policy through the whole graph (`robot-rl sim --cameras wrist`): the demos, the
actor's transitions, the learner's replay and the ONNX actor all use proprio + the wrist camera
and no object pose (robot_rl.spec.policy_obs_keys), and a learner-trained pixel policy reaches
the actor."""
import json
import subprocess
import sys

import pytest
from conftest import own_domain_env
import zarr

pytest.importorskip("rclpy")

STEPS = 120


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pixels") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli", "sim", "--task", "pick_cube", "--steps", str(STEPS),
         "--cameras", "wrist", "--image-size", "32", "--demos", "2", "--run-dir", str(run_dir),
         "-p", "eval_every:=0", "-p", "publish_every:=10", "-p", "min_steps:=20",
         "-p", "agent.conv_channels:=[8,8]", "-p", "agent.image_feature_dim:=16"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
        env=own_domain_env())
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:]
    return run_dir


def test_every_pixel_transition_is_accepted_and_trained_on(pixel_run):
    learner = json.loads((pixel_run / "learner_summary.json").read_text())
    root = zarr.open_group(str(pixel_run / "store.zarr"), mode="r")
    assert learner["rejected"] == 0 and learner["trainer_error"] is None
    assert len(learner["received"]) == root["data/action"].shape[0] >= STEPS - 1
    assert learner["updates"] > 0


def test_the_store_holds_camera_frames_not_the_object_pose(pixel_run):
    data = zarr.open_group(str(pixel_run / "store.zarr"), mode="r")["data"]
    assert "object" not in data and "proprio" in data
    frames = data["wrist"]
    assert frames.shape[1:] == (32, 32, 3) and str(frames.dtype) == "uint8"
    assert frames[:10].std() > 0


def test_a_trained_pixel_policy_reaches_the_actor(pixel_run):
    actor = json.loads((pixel_run / "actor_summary.json").read_text())
    assert max(actor["versions_used"]) >= 1
    assert "policy rejected" not in (pixel_run / "logs" / "actor.log").read_text()
