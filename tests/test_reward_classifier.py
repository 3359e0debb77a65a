"""Reward classifier: labels from episode outcomes, threshold picking, hysteresis with the
operator's keys as plain code; then a small classifier trained on episodes recorded in the twin
from the wrist camera (real zarr, real torch, real onnxruntime) that must tell success from
failure on held-out episodes; then the node over DDS, fed those frames, answering on task/status
exactly as the plain logic does.

Sizes (kept small: the machine is shared): 32x32 wrist frames, 14 successful + 10 failed
episodes (~600 frames), 400 training steps."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data.store import EpisodeStore
from robot_rl.reward.classifier import OnnxClassifier, confusion, pick_threshold
from robot_rl.reward.dataset import (ClassifierDataError, Frames, check_trainable, downsample, load_frames,
                                     split_episodes)
from robot_rl.reward.status import ClassifierStatus, episode_outcomes

SIZE = 32


# --- plain code ----------------------------------------------------------------------------


def test_pick_threshold_best_recall_at_target_precision():
    # scores high to low: + + + - + + - - ; at 0.98 precision the best cut keeps the top 3
    scores = np.array([0.99, 0.95, 0.9, 0.85, 0.8, 0.7, 0.3, 0.1])
    labels = np.array([1, 1, 1, 0, 1, 1, 0, 0], bool)
    out = pick_threshold(scores, labels, 0.98)
    assert out["reached"] and out["threshold"] == 0.9
    assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (3, 0, 2, 3) and out["recall"] == 0.6
    # at 0.8 precision the cut under the fifth positive (4 of 5 right = 0.8... 5/6 = 0.83) wins
    out = pick_threshold(scores, labels, 0.8)
    assert out["threshold"] == 0.7 and out["recall"] == 1.0 and out["precision"] == pytest.approx(5 / 6)
    # unreachable: the best precision it can get, flagged
    out = pick_threshold(np.array([0.9, 0.8]), np.array([0, 1], bool), 0.98)
    assert not out["reached"] and out["precision"] == 0.5
    with pytest.raises(ValueError, match="no positive"):
        pick_threshold(scores, np.zeros(8, bool))
    c = confusion(scores, labels, 0.5)
    assert (c["tp"], c["fp"], c["fn"], c["tn"]) == (5, 1, 0, 2)


def test_downsample_block_mean_and_clear_size_errors():
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2, :2] = 200
    img[0, 0] = 100  # block mean (100 + 3 * 200) / 4 = 175
    out = downsample(img, (2, 2))
    assert out.shape == (2, 2, 3) and out[0, 0, 0] == 175 and out[1, 1, 0] == 0
    assert downsample(img, (4, 4)) is img
    with pytest.raises(ValueError, match="image is 4x4, the classifier takes 3x3"):
        downsample(img, (3, 3))
    with pytest.raises(ValueError, match="uint8"):
        downsample(img.astype(np.float32), (2, 2))


def test_hysteresis_needs_k_consecutive_frames():
    st = ClassifierStatus(k=3)
    seq = [False, True, True, False, True, True]  # never 3 in a row
    out = [st.frame(p)[0] for p in seq]
    assert not any(s["terminated"] for s in out) and [s["step"] for s in out] == list(range(6))
    vals, said = st.frame(True)  # the third in a row
    assert vals["terminated"] and vals["success"] and vals["reward"] == 1.0 and vals["step"] == 6
    assert said[0] == "info" and "3 consecutive success frames" in said[1]
    assert st.declared_at == [(0, 6)]
    # waiting for the person: frames change nothing, negative or positive
    assert all(st.frame(p)[0] == vals for p in (False, True, True, True))


def test_rearm_after_reset_needs_a_negative_frame():
    st = ClassifierStatus(k=2)
    # episode 0 starts with the scene still showing a success: not counted until a negative frame
    assert not any(st.frame(True)[0]["terminated"] for _ in range(5))
    st.frame(False)
    st.frame(True)
    assert st.frame(True)[0]["success"]
    st.operator("reset")
    out = [st.frame(True)[0] for _ in range(4)]  # the lifted cube still in view after the reset
    assert [s["episode"] for s in out] == [1] * 4 and not any(s["terminated"] for s in out)


@pytest.mark.parametrize("key, terminated, truncated", [("failure", True, False), ("reset", False, True),
                                                         ("estop", False, True)])
def test_operator_key_overrides_the_classifier(key, terminated, truncated):
    st = ClassifierStatus(k=2)
    st.frame(False)
    st.frame(True)
    st.operator(key)  # the person ends it before the classifier's second frame
    vals = st.frame(True)[0]
    assert (vals["terminated"], vals["truncated"], vals["success"]) == (terminated, truncated, False)
    assert all(st.frame(True)[0] == vals for _ in range(5)) and st.declared_at == []
    # the person's success key needs no k frames
    st.operator("reset")
    st.frame(False)
    st.operator("success")
    assert st.frame(False)[0]["success"]


def test_max_episode_steps_and_unclassified_frames():
    st = ClassifierStatus(k=2, max_episode_steps=4)
    st.frame(False)
    st.frame(True)
    st.unclassified()  # breaks the streak
    vals = st.frame(True)[0]
    assert not vals["terminated"]
    vals = st.frame(True)[0]
    assert vals["truncated"] and not vals["success"]
    with pytest.raises(ValueError, match="k"):
        ClassifierStatus(k=0)


def test_episode_outcomes_table():
    positive = np.array([0, 1, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0], bool)
    episode = np.repeat([0, 1, 2], 4)
    labels = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0], bool)
    out = episode_outcomes(positive, episode, np.array([True, True, False]), k=2, labels=labels)
    # ep0 declared at frame 2 (label starts at 2: delay 0); ep1 missed; ep2 a false success
    assert (out["tp"], out["fn"], out["fp"], out["tn"]) == (1, 1, 1, 0) and out["mean_delay"] == 0


def test_split_is_by_episode_and_stratified():
    ok = np.array([True] * 8 + [False] * 4)
    train, test = split_episodes(ok, 0.25, seed=0)
    assert not set(train) & set(test) and len(train) + len(test) == 12
    assert ok[test].sum() == 2 and (~ok[test]).sum() == 1


# --- data recorded in the twin ------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from robot_rl.reward.dataset import record_twin

    d = tmp_path_factory.mktemp("clf_data")
    paths = [d / "success.zarr", d / "truncated.zarr", d / "noisy.zarr"]
    record_twin(paths[0], 14, image_size=SIZE, seed=100, noise=0.1, hold=5)
    # 16 steps: cut before any lift (the clean expert needs ~23), a grasp at best: hard negatives
    record_twin(paths[1], 5, image_size=SIZE, seed=200, noise=0.1, hold=5, max_steps=16)
    record_twin(paths[2], 5, image_size=SIZE, seed=300, noise=0.8, hold=5, max_steps=25)
    return [str(p) for p in paths]


def test_labels_follow_the_episode_outcome(stores):
    f = load_frames(stores, "wrist", positive_last=6)
    assert f.images.shape[1:] == (SIZE, SIZE, 3) and f.images.dtype == np.uint8
    table = EpisodeStore.open(stores[0]).episode_table()
    assert table["success"].all()
    n0 = int(table["length"][0])
    ep0 = f.labels[f.episode == 0]
    assert len(ep0) == n0 + 1  # the steps + the final observation
    assert ep0[-6:].all() and not ep0[:-6].any()
    # every frame of the failed episodes is negative
    assert not f.labels[~f.episode_success[f.episode]].any()
    assert (~f.episode_success).sum() >= 8  # the truncated and noisy stores failed
    # the twin agrees: the positive frames are those whose step had the success (sparse reward 1)
    rewards = EpisodeStore.open(stores[0]).read("reward")[:n0]
    assert np.array_equal(rewards[-5:], np.ones(5)) and rewards[:-6].sum() == 0
    small = load_frames(stores[:1], "wrist", image_size=SIZE // 2)
    assert small.images.shape[1:] == (SIZE // 2, SIZE // 2, 3)


def test_bad_stores_are_clear_errors(stores, tmp_path):
    with pytest.raises(ClassifierDataError, match="no camera 'front' in this store"):
        load_frames(stores, "front")
    with pytest.raises(ClassifierDataError, match="no robot_rl episode store"):
        load_frames([tmp_path / "nope.zarr"], "wrist")
    empty = tmp_path / "empty.zarr"
    EpisodeStore.create(empty, EpisodeStore.open(stores[0]).schema).close()
    with pytest.raises(ClassifierDataError, match="no closed episodes"):
        load_frames([empty], "wrist")
    with pytest.raises(ClassifierDataError, match="no successful episodes"):
        check_trainable(load_frames(stores[1:2], "wrist"))
    with pytest.raises(ClassifierDataError, match="integer multiple"):
        load_frames(stores, "wrist", image_size=SIZE - 2)
    from robot_rl.reward.commands import main

    assert main(["train", stores[1], "--camera", "wrist", "--out", str(tmp_path / "x")]) == 2


@pytest.fixture(scope="module")
def trained(stores, tmp_path_factory):
    from robot_rl.reward.train import TrainConfig, train

    out = tmp_path_factory.mktemp("clf_model")
    cfg = TrainConfig(steps=400, batch_size=32, held_out=0.3, val=0.3, shift_pad=2, seed=0)
    t = time.perf_counter()
    report = train(stores, out, cfg, log=lambda s: None)
    report["wall"] = time.perf_counter() - t
    return out, report


def test_learns_success_on_held_out_episodes(trained, stores):
    out, report = trained
    assert report["data"]["test_episodes"] >= 6 and report["data"]["successful_episodes"] >= 14
    test = report["test"]
    # clearly above chance on episodes it never saw: positives are ~15 % of the frames, so a
    # coin at the same rate would score ~0.15 precision and AUC 0.5
    assert report["test_auc"] > 0.9, report
    at_half = confusion(np.asarray(report["test_scores"]), np.asarray(report["test_labels"]), 0.5)
    balanced = 0.5 * (at_half["tp"] / (at_half["tp"] + at_half["fn"]) + at_half["tn"] / (at_half["tn"] + at_half["fp"]))
    assert balanced > 0.8, at_half
    # the threshold was picked on the validation episodes for the target precision
    val = report["validation"]
    assert val["threshold"] == report["threshold"] and (val["precision"] >= 0.98 or not val["reached"])
    # the exported model is the trained one, with its threshold, camera and size
    clf = OnnxClassifier(out / "classifier.onnx")
    assert clf.camera == "wrist" and clf.image_size == (SIZE, SIZE) and clf.threshold == report["threshold"]
    frames = load_frames(stores, "wrist").subset(report["test_episode_ids"])
    scores = clf.scores(frames.images)
    assert confusion(scores, frames.labels, clf.threshold) == test
    # a camera at twice the size is downsampled the same way; other sizes are refused clearly
    big = np.repeat(np.repeat(frames.images[:4], 2, axis=1), 2, axis=2)
    assert np.allclose(clf.scores(big), scores[:4], atol=1e-6)
    with pytest.raises(ValueError, match="the classifier takes 32x32"):
        clf(np.zeros((48, 48, 3), np.uint8))


def test_cli_train_and_eval(stores, tmp_path, capsys):
    from robot_rl.cli import main

    assert main(["classifier", "train", *stores, "--camera", "wrist", "--out", str(tmp_path),
                 "--steps", "20", "--batch-size", "16"]) == 0
    assert (tmp_path / "classifier.onnx").exists() and (tmp_path / "classifier.pt").exists()
    assert main(["classifier", "eval", str(tmp_path / "classifier.onnx"), stores[0], "--k", "2"]) == 0
    text = capsys.readouterr().out
    assert "held-out test" in text and "per episode, success after 2 consecutive frames" in text
    assert main(["classifier", "eval", str(tmp_path / "missing.onnx"), stores[0]]) == 2


# --- the node over DDS -----------------------------------------------------------------------

rclpy = pytest.importorskip("rclpy")

from conftest import SpunNode, spawn_node, stop_process, wait_for  # noqa: E402
from robot_rl import codec, contract as C  # noqa: E402
from robot_rl.nodes.ros import publisher, subscription  # noqa: E402
from std_msgs.msg import String  # noqa: E402


class CameraAndOperator(SpunNode):
    """Frames from a store on camera/wrist/image_raw, the person's keys on teleop/event, an ear
    on task/status. Frames go one at a time, each after the status of the one before."""

    def __init__(self):
        super().__init__("test_camera_operator")
        self.lock = threading.Lock()
        self.statuses = []
        subscription(self.node, C.TASK_STATUS, self._on_status)
        self.img = publisher(self.node, C.camera_topic("wrist"))
        self.key = publisher(self.node, C.TELEOP_EVENT)
        self.t = 1000.0
        self.start()

    def _on_status(self, msg):
        with self.lock:
            self.statuses.append((codec.from_stamp(msg.header.stamp), codec.status_from_msg(msg)))

    def show(self, img) -> dict:
        wait_for(lambda: self.img.get_subscription_count() > 0, 30, "the node to subscribe to the camera")
        with self.lock:
            n = len(self.statuses)
        self.t += 0.1
        self.img.publish(codec.image_msg(img, self.t, "wrist"))
        wait_for(lambda: len(self.statuses) > n, 10, "a task/status for the frame")
        with self.lock:
            stamp, status = self.statuses[-1]
        assert stamp == pytest.approx(self.t)  # the status answers that frame
        return status

    def press(self, key):
        wait_for(lambda: self.key.get_subscription_count() > 0, 30, "the node to subscribe to teleop/event")
        self.key.publish(String(data=key))
        time.sleep(0.3)  # a key and a frame travel on different topics: let the key land first


def test_node_over_dds_matches_the_plain_logic(trained, stores, tmp_path):
    out, report = trained
    # the node's threshold parameter overrides the model's (the test's small model, picked on a
    # few validation episodes, is conservative: 0.5 makes the run exercise both outcomes)
    threshold = 0.5
    clf = OnnxClassifier(out / "classifier.onnx", threshold=threshold)
    frames = load_frames(stores, "wrist")
    test_eps = report["test_episode_ids"]
    # a successful episode the model gets (k=2; held-out ones first), and a held-out failed one
    k = 2
    ok = [e for e in test_eps if frames.episode_success[e]]
    ok += [e for e in np.flatnonzero(frames.episode_success) if e not in ok]
    bad = [e for e in test_eps if not frames.episode_success[e]]
    chosen = None
    for e in ok:
        st = ClassifierStatus(k)
        for img in frames.images[frames.episode == e]:
            st.frame(clf(img)[1])
        if st.declared_at:
            chosen = e
            break
    assert chosen is not None, "the classifier declared no held-out successful episode"
    episodes = [frames.images[frames.episode == chosen], frames.images[frames.episode == bad[0]]]

    cam = CameraAndOperator()
    proc = spawn_node("robot_rl.nodes.reward_classifier", tmp_path / "node.log",
                      {"model": str(out / "classifier.onnx"), "k": k, "threshold": threshold, "max_episode_steps": 0, "run_dir": str(tmp_path)})
    try:
        expect = ClassifierStatus(k)
        for i, imgs in enumerate(episodes):
            if i:
                cam.press("reset")
                expect.operator("reset")
            for img in imgs:
                assert cam.show(img) == expect.frame(clf(img)[1])[0]
        assert expect.declared_at and expect.declared_at[0][0] == 0
        assert expect.status.state == "running"  # the failed episode's frames declared nothing
        # the person's failure key ends episode 1; frames after it change nothing
        cam.press("failure")
        last = cam.show(episodes[0][-1])
        assert last["terminated"] and not last["success"] and last["episode"] == 1
        # a frame of a size the model cannot take: not success, said in the log, no crash
        cam.press("reset")
        assert cam.show(np.zeros((48, 48, 3), np.uint8))["episode"] == 2
        assert cam.show(episodes[0][0])["step"] == 1
        assert stop_process(proc) == 0
        log = (tmp_path / "node.log").read_text()
        assert "classifier: 2 consecutive success frames; episode 0 succeeded" in log
        assert "frame not classified" in log and "the classifier takes 32x32" in log
        import json

        summary = json.loads((tmp_path / "reward_classifier_summary.json").read_text())
        assert [e["ended_as"] for e in summary["episodes"]] == ["success", "failure"]
        assert summary["unclassified_frames"] == 1 and len(summary["declared_by_classifier"]) == 1
    finally:
        stop_process(proc)
        cam.close()


def test_node_without_model_says_why(tmp_path):
    proc = spawn_node("robot_rl.nodes.reward_classifier", tmp_path / "node.log", {"run_dir": str(tmp_path)})
    try:
        code = proc.wait(60)
    finally:
        stop_process(proc)
    assert code != 0
    assert "no model given; set model:=" in (tmp_path / "node.log").read_text()


def test_hard_negatives_are_the_frames_before_the_onset(stores):
    from robot_rl.reward.train import hard_negatives

    f = load_frames(stores, "wrist", positive_last=6)
    hard = hard_negatives(f, 3)
    assert not f.labels[hard].any() and f.episode_success[f.episode[hard]].all()
    assert len(hard) == 3 * int(f.episode_success.sum())
    ep0 = np.flatnonzero(f.episode == 0)
    assert set(hard) & set(ep0) == set(ep0[-9:-6])  # the 3 frames before the last 6 (positive)
    assert len(hard_negatives(f, 0)) == 0


def test_two_cameras_train_export_and_classify(tmp_path):
    from robot_rl.reward.classifier import OnnxClassifier
    from robot_rl.reward.dataset import record_twin
    from robot_rl.reward.train import TrainConfig, train

    a, b = tmp_path / "ok.zarr", tmp_path / "cut.zarr"
    record_twin(a, 4, camera="front,wrist", image_size=SIZE, seed=100, hold=5)
    record_twin(b, 2, camera=("front", "wrist"), image_size=SIZE, seed=200, hold=5, max_steps=16)
    f = load_frames([a, b], "front,wrist")
    assert f.images.shape[1:] == (2, SIZE, SIZE, 3)
    assert np.array_equal(f.images[:, 1], load_frames([a, b], "wrist").images)
    with pytest.raises(ClassifierDataError, match="no camera 'side'"):
        load_frames([a], "front,side")
    report = train([a, b], tmp_path / "m", TrainConfig(camera="front,wrist", steps=5, batch_size=8, held_out=0.3,
                                                        val=0.4, shift_pad=2), log=lambda s: None)
    clf = OnnxClassifier(tmp_path / "m" / "classifier.onnx")
    assert clf.cameras == ("front", "wrist") and clf.n_cameras == 2 and clf.image_size == (SIZE, SIZE)
    assert clf.scores(f.images[:3]).shape == (3,) and 0.0 <= clf(f.images[0])[0] <= 1.0
    with pytest.raises(ValueError, match="2 camera"):
        clf.scores(f.images[:3, 0])
    assert report["camera"] == "front,wrist"
