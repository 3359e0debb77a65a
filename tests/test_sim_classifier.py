"""`robot-rl sim --reward classifier`: the reward classifier, not the twin's check, ends episodes
and gives the reward, as on a robot; the twin resets the scene when told and records its own
check as ground truth, which measures the run (robot_rl/reward/ground_truth.py)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import own_domain_env

from robot_rl.reward.status import ClassifierStatus

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- plain code
def test_auto_reset_starts_the_next_episode_on_the_next_frame_and_rearms():
    st = ClassifierStatus(k=2, auto_reset=True)
    for positive in (False, True):
        values, _ = st.frame(positive)
        assert not values["terminated"]
    values, said = st.frame(True)
    assert values["terminated"] and values["success"] and values["episode"] == 0 and said
    # the scene reset itself: the next frame is step 0 of episode 1, and a success still in view
    # (positive frames) cannot end it before one negative frame re-arms the classifier
    values, _ = st.frame(True)
    assert values["episode"] == 1 and values["step"] == 0 and not values["terminated"]
    values, _ = st.frame(True)
    assert not values["terminated"]
    st.frame(False)
    st.frame(True)
    values, _ = st.frame(True)
    assert values["terminated"] and values["episode"] == 1


def test_without_auto_reset_the_person_starts_the_next_episode():
    st = ClassifierStatus(k=1)
    st.frame(False)
    st.frame(True)
    for _ in range(3):
        values, _ = st.frame(False)
        assert values["terminated"] and values["episode"] == 0  # waits for the person's reset


def test_the_classifier_sim_graph_resolves_and_its_params_are_settings():
    import dataclasses
    import importlib

    from robot_rl.graph import sim_graph

    nodes, params = sim_graph("classifier")
    names = [n.name for n in nodes]
    assert "reward_classifier" in names and names.index("reward_classifier") < names.index("twin")
    merged: dict = {}
    for path in params:
        for section, body in yaml.safe_load(Path(path).read_text()).items():
            merged.setdefault(section, {}).update(body["ros__parameters"])
    assert merged["twin"]["success_check"] == "external" and merged["reward_classifier"]["auto_reset"] is True
    for spec in nodes:
        mod = importlib.import_module(spec.module)
        found = [v for k, v in vars(mod).items() if k.endswith("Settings") and dataclasses.is_dataclass(v)
                 and v.__module__ == spec.module]
        if found:
            fields = {f.name for f in dataclasses.fields(found[0])} | {"use_sim_time"}
            assert not set(merged.get(spec.name, {})) - fields, spec.name
    assert [n.name for n in sim_graph("twin")[0]] == [n for n in names if n != "reward_classifier"]
    with pytest.raises(ValueError, match="twin or classifier"):
        sim_graph("operator")


def test_ground_truth_report_pairs_store_and_twin_episodes(tmp_path):
    from robot_rl.data.store import EpisodeStore
    from robot_rl.reward.ground_truth import ground_truth_report

    store = EpisodeStore.create(str(tmp_path / "store.zarr"), {"proprio": ((2,), "<f4"), "action": ((3,), "<f4")})
    # (length, source, declared success, twin's check)
    episodes = [(3, "policy", True, True), (2, "eval", True, False), (4, "eval", False, True),
                (2, "eval", True, True), (5, "eval", False, False)]
    for length, source, declared, _ in episodes:
        store.begin_episode(source=source)
        for _ in range(length):
            store.append_step({"proprio": np.zeros(2, np.float32), "action": np.zeros(3, np.float32),
                               "reward": np.float32(0), "terminated": False, "truncated": False,
                               "intervened": False, "policy_version": 0, "timestamp": 0.0, "eval": source == "eval"})
        store.end_episode({"proprio": np.zeros(2, np.float32)}, success=declared)
    store.close()
    truth = [{"episode": i, "steps": n, "declared_success": d, "twin_success": t} for i, (n, _, d, t) in enumerate(episodes)]
    (tmp_path / "twin_ground_truth.json").write_text(json.dumps({"episodes": truth}))
    (tmp_path / "actor_summary.json").write_text(json.dumps({"evaluations": [
        {"train_steps": 3, "episodes": 2, "success_rate": 0.5}, {"train_steps": 3, "episodes": 2, "success_rate": 0.5}]}))
    r = ground_truth_report(tmp_path)
    assert r["curve"] == [{"train_steps": 3, "declared": 0.5, "twin": 0.5}, {"train_steps": 3, "declared": 0.5, "twin": 0.5}]
    assert r["episode_confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 1, "precision": 2 / 3, "recall": 2 / 3}
    truth[2]["steps"] = 5  # another run's episodes: refused, not silently paired
    (tmp_path / "twin_ground_truth.json").write_text(json.dumps({"episodes": truth}))
    with pytest.raises(ValueError, match="store episode 2"):
        ground_truth_report(tmp_path)


# ---------------------------------------------------------------- the graph, over DDS
SIZE = 32
STEPS = 200
MAX_EPISODE_STEPS = 60


@pytest.fixture(scope="module")
def classifier_model(tmp_path_factory):
    """A small classifier trained in the twin here (wrist camera at 32 px): good enough to end
    most of the expert's successful episodes, which is all the wiring test needs."""
    from robot_rl.reward.dataset import record_twin
    from robot_rl.reward.train import TrainConfig, train

    out = tmp_path_factory.mktemp("clf")
    record_twin(str(out / "success.zarr"), 30, image_size=SIZE, hold=5, seed=0)
    record_twin(str(out / "trunc.zarr"), 15, image_size=SIZE, max_steps=20, seed=2000)
    record_twin(str(out / "wander.zarr"), 10, image_size=SIZE, max_steps=30, seed=6000, operator="wander")
    train([str(out / p) for p in ("success.zarr", "trunc.zarr", "wander.zarr")], str(out / "model"),
          TrainConfig(steps=500, seed=0), log=lambda s: None)
    return out / "model" / "classifier.onnx"


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory, classifier_model):
    run_dir = tmp_path_factory.mktemp("sim_clf") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli", "sim", "--task", "pick_cube", "--steps", str(STEPS),
         "--cameras", "wrist", "--image-size", str(SIZE), "--demos", "2", "--run-dir", str(run_dir),
         "--reward", "classifier", "--classifier", str(classifier_model),
         "-p", f"max_episode_steps:={MAX_EPISODE_STEPS}", "-p", "eval_every:=0", "-p", "publish_every:=10",
         "-p", "min_steps:=20", "-p", "agent.conv_channels:=[8,8]", "-p", "agent.image_feature_dim:=16",
         # the scripted human drives every step, so that episodes succeed in this short run
         "-p", "teleop/takeover.always:=true"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, env=own_domain_env())
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:]
    return run_dir, proc.stdout


