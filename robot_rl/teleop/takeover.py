"""The scripted human's rule for stepping in and letting go (HIL-SERL's operator, in code).

It judges progress as a person watching the arm does, from the distance to the goal (lower is
better) over the last `stuck_steps` control steps:
- a grasp that is slow but gets closer is left alone, however slow, as long as it gains
  `min_progress` per window;
- it steps in when the arm stalls (its best distance in the window is less than `min_progress`
  below where the window began), when it moves away from the goal (the distance rose `regress`
  above its low in the window), or when it heads out of the workspace (within `leave_margin` of
  a face, moving toward it, and `leave_regress` further from the goal than its low: a grasp
  next to the table, nudging the cube, is not leaving);
- it lets go once the situation is recovered: the distance is down by the fraction `recover`
  from the low it had before things went wrong (`recover_again` on a second or later takeover
  in the episode: 1.0 = it finishes the task itself, the episode ends on success), or after
  `max_takeover_steps` at most, and then leaves the policy alone for `cooldown_steps` with a
  fresh window. Being within `done_distance` is no reason to let go: handed a cube 1 mm short
  of the lift height, a policy that never held one up there dropped it.
So a policy that keeps making progress is never taken over, and the intervention rate falls as
the policy improves. `takeover_prob` < 1 makes it an imperfect, sometimes absent operator;
`always` makes it drive every step (demo recording through the graph). All in control steps;
ROS-free.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from robot_rl.configs import from_mapping


@dataclass
class TakeoverConfig:
    stuck_steps: int = 25  # the window a person judges progress over (2.5 s at 10 Hz; 2 s
    # already steps into the expert's own fiddling at the peg's hole)
    min_progress: float = 0.005  # metres gained over the window that count as progress
    regress: float = 0.03  # metres back from the window's low: moving away from the goal
    recover: float = 0.5  # fraction of the distance left (at its low before the takeover) that
    # the operator takes off before handing back: a stuck arm is brought well on its way, not 2 cm
    recover_again: float = 1.0  # ... on the second and later takeovers of one episode: a person
    # whose hand-back failed once does not hand back halfway again (1.0: finishes the task)
    done_distance: float = 0.01  # this close to the goal is done: nothing to judge
    max_takeover_steps: int = 30  # let go by then anyway (the expert picks the cube in ~25 steps)
    cooldown_steps: int = 10
    takeover_prob: float = 1.0
    leave_margin: float = 0.01
    leave_regress: float = 0.015  # metres further from the goal than the window's low that make
    # heading out count; a cube nudged or tipped by the fingers at the table moves the distance
    # 5-10 mm, and at min_progress (5 mm) those grasps were taken over as "leaving"
    always: bool = False  # drive every step from the first (robot-rl record --graph)

    @classmethod
    def from_dict(cls, d: dict | None) -> "TakeoverConfig":
        return from_mapping(cls, d, "takeover")

    def __post_init__(self):
        for name in ("recover", "recover_again"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"takeover.{name} must be in [0, 1] (the fraction of the distance the "
                                 f"operator takes off before handing back), got {getattr(self, name)}")
        if self.stuck_steps < 1:
            raise ValueError(f"takeover.stuck_steps must be >= 1, got {self.stuck_steps} "
                             "(takeover.always: true drives every step)")


class TakeoverRule:
    def __init__(self, cfg: TakeoverConfig, workspace_min, workspace_max, seed: int | None = None):
        self.cfg = cfg
        self.lo = np.asarray(workspace_min, np.float64)
        self.hi = np.asarray(workspace_max, np.float64)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        """A new episode: forget progress, release."""
        self.window: deque = deque(maxlen=self.cfg.stuck_steps + 1)  # distances, oldest first
        self.prev_ee = None
        self.engaged = False
        self.left = 0
        self.cooldown = 0
        self.target = 0.0  # while engaged: the distance at which it counts as recovered
        self.reason = ""  # why it last stepped in: stalled | regressing | leaving
        self.takeovers = 0  # in this episode

    def near_face(self, ee_pos) -> np.ndarray:
        """Per axis: -1 near the lower face, +1 near the upper one, 0 clear of both."""
        p = np.asarray(ee_pos, np.float64)
        m = self.cfg.leave_margin
        return (p > self.hi - m).astype(int) - (p < self.lo + m).astype(int)

    def about_to_leave(self, ee_pos) -> bool:
        return bool(np.any(self.near_face(ee_pos)))

    def judge(self, distance: float, ee_pos) -> str:
        """Why a person would step in now ("" = leave it alone), from the window so far."""
        cfg, w = self.cfg, self.window
        if distance <= cfg.done_distance:
            return ""
        if distance > min(w) + cfg.regress:
            return "regressing"
        # the best it got to in the window, not where it is now: a trend, not one jittery sample
        if len(w) == w.maxlen and w[0] - min(w) < cfg.min_progress:
            return "stalled"
        # heading out, and noticeably further from the goal than it was: contact jitter of a
        # grasp at the table (the box's floor face) is neither
        if self.prev_ee is not None and distance >= min(w) + cfg.leave_regress:
            toward = self.near_face(ee_pos) * (np.asarray(ee_pos, np.float64) - self.prev_ee)
            if np.any(toward > 0):
                return "leaving"
        return ""

    def update(self, distance: float, ee_pos) -> bool:
        """One control step: distance to the goal (lower is better) -> engaged now?"""
        cfg = self.cfg
        distance = float(distance)
        if cfg.always:
            self.engaged = True
            return True
        self.window.append(distance)
        why = self.judge(distance, ee_pos)
        self.prev_ee = np.asarray(ee_pos, np.float64)
        if self.engaged:
            self.left -= 1
            if distance <= self.target or self.left <= 0:
                self.engaged = False
                self.cooldown = cfg.cooldown_steps
                self.window.clear()  # judge the policy afresh from here
                self.window.append(distance)
            return self.engaged
        if self.cooldown > 0:
            self.cooldown -= 1
            return False
        if why and self.rng.random() < cfg.takeover_prob:
            # recovered = back below where it was before it went wrong, and well on from there
            self.engaged, self.left, self.reason = True, cfg.max_takeover_steps, why
            self.takeovers += 1
            self.target = min(self.window) * (1.0 - (cfg.recover if self.takeovers == 1 else cfg.recover_again))
        elif why:  # the operator looked and let it be; look again after a fresh window
            self.window.clear()
            self.window.append(distance)
        return self.engaged
