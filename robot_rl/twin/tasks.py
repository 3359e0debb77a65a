"""Task definitions: the objects a task adds to the cell, how they are placed at reset, the
success check and the shaped reward. Parameters come from TwinConfig.task_params.

pick_cube   one cube on the table; success when it is lifted `lift_height` above its rest height.
            Tracked objects: ["cube"] (pose of its centre).
peg_insert  a square peg and a fixed block with a square hole `clearance` wider than the peg on
            each side; success when the peg's tip is `insert_depth` below the hole's rim.
            The peg starts in the gripper (peg_start="hand") or standing on the table ("table").
            Tracked objects: ["peg" (pose of its tip = bottom centre), "hole" (centre of the rim)].
"""
from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.twin.task_params import TABLE_Z, TASK_DEFAULTS, task_params


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


class Task:
    name = ""
    object_names: tuple = ()
    defaults: dict = {}
    default_max_steps = 100

    def __init__(self, params: dict | None = None):
        self.p = task_params(self.name, params)

    # -- model --
    def build(self, spec: mujoco.MjSpec) -> None:
        raise NotImplementedError

    def bind(self, model: mujoco.MjModel) -> None:
        """Cache ids after compile."""
        self.body_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) for n in self.object_names]

    # -- episode --
    def reset(self, env, rng: np.random.Generator) -> float:
        """Place the objects (data is reset, the arm already at its start). Returns the initial
        gripper command (> 0: closed)."""
        raise NotImplementedError

    def object_poses(self, data) -> list:
        return [(n, data.xpos[b].copy(), data.xquat[b].copy()) for n, b in zip(self.object_names, self.body_ids)]

    def success(self, data) -> bool:
        raise NotImplementedError

    def shaped_reward(self, data, ee_pos) -> float:
        raise NotImplementedError

    @staticmethod
    def _free_body(spec, name, pos):
        body = spec.worldbody.add_body(name=name, pos=list(pos))
        body.add_freejoint(name=f"{name}_joint")
        return body


class PickCube(Task):
    name = "pick_cube"
    object_names = ("cube",)
    defaults = TASK_DEFAULTS["pick_cube"]

    def build(self, spec):
        h = self.p["cube_half"]
        body = self._free_body(spec, "cube", (0.5, 0.0, TABLE_Z + h))
        body.add_geom(name="cube", type=mujoco.mjtGeom.mjGEOM_BOX, size=[h, h, h],
                      mass=self.p["cube_mass"], rgba=[0.85, 0.15, 0.1, 1], condim=4,
                      friction=[1.0, 0.01, 0.001])

    def bind(self, model):
        super().bind(model)
        self.qadr = model.jnt_qposadr[model.body_jntadr[self.body_ids[0]]]

    def reset(self, env, rng):
        x = rng.uniform(*self.p["x_range"])
        y = rng.uniform(*self.p["y_range"])
        yaw = rng.uniform(-self.p["yaw_range"], self.p["yaw_range"])
        env.data.qpos[self.qadr:self.qadr + 3] = [x, y, TABLE_Z + self.p["cube_half"]]
        env.data.qpos[self.qadr + 3:self.qadr + 7] = _yaw_quat(yaw)
        return -1.0

    def lifted(self, data) -> float:
        return data.xpos[self.body_ids[0], 2] - (TABLE_Z + self.p["cube_half"])

    def success(self, data):
        return bool(self.lifted(data) >= self.p["lift_height"])

    def shaped_reward(self, data, ee_pos):
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(data.xpos[self.body_ids[0]] - ee_pos))
        lift = np.clip(self.lifted(data) / self.p["lift_height"], 0.0, 1.0)
        return float(0.5 * reach + 0.5 * lift)