def test_the_classifier_ends_the_episodes_and_the_twin_follows(classifier_run):
    from robot_rl.data.store import EpisodeStore
    from robot_rl.reward.ground_truth import ground_truth_report

    run_dir, out = classifier_run
    truth = json.loads((run_dir / "twin_ground_truth.json").read_text())["episodes"]
    table = EpisodeStore.open(str(run_dir / "store.zarr")).episode_table()
    assert len(truth) >= 3
    report = ground_truth_report(run_dir)  # raises unless store and twin hold the same episodes
    # the budget may run out between the twin's reset and the actor closing that episode
    assert report["episodes"] >= len(truth) - 1
    clf = json.loads((run_dir / "reward_classifier_summary.json").read_text())
    declared = [e for e, _ in clf["declared_by_classifier"]]
    for i, t in enumerate(truth[:report["episodes"]]):
        # the outcome in the store is the classifier's, episode by episode ...
        assert bool(table["success"][i]) == t["declared_success"] == (t["episode"] in declared)
        # ... an episode not declared a success ran to the step limit: the twin's own success
        # check ended nothing
        assert t["declared_success"] or t["steps"] == MAX_EPISODE_STEPS
    assert any(t["declared_success"] for t in truth), "the classifier never declared a success"
    # (whether its successes were real is the bench's question: bench/bench_sim_classifier.py)
    assert "declared by the classifier / by the twin's check" in out
    learner = json.loads((run_dir / "learner_summary.json").read_text())
    assert learner["rejected"] == 0 and learner["trainer_error"] is None and learner["updates"] > 0


def test_a_classifier_camera_the_policy_does_not_see_is_refused(classifier_model, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli", "sim", "--cameras", "", "--reward", "classifier",
         "--classifier", str(classifier_model), "--run-dir", str(tmp_path / "r"), "--demos", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, env=own_domain_env())
    assert proc.returncode != 0 and "add it to --cameras" in proc.stdout
