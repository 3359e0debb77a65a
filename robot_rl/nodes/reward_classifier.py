"""Reward classifier node (robot): a learned success check on a camera -> `task/status`.

The robot's counterpart of the twin's success check: each frame on camera/<camera>/image_raw
goes through the exported classifier (robot-rl classifier train; onnxruntime on one thread) and
one task/status is published per frame, stamped with the frame's stamp (the status answers that
frame). Success after `k` consecutive positive frames; the operator's keys on teleop/event
override it (robot_rl/reward/status.py: the logic, over the operator's EpisodeStatus). It
replaces task_status as the cell's reward source: do not run both, nor this in sim next to the
twin's own check.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import make_node_options, publisher, run, settings, subscription


@dataclass
class RewardClassifierSettings:
    model: str = ""                    # classifier.onnx from robot-rl classifier train --out DIR
    camera: str = ""                   # "" = the camera the model was trained on
    threshold: float = -1.0            # < 0: the threshold picked at training (target precision)
    k: int = 3                         # consecutive positive frames before success is declared
    max_episode_steps: int = 100       # frames before an episode is truncated (0 = no limit)
    sensor_reliability: str = "reliable"  # best_effort for a driver that publishes so
    # The next episode starts with the first frame after an end: for a scene that resets
    # itself (the twin, robot-rl sim --reward classifier); on a robot the person's reset key.
    auto_reset: bool = False
    run_dir: str = "runs/sim"          # reward_classifier_summary.json on shutdown

    def __post_init__(self):
        if not self.model:
            raise ValueError("reward_classifier: no model given; set model:=<dir>/classifier.onnx "
                             "(robot-rl classifier train STORE --camera wrist --out <dir>)")
        if self.k < 1:
            raise ValueError(f"reward_classifier: k must be >= 1, got {self.k}")
        if self.threshold > 1.0:
            raise ValueError(f"reward_classifier: threshold must be <= 1 (< 0 = the model's), got {self.threshold}")


class RewardClassifierNode(Node):
    def __init__(self):
        super().__init__("reward_classifier", **make_node_options())
        from robot_rl.reward.classifier import OnnxClassifier
        from robot_rl.reward.status import ClassifierStatus

        s = settings(self, RewardClassifierSettings)
        self.run_dir = Path(s.run_dir)
        self.clf = OnnxClassifier(s.model, threshold=None if s.threshold < 0 else s.threshold)
        if self.clf.n_cameras > 1:
            raise ValueError(f"reward_classifier: the model takes {self.clf.n_cameras} cameras ({self.clf.camera}); "
                             "this node classifies one camera's frames: train with one --camera")
        self.camera = s.camera or self.clf.camera
        if not self.camera:
            raise ValueError("reward_classifier: the model names no camera; set camera:=<name>")
        self.logic = ClassifierStatus(s.k, s.max_episode_steps, auto_reset=s.auto_reset)
        self._last = None  # (stamp key, status) of the last frame answered
        self.frames = self.positives = self.bad_frames = 0
        self._last_error = ""
        self.pub = publisher(self, C.TASK_STATUS)
        subscription(self, C.camera_topic(self.camera), self._on_image, C.sensor_qos(s.sensor_reliability))
        subscription(self, C.TELEOP_EVENT, self._on_event)
        h, w = self.clf.image_size
        self._say(("info", f"reward_classifier up: {C.camera_topic(self.camera)} ({h}x{w} or a multiple) -> "
                           f"{C.TASK_STATUS}; threshold {self.clf.threshold:.4f}, success after {s.k} frames; "
                           f"operator keys on {C.TELEOP_EVENT} override; episode 0 runs"))

    def _on_event(self, msg) -> None:
        self._say(self.logic.operator(str(msg.data)))

    def _on_image(self, msg) -> None:
        t = codec.from_stamp(msg.header.stamp)
        key = codec.stamp_key(msg.header.stamp)
        if self._last is not None and self._last[0] == key:
            # The same frame again (the twin repeats its first observation while it waits for
            # a controller): the same answer, not a new tick of the episode.
            self.pub.publish(codec.status_msg(t, self._last[1]))
            return
        try:
            p, positive = self.clf(codec.image_from_msg(msg))
        except (ValueError, codec.CodecError) as e:
            # a frame the model cannot take counts as "not success"; said once per distinct problem
            self.bad_frames += 1
            if str(e) != self._last_error:
                self._last_error = str(e)
                self.get_logger().error(f"frame not classified ({e}); counted as not success")
            values, said = self.logic.unclassified()
        else:
            self.frames += 1
            self.positives += positive
            values, said = self.logic.frame(positive)
        self._last = (key, values)
        self.pub.publish(codec.status_msg(t, values))
        self._say(said)

    def _say(self, said) -> None:
        if said is None:
            return
        level, text = said
        # one call site per severity: rclpy refuses one site logging at two severities
        if level == "warn":
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def close(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        st = self.logic.status
        (self.run_dir / "reward_classifier_summary.json").write_text(json.dumps(
            {"episodes": st.history, "current": st.episode, "state": st.state, "frames": self.frames,
             "positive_frames": self.positives, "unclassified_frames": self.bad_frames,
             "declared_by_classifier": [list(x) for x in self.logic.declared_at]}, indent=1))


def main(args=None) -> int:
    return run(RewardClassifierNode, args)


if __name__ == "__main__":
    sys.exit(main())
