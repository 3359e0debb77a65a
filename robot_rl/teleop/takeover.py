"""The scripted human's rule for stepping in and letting go (HIL-SERL's operator, in code).

It takes over when the policy is stuck (the distance to the goal has not shrunk by
`min_progress` for `stuck_steps` steps) or is about to leave the workspace (end effector within
`leave_margin` of a face of the box), drives for at most `max_takeover_steps`, then lets go and
leaves the policy alone for `cooldown_steps`. `takeover_prob` < 1 makes it an imperfect,
sometimes absent operator. All in control steps; ROS-free.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.configs import from_mapping


@dataclass
class TakeoverConfig:
    stuck_steps: int = 25
    min_progress: float = 0.005
    max_takeover_steps: int = 30  # the expert picks the cube in ~25 steps
    cooldown_steps: int = 10
    takeover_prob: float = 1.0
    leave_margin: float = 0.01

    @classmethod
    def from_dict(cls, d: dict | None) -> "TakeoverConfig":
        return from_mapping(cls, d, "takeover")


class TakeoverRule:
    def __init__(self, cfg: TakeoverConfig, workspace_min, workspace_max, seed: int | None = None):
        self.cfg = cfg
        self.lo = np.asarray(workspace_min, np.float64)
        self.hi = np.asarray(workspace_max, np.float64)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        """A new episode: forget progress, release."""
        self.best = np.inf
        self.since_progress = 0
        self.engaged = False
        self.left = 0
        self.cooldown = 0

    def about_to_leave(self, ee_pos) -> bool:
        p = np.asarray(ee_pos, np.float64)
        m = self.cfg.leave_margin
        return bool(np.any(p < self.lo + m) or np.any(p > self.hi - m))

    def update(self, distance: float, ee_pos) -> bool:
        """One control step: distance to the goal (lower is better) -> engaged now?"""
        cfg = self.cfg
        if distance < self.best - cfg.min_progress:
            self.best, self.since_progress = distance, 0
        else:
            self.since_progress += 1
        if self.engaged:
            self.left -= 1
            if self.left <= 0:
                self.engaged = False
                self.cooldown = cfg.cooldown_steps
                self.best, self.since_progress = distance, 0
            return self.engaged
        if self.cooldown > 0:
            self.cooldown -= 1
            return False
        stuck = self.since_progress >= cfg.stuck_steps
        if (stuck or self.about_to_leave(ee_pos)) and self.rng.random() < cfg.takeover_prob:
            self.engaged, self.left = True, cfg.max_takeover_steps
        elif stuck:
            self.since_progress = 0  # the operator looked and let it be; look again later
        return self.engaged
