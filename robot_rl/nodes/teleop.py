"""Teleop node: a person's device, or in sim the scripted human (the twin's expert + a takeover
rule), publishing teleop/twist + teleop/gripper stamped with the observation they answer,
teleop/engaged, and teleop/event (takeover, release).

It answers every observation (a zero twist while released) so the actor, in lock-step, knows the
human has decided about that observation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Bool, String

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import csv_list, make_node_options, publisher, run, settings, subscription
from robot_rl.safety import SafetyConfig
from robot_rl.spec import ActionSpec
from robot_rl.teleop.takeover import TakeoverConfig, TakeoverRule


@dataclass
class TeleopSettings:
    """The teleop node's parameters; defaults are config/sim.yaml's (tests/test_settings.py)."""

    task: str = "pick_cube"
    run_dir: str = "runs/sim"
    seed: int = 0
    driver: str = "scripted"  # scripted (the twin's expert + a takeover rule) in sim
    expert_noise: float = 0.1
    gripper_joints: str = C.GRIPPER_JOINT  # as the actor's
    action: ActionSpec = field(default_factory=ActionSpec)
    safety: SafetyConfig = field(default_factory=SafetyConfig)  # the takeover rule's workspace
    takeover: TakeoverConfig = field(default_factory=TakeoverConfig)


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop", **make_node_options())
        s = settings(self, TeleopSettings)
        if s.driver != "scripted":
            raise ValueError(f"teleop driver {s.driver!r} is not available in this build (scripted)")
        # The scripted expert plans from observations with plain NumPy: no simulator loaded here.
        from robot_rl.twin.experts import make_expert

        self.task = s.task
        self.run_dir = Path(s.run_dir)
        self.expert = make_expert(s.task, noise=s.expert_noise, seed=s.seed + 1)
        self.action_spec = s.action
        self.rule = TakeoverRule(s.takeover, s.safety.workspace_min, s.safety.workspace_max, seed=s.seed + 2)
        self.gripper_joints = csv_list(s.gripper_joints)
        self.latest: dict = {}
        self.last_key = -1
        self.answer = None  # (engaged, twist, grip, stamp) of the last observation answered
        self.episode = None
        self.engaged_steps: list[float] = []  # obs stamps answered while engaged
        self.takeovers = 0
        self.releases = 0

        self.required = [C.JOINT_STATES, C.EE_POSE, C.OBJECT_POSES, C.TASK_STATUS]
        for topic in self.required:
            subscription(self, topic, lambda m, t=topic: self._on_sensor(t, m))
        self.evaluating = False  # the actor's evaluation episodes allow no intervention
        subscription(self, C.EVALUATING, lambda m: setattr(self, "evaluating", bool(m.data)))
        self.pub_engaged = publisher(self, C.TELEOP_ENGAGED)
        self.pub_twist = publisher(self, C.TELEOP_TWIST)
        self.pub_grip = publisher(self, C.TELEOP_GRIPPER)
        self.pub_event = publisher(self, C.TELEOP_EVENT)
        self.pub_engaged.publish(Bool(data=False))
        self.get_logger().info(f"teleop up: scripted human for {self.task}, rule {self.rule.cfg}")

    def _on_sensor(self, topic: str, msg) -> None:
        self.latest[topic] = msg
        stamps = {codec.stamp_key(self.latest[t].header.stamp) for t in self.required if t in self.latest}
        if len(self.latest) < len(self.required) or len(stamps) != 1:
            return
        key = stamps.pop()
        if key < self.last_key:
            return
        if key == self.last_key:  # the twin repeats its first observation while nodes start:
            self._publish_answer()  # say the same again, for an actor that missed it
            return
        self.last_key = key
        try:
            self._answer()
        except codec.CodecError as e:
            self.get_logger().error(f"bad observation, not answering: {e}")

    def _answer(self) -> None:
        status = codec.status_from_msg(self.latest[C.TASK_STATUS])
        if status["terminated"] or status["truncated"]:
            return  # terminal observation: nobody acts on it
        t = codec.from_stamp(self.latest[C.TASK_STATUS].header.stamp)
        obs = codec.observation_from_msgs(self.latest, gripper_joints=self.gripper_joints)
        if status["episode"] != self.episode:
            self.episode = status["episode"]
            self.expert.reset()
            if self.rule.engaged:
                self._event("release")
            self.rule.reset()
        was = self.rule.engaged
        action = np.asarray(self.expert.act(obs), np.float32)  # every step: the expert tracks its phase
        engaged = self.rule.update(float(self.expert.progress(obs)), obs["proprio"][:3])
        if self.evaluating and engaged:
            self.rule.reset()  # hands off during evaluation
            engaged = False
        if engaged != was:
            self._event("takeover" if engaged else "release")
        if engaged:
            self.engaged_steps.append(t)
            twist, grip = self.action_spec.to_command(action)
        else:
            twist, grip = np.zeros(6), -1.0
        self.answer = (engaged, twist, grip, t)
        self._publish_answer()

    def _publish_answer(self) -> None:
        if self.answer is None:
            return
        engaged, twist, grip, t = self.answer
        self.pub_engaged.publish(Bool(data=engaged))
        self.pub_grip.publish(codec.gripper_msg(grip, t))
        self.pub_twist.publish(codec.twist_msg(twist, t, C.BASE_FRAME))

    def _event(self, name: str) -> None:
        self.takeovers += name == "takeover"
        self.releases += name == "release"
        self.pub_event.publish(String(data=name))

    def close(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "teleop_summary.json").write_text(json.dumps(
            {"takeovers": self.takeovers, "releases": self.releases, "engaged_stamps": self.engaged_steps}))


def main(args=None) -> int:
    return run(TeleopNode, args)


if __name__ == "__main__":
    main()
