"""Scripted experts: act from the observation dict only (obs["proprio"], obs["object"]), never
from simulator internals, so the teleop node can run them on observations rebuilt from ROS
messages. Stateful phases; `noise` adds Gaussian noise (std, in normalised action units).

    expert = make_expert("pick_cube", noise=0.1, seed=0)
    expert.reset()
    action = expert.act(obs)          # float32, ActionSpec dim, in [-1, 1]
    expert.progress(obs)              # metres still to go (0 when done); falls as it works
"""
from __future__ import annotations

import numpy as np

from robot_rl.spec import ActionSpec
from robot_rl.twin.task_params import task_params as resolve_task_params


class _Expert:
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
        reach = 0.0 if np.linalg.norm(ee - cube) < 0.02 else float(np.linalg.norm(ee - cube))
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


def make_expert(task: str = "pick_cube", noise: float = 0.0, seed=None, task_params=None,
                action_spec: ActionSpec | None = None, config=None):
    """Scripted expert for a twin task. Its task_params and action_spec must match the env's:
    pass them, or the env's TwinConfig as `config` (then task comes from it too)."""
    if config is not None:
        task, task_params, action_spec = config.task, config.task_params, config.action_spec
    if task not in EXPERTS:
        raise ValueError(f"no expert for task {task!r}; experts exist for {sorted(EXPERTS)}")
    return EXPERTS[task](task_params=task_params, noise=noise, seed=seed, action_spec=action_spec)