class PegInsert(Task):
    name = "peg_insert"
    object_names = ("peg", "hole")
    defaults = TASK_DEFAULTS["peg_insert"]

    def __init__(self, params=None):
        super().__init__(params)
        if self.p["peg_start"] not in ("hand", "table"):
            raise ValueError(f"peg_insert: peg_start must be 'hand' or 'table', got {self.p['peg_start']!r}")

    def build(self, spec):
        ph, L = self.p["peg_half"], self.p["peg_length"]
        peg = self._free_body(spec, "peg", (0.5, 0.2, TABLE_Z))
        peg.add_geom(name="peg", type=mujoco.mjtGeom.mjGEOM_BOX, size=[ph, ph, L / 2], pos=[0, 0, L / 2],
                     mass=self.p["peg_mass"], rgba=[0.1, 0.45, 0.85, 1], condim=4, friction=[1.0, 0.01, 0.001])
        w, B, h = ph + self.p["clearance"], self.p["block_half"], self.p["hole_depth"]
        hole = spec.worldbody.add_body(name="hole", pos=[0.5, 0.0, TABLE_Z + h], mocap=True)
        t = (B - w) / 2  # wall half thickness
        c = (B + w) / 2  # wall centre offset
        rgba = [0.3, 0.65, 0.3, 1]
        for i, (pos, size) in enumerate([
            ([c, 0, -h / 2], [t, B, h / 2]), ([-c, 0, -h / 2], [t, B, h / 2]),
            ([0, c, -h / 2], [w, t, h / 2]), ([0, -c, -h / 2], [w, t, h / 2]),
        ]):
            hole.add_geom(name=f"hole_wall{i}", type=mujoco.mjtGeom.mjGEOM_BOX, pos=pos, size=size, rgba=rgba)

    def bind(self, model):
        super().bind(model)
        self.qadr = model.jnt_qposadr[model.body_jntadr[self.body_ids[0]]]
        self.mocap = model.body_mocapid[self.body_ids[1]]

    def reset(self, env, rng):
        hx, hy = rng.uniform(*self.p["x_range"]), rng.uniform(*self.p["y_range"])
        env.data.mocap_pos[self.mocap] = [hx, hy, TABLE_Z + self.p["hole_depth"]]
        yaw = rng.uniform(-1, 1) * self.p["hole_yaw_range"] if self.p["hole_yaw_range"] else 0.0
        env.data.mocap_quat[self.mocap] = _yaw_quat(yaw)
        q = self.qadr
        if self.p["peg_start"] == "hand":
            ee, ee_quat = env.controller.ee_pos(), env.controller.ee_quat()
            depth = rng.uniform(*self.p["grip_depth_range"])
            axis = np.empty(9)
            mujoco.mju_quat2Mat(axis, ee_quat)
            z_ee = axis.reshape(3, 3)[:, 2]  # along the fingers
            env.data.qpos[q:q + 3] = ee + depth * z_ee
            env.data.qpos[q + 3:q + 7] = _peg_quat_in_hand(ee_quat)
            env.set_gripper_qpos(self.p["peg_half"])
            return 1.0
        while True:  # standing on the table, clear of the block
            px, py = rng.uniform(*self.p["peg_x_range"]), rng.uniform(*self.p["peg_y_range"])
            if np.hypot(px - hx, py - hy) > self.p["block_half"] * 1.414 + 0.06:
                break
        env.data.qpos[q:q + 3] = [px, py, TABLE_Z]
        env.data.qpos[q + 3:q + 7] = [1, 0, 0, 0]
        return -1.0

    def tip_below_rim(self, data) -> float:
        return data.mocap_pos[self.mocap][2] - data.xpos[self.body_ids[0], 2]

    def success(self, data):
        tip, rim = data.xpos[self.body_ids[0]], data.mocap_pos[self.mocap]
        yaw = 2.0 * np.arctan2(data.mocap_quat[self.mocap][3], data.mocap_quat[self.mocap][0])
        c, s = np.cos(yaw), np.sin(yaw)
        dx, dy = tip[:2] - rim[:2]
        in_hole = np.array([c * dx + s * dy, -s * dx + c * dy])  # offset in the hole's frame
        inside = np.all(np.abs(in_hole) <= self.p["peg_half"] + self.p["clearance"] + 1e-3)
        return bool(inside and self.tip_below_rim(data) >= self.p["insert_depth"])

    def shaped_reward(self, data, ee_pos):
        tip, rim = data.xpos[self.body_ids[0]], data.mocap_pos[self.mocap]
        goal = rim - np.array([0.0, 0.0, self.p["insert_depth"]])
        align = 1.0 - np.tanh(20.0 * np.linalg.norm(tip[:2] - rim[:2]))
        depth = 1.0 - np.tanh(10.0 * np.linalg.norm(tip - goal))
        return float(0.5 * align + 0.5 * depth)


def _peg_quat_in_hand(ee_quat) -> np.ndarray:
    """Peg upright (its z opposite the ee's z, which points along the fingers), yaw of the hand."""
    flip = np.array([0.0, 1.0, 0.0, 0.0])  # pi about x
    out = np.empty(4)
    mujoco.mju_mulQuat(out, ee_quat, flip)
    return out


TASKS = {PickCube.name: PickCube, PegInsert.name: PegInsert}


def make_task(name: str, params: dict | None = None) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name](params)
