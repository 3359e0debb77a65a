"""The scripted human of the sim graph, as plain code: the twin's scripted expert (or its sloppy
operator) plus a takeover rule (robot_rl/teleop/takeover.py). It decides about each observation
whether to step in and, if so, what to command; the teleop node only converts messages and
publishes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.spec import ActionSpec
from robot_rl.teleop.takeover import TakeoverConfig, TakeoverRule


@dataclass
class Answer:
    engaged: bool
    twist: np.ndarray  # m/s, rad/s in the base frame (zero while released)
    grip: float  # closing command in [-1, 1] (open while released)
    events: list = field(default_factory=list)  # "takeover" / "release", in order
    action: np.ndarray | None = None  # the expert's normalised action while engaged (ROS-free drivers)
    reason: str = ""  # on a takeover: why the rule stepped in (stalled | regressing | leaving)


class ScriptedHuman:
    def __init__(self, task: str, action_spec: ActionSpec, takeover: TakeoverConfig, workspace_min, workspace_max,
                 noise: float = 0.1, seed: int = 0, operator: str = "expert", expert=None):
        # The expert plans from observations with plain NumPy: no simulator loaded here.
        # operator "sloppy": a hesitant person drives the takeovers (robot_rl/twin/experts.py).
        # `expert`: one already made (robot-rl pretrain shares its demo maker's).
        from robot_rl.twin.experts import make_expert

        self.expert = expert or make_expert(task, noise=noise, seed=seed + 1, operator=operator)
        self.rule = TakeoverRule(takeover, workspace_min, workspace_max, seed=seed + 2)
        self.spec = action_spec
        self.episode = None

    def answer(self, obs: dict, episode: int, evaluating: bool) -> Answer:
        """One non-terminal observation of `episode`. The expert acts every step (it tracks its
        phase) whether or not the rule lets it drive; evaluation episodes are hands off."""
        events = []
        if episode != self.episode:
            self.episode = episode
            self.expert.reset()
            if self.rule.engaged:
                events.append("release")
            self.rule.reset()
        was = self.rule.engaged
        action = np.asarray(self.expert.act(obs), np.float32)
        engaged = self.rule.update(float(self.expert.progress(obs)), obs["proprio"][:3])
        if evaluating and engaged:
            self.rule.reset()
            engaged = False
        if engaged != was:
            events.append("takeover" if engaged else "release")
        if engaged:
            twist, grip = self.spec.to_command(action)
            return Answer(True, twist, grip, events, action, self.rule.reason if not was else "")
        return Answer(False, np.zeros(6), -1.0, events)
