"""Scripted experts: act from the observation dict only (obs["proprio"], obs["object"]), never
from simulator internals, so the teleop node can run them on observations rebuilt from ROS
messages. Stateful phases; `noise` adds Gaussian noise (std, in normalised action units).

    expert = make_expert("pick_cube", noise=0.1, seed=0)
    expert.reset()
    action = expert.act(obs)          # float32, ActionSpec dim, in [-1, 1]
    expert.progress(obs)              # metres still to go (0 when done); falls as it works

    sloppy = make_expert("pick_cube", noise=0.1, seed=0, operator="sloppy")   # a hesitant person
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_rl.spec import ActionSpec
from robot_rl.twin.task_params import task_params as resolve_task_params


class _Expert:
    operator = "expert"  # who made a demo: recorded in each episode's metadata (data/record.py)

    def __init__(self, task_params=None, noise: float = 0.0, seed=None, action_spec=None,
                 gain: float = 6.0):
        self.p = resolve_task_params(self.task, task_params)
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self.spec = action_spec or ActionSpec()
        self.gain = gain  # 1/s: commanded speed per metre of error
        self.reset()

    def reset(self) -> None:
        self.phase = "approach"
        self.counter = 0

    def _action(self, ee, target, grip: float, max_speed: float = 1.0,
                yaw_error: float = 0.0) -> np.ndarray:
        """P-control of the ee towards target (speed capped at max_speed of the action range)."""
        v = self.gain * (np.asarray(target) - ee) / self.spec.max_lin_vel
        n = np.max(np.abs(v))
        if n > max_speed:
            v *= max_speed / n
        a = np.zeros(self.spec.dim, np.float32)
        a[:3] = v
        if self.spec.rotation:  # turn about the base z to line the fingers up
            a[5] = np.clip(self.gain * yaw_error / self.spec.max_ang_vel, -max_speed, max_speed)
        a[-1] = grip
        if self.noise > 0:  # scaled with the speed cap, so slow precise phases stay precise
            a[:-1] += self.rng.normal(0.0, self.noise * max_speed, self.spec.dim - 1)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    @staticmethod
    def _yaw(quat_wxyz) -> float:
        """Heading of a frame's x axis in the base xy plane."""
        w, x, y, z = quat_wxyz
        return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def _square_yaw_error(self, target_quat, current_quat) -> float:
        """Yaw (rad, about the base z) lining the frame `current_quat` (the ee, or the peg it
        holds) up with a square target's faces: any multiple of 90 deg does. 0 without rotation
        actions. Heading = the frame's x axis in the base xy plane, also for the down-pointing ee."""
        if not self.spec.rotation:
            return 0.0
        err = self._yaw(target_quat) - self._yaw(current_quat)
        return float((err + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    @staticmethod
    def _split(obs):
        pro = np.asarray(obs["proprio"], np.float64)
        objs = np.asarray(obs["object"], np.float64).reshape(-1, 7)
        return pro[:3], pro[7], objs


GRASP_REACH = 0.02  # m between the TCP and the cube's centre that count as holding it


class PickCubeExpert(_Expert):
    """approach above the cube -> descend -> close -> lift (regrasp if the cube slips)."""

    task = "pick_cube"
    hover = 0.06

    def reset(self):
        super().reset()
        self.rest_z = None

    def act(self, obs) -> np.ndarray:
        ee, width, objs = self._split(obs)
        cube = objs[0, :3]
        if self.rest_z is None:
            self.rest_z = cube[2]
        above = cube + [0.0, 0.0, self.hover]
        yaw = self._square_yaw_error(objs[0, 3:], obs["proprio"][3:7])
        if self.phase == "approach":
            if (np.linalg.norm(ee[:2] - cube[:2]) < 0.01 and abs(ee[2] - above[2]) < 0.03
                    and abs(yaw) < 0.05):
                self.phase = "descend"
            return self._action(ee, above, -1.0, yaw_error=yaw)
        if self.phase == "descend":
            if np.linalg.norm(ee[:2] - cube[:2]) > 0.03:
                self.phase = "approach"
            elif np.linalg.norm(ee - cube) < 0.008:
                self.phase, self.counter = "grasp", 0
            return self._action(ee, cube, -1.0, yaw_error=yaw)
        if self.phase == "grasp":
            self.counter += 1
            if self.counter >= 3:
                self.phase = "lift"
            return self._action(ee, cube, 1.0)
        # lift
        if np.linalg.norm(ee - cube) > 0.04:  # dropped it: start over
            self.phase = "approach"
            return self._action(ee, above, -1.0)
        goal = np.array([cube[0], cube[1], self.rest_z + self.p["lift_height"] + 0.03])
        return self._action(ee, ee + (goal - cube), 1.0)

    def progress(self, obs) -> float:
        ee, _, objs = self._split(obs)
        cube = objs[0, :3]
        rest = self.rest_z if self.rest_z is not None else cube[2]
        to_lift = max(0.0, rest + self.p["lift_height"] - cube[2])
        # within 2 cm the fingers are on it; beyond, the gap. Continuous on purpose: a step from 0
        # to 2 cm made a fingertip brushing the cube read as a 2 cm regress, and the scripted
        # human took over grasps a person would leave to finish
        reach = max(0.0, float(np.linalg.norm(ee - cube)) - GRASP_REACH)
        return float(reach + to_lift)


class PegInsertExpert(_Expert):
    """(pick the peg from the table) -> carry its tip above the hole -> align -> insert."""

    task = "peg_insert"

    def _in_hand(self, ee, width, peg) -> bool:
        off = ee - peg
        return (np.linalg.norm(off[:2]) < 0.015 and 0.0 < off[2] < 0.07
                and width < 2 * self.p["peg_half"] + 0.006)

    def act(self, obs) -> np.ndarray:
        ee, width, objs = self._split(obs)
        peg, rim = objs[0, :3], objs[1, :3]
        L = self.p["peg_length"]
        grasp_point = peg + [0.0, 0.0, L - 0.035]
        if self.phase == "approach" and self._in_hand(ee, width, peg):
            self.phase = "carry"
        if self.phase == "approach":
            above = grasp_point + [0.0, 0.0, 0.06]
            if np.linalg.norm(ee[:2] - grasp_point[:2]) < 0.008 and abs(ee[2] - above[2]) < 0.03:
                self.phase = "descend"
            return self._action(ee, above, -1.0)
        if self.phase == "descend":
            if np.linalg.norm(ee[:2] - grasp_point[:2]) > 0.02:
                self.phase = "approach"
            elif np.linalg.norm(ee - grasp_point) < 0.006:
                self.phase, self.counter = "grasp", 0
            return self._action(ee, grasp_point, -1.0)
        if self.phase == "grasp":
            self.counter += 1
            if self.counter >= 3:
                self.phase = "carry"
            return self._action(ee, grasp_point, 1.0)
        if not self._in_hand(ee, width, peg) and self.phase != "insert":
            self.phase = "approach"
            return self._action(ee, ee + [0.0, 0.0, 0.05], -1.0)
        tip_to_ee = ee - peg
        yaw = self._square_yaw_error(objs[1, 3:], objs[0, 3:])  # peg faces onto the hole's
        if self.phase == "carry":
            goal_tip = rim + [0.0, 0.0, 0.015]
            err = goal_tip - peg
            if np.linalg.norm(err[:2]) > 0.01 and peg[2] < rim[2] + 0.01:
                # clear the block's rim before going sideways (a peg picked from the table)
                return self._action(ee, ee + [0.0, 0.0, rim[2] + 0.02 - peg[2]], 1.0)
            if np.linalg.norm(err[:2]) < 0.0015 and abs(err[2]) < 0.01 and abs(yaw) < 0.02:
                self.phase = "insert"
            near = np.linalg.norm(err) < 0.015
            return self._action(ee, goal_tip + tip_to_ee, 1.0, max_speed=0.25 if near else 1.0,
                                yaw_error=yaw)
        # insert: keep centring while going down; back off and realign if it caught the rim
        off_centre = np.linalg.norm(peg[:2] - rim[:2])
        if off_centre > self.p["clearance"] + 0.002 and peg[2] > rim[2] - 0.005:
            self.phase = "carry"
        goal_tip = rim - [0.0, 0.0, self.p["insert_depth"] + 0.01]
        return self._action(ee, goal_tip + tip_to_ee, 1.0, max_speed=0.3, yaw_error=yaw)

    def progress(self, obs) -> float:
        ee, width, objs = self._split(obs)
        peg, rim = objs[0, :3], objs[1, :3]
        goal = rim - [0.0, 0.0, self.p["insert_depth"]]
        carry = float(np.linalg.norm(peg - goal))
        if self._in_hand(ee, width, peg):
            return carry
        return carry + float(np.linalg.norm(ee - (peg + [0.0, 0.0, self.p["peg_length"] - 0.035])))


EXPERTS = {PickCubeExpert.task: PickCubeExpert, PegInsertExpert.task: PegInsertExpert}


@dataclass(frozen=True)
class SloppyConfig:
    """How the sloppy operator departs from the expert. Ranges are inclusive (low, high), drawn
    per episode or per event. The defaults give 2-3x the expert's steps with >= 90 % success on
    both tasks (docs/twin.md, tests/test_sloppy_operator.py): change them there too."""

    speed: tuple = (0.45, 0.65)  # fraction of the expert's velocity, drawn per episode: a slow hand
    tremor: float = 0.15  # hand noise, std as a fraction of the commanded speed: a fast move
    # wobbles, a hand nearly at its target is steady (signal-dependent noise), so fine phases stay
    # fine; 0.3 already costs peg_insert's 1.5 mm alignment ~15 points of success
    pause_prob: float = 0.06  # chance per step to stop and look (hold still, gripper as it was)
    pause_steps: tuple = (2, 6)
    back_off_prob: float = 0.5  # chance, each time the hand closes in on the grasp or the hole,
    # that it stops short, backs off and comes again
    back_off_after: tuple = (1, 4)  # steps into the final approach when it loses its nerve
    back_off_steps: tuple = (3, 6)  # steps spent backing off (straight up)
    back_off_speed: float = 0.5
    max_back_offs: int = 2  # per episode: a person hesitates, then commits


# The final approach a hesitant hand aborts, and the phase the expert restarts from afterwards:
# above the object (descend -> approach) or above the hole (insert -> carry).
_RETRY_FROM = {"descend": "approach", "insert": "carry"}


class SloppyOperator:
    """A hesitant, imprecise person in the twin, for demos that a learned policy can beat: the
    wrapped expert's plan, executed slowly (speed drawn per episode), with hand tremor, pauses,
    and final approaches (grasp, insertion) abandoned and retried. Same interface as an expert
    (reset, act, progress, phase); plain NumPy, seeded, observations only."""

    operator = "sloppy"

    def __init__(self, expert: _Expert, cfg: SloppyConfig | None = None, seed=None):
        self.expert = expert
        self.task = expert.task
        self.cfg = cfg or SloppyConfig()
        # a stream of its own: the expert's noise draws stay what they are with the same seed
        self.rng = np.random.default_rng(None if seed is None else [int(seed), 1])
        self.reset()

    @property
    def phase(self) -> str:
        return self.expert.phase

    def reset(self) -> None:
        self.expert.reset()
        self.speed = float(self.rng.uniform(*self.cfg.speed))
        self.paused = 0  # steps of pause left
        self.backing = 0  # steps of backing off left
        self.abort_in = None  # steps until the current final approach is abandoned (None: it is not)
        self.back_offs = 0
        self.grip = -1.0  # the last gripper command (held through pauses and back-offs)
        self.prev_phase = None

    def _int(self, lo_hi) -> int:
        return int(self.rng.integers(lo_hi[0], lo_hi[1] + 1))

    def _hold(self, vz: float = 0.0) -> np.ndarray:
        a = np.zeros(self.expert.spec.dim, np.float32)
        a[2] = vz
        a[-1] = self.grip
        return a

    def act(self, obs) -> np.ndarray:
        cfg = self.cfg
        if self.paused > 0:  # the expert is not asked: its plan (phase, counters) waits too
            self.paused -= 1
            return self._hold()
        if self.backing > 0:
            self.backing -= 1
            if self.backing == 0:
                self.expert.phase = _RETRY_FROM[self.expert.phase]
            return self._hold(cfg.back_off_speed)
        if self.rng.random() < cfg.pause_prob:
            self.paused = self._int(cfg.pause_steps) - 1
            return self._hold()
        a = np.asarray(self.expert.act(obs), np.float32).copy()
        phase = self.expert.phase
        if phase in _RETRY_FROM and phase != self.prev_phase:  # a final approach begins
            self.abort_in = None
            if self.back_offs < cfg.max_back_offs and self.rng.random() < cfg.back_off_prob:
                self.abort_in = self._int(cfg.back_off_after)
        self.prev_phase = phase
        self.grip = float(a[-1])
        if phase in _RETRY_FROM and self.abort_in is not None:
            self.abort_in -= 1
            if self.abort_in <= 0:
                self.abort_in, self.back_offs = None, self.back_offs + 1
                self.backing = self._int(cfg.back_off_steps) - 1
                self.prev_phase = None  # the retried approach is a new one
                if self.backing == 0:
                    self.expert.phase = _RETRY_FROM[phase]
                return self._hold(cfg.back_off_speed)
        v = a[:-1] * self.speed
        v += self.rng.normal(0.0, 1.0, v.shape) * cfg.tremor * np.abs(v).max()
        a[:-1] = v
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def progress(self, obs) -> float:
        return self.expert.progress(obs)


OPERATORS = ("expert", "sloppy")  # who makes demos: the scripted expert, or a hesitant person


def make_expert(task: str = "pick_cube", noise: float = 0.0, seed=None, task_params=None,
                action_spec: ActionSpec | None = None, config=None, operator: str = "expert"):
    """Scripted expert for a twin task. Its task_params and action_spec must match the env's:
    pass them, or the env's TwinConfig as `config` (then task comes from it too).
    operator="sloppy" wraps it in a SloppyOperator (slow, hesitant; 2-3x the expert's steps)."""
    if config is not None:
        task, task_params, action_spec = config.task, config.task_params, config.action_spec
    if task not in EXPERTS:
        raise ValueError(f"no expert for task {task!r}; experts exist for {sorted(EXPERTS)}")
    if operator not in OPERATORS:
        raise ValueError(f"operator must be one of {OPERATORS}, got {operator!r}")
    expert = EXPERTS[task](task_params=task_params, noise=noise, seed=seed, action_spec=action_spec)
    return SloppyOperator(expert, seed=seed) if operator == "sloppy" else expert
