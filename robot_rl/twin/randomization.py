"""Domain randomisation of the twin, drawn at reset from the env's seeded generator.

What it changes (each item switchable in RandomizationConfig): scene light intensity and
position, table/floor/object colours, table/floor textures, camera pose (jitter about the
calibrated pose), object mass and friction, arm servo gains, action latency. With `enabled=False` it touches nothing.
Nominal values are kept, so every reset draws around the calibrated/configured cell.
"""
from __future__ import annotations

import mujoco
import numpy as np

from robot_rl.twin.config import RandomizationConfig


class Randomizer:
    def __init__(self, model: mujoco.MjModel, cfg: RandomizationConfig, object_body_ids, arm_ctrl_idx,
                 camera_ids):
        self.m, self.cfg = model, cfg
        self.obj_geoms = np.array(
            [g for g in range(model.ngeom) if model.geom_bodyid[g] in set(object_body_ids)], dtype=int)
        self.free_bodies = np.array(
            [b for b in object_body_ids if model.body_jntnum[b] > 0 and model.body_mocapid[b] < 0], dtype=int)
        self.color_geoms = np.array(
            [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, n) for n in ("cell/table", "cell/floor")]
            + list(self.obj_geoms), dtype=int)
        self.surfaces = self.color_geoms[:2]  # table, floor
        self.dr_materials = np.array(
            [i for i in range(model.nmat)
             if (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_MATERIAL, i) or "").startswith("cell/dr_")],
            dtype=int)
        self.arm_act = np.asarray(arm_ctrl_idx, dtype=int)
        self.cams = np.asarray(camera_ids, dtype=int)
        self.nominal = {
            "light_diffuse": model.light_diffuse.copy(),
            "light_pos": model.light_pos.copy(),
            "headlight": model.vis.headlight.diffuse.copy(),
            "geom_rgba": model.geom_rgba.copy(),
            "mat_rgba": model.mat_rgba.copy(),
            "geom_matid": model.geom_matid.copy(),
            "cam_pos": model.cam_pos.copy(),
            "cam_quat": model.cam_quat.copy(),
            "body_mass": model.body_mass.copy(),
            "body_inertia": model.body_inertia.copy(),
            "geom_friction": model.geom_friction.copy(),
            "gainprm": model.actuator_gainprm.copy(),
            "biasprm": model.actuator_biasprm.copy(),
        }

    def restore(self) -> None:
        m, n = self.m, self.nominal
        m.light_diffuse[:] = n["light_diffuse"]
        m.light_pos[:] = n["light_pos"]
        m.vis.headlight.diffuse[:] = n["headlight"]
        m.geom_rgba[:] = n["geom_rgba"]
        m.mat_rgba[:] = n["mat_rgba"]
        m.geom_matid[:] = n["geom_matid"]
        m.cam_pos[:] = n["cam_pos"]
        m.cam_quat[:] = n["cam_quat"]
        m.body_mass[:] = n["body_mass"]
        m.body_inertia[:] = n["body_inertia"]
        m.geom_friction[:] = n["geom_friction"]
        m.actuator_gainprm[:] = n["gainprm"]
        m.actuator_biasprm[:] = n["biasprm"]

    def apply(self, rng: np.random.Generator) -> int:
        """Draw a new cell; returns the extra action latency (control steps)."""
        c, m, n = self.cfg, self.m, self.nominal
        if not c.enabled:
            return 0
        self.restore()
        if c.light_diffuse:
            s = rng.uniform(*c.light_diffuse)
            m.light_diffuse[:] = n["light_diffuse"] / max(n["light_diffuse"].max(), 1e-6) * s
            m.vis.headlight.diffuse[:] = n["headlight"] * s / 0.7
        if c.light_pos_jitter:
            m.light_pos[:] = n["light_pos"] + rng.uniform(-1, 1, n["light_pos"].shape) * c.light_pos_jitter
        if c.colors:
            m.geom_matid[self.color_geoms] = -1  # plain colours instead of the textures
            m.geom_rgba[self.color_geoms, :3] = rng.uniform(0.1, 0.9, (len(self.color_geoms), 3))
        if c.textures and len(self.dr_materials):
            # each surface: one of the spare textures (tinted by its rgba) or a plain colour
            choice = rng.integers(-1, len(self.dr_materials), len(self.surfaces))
            m.geom_matid[self.surfaces] = np.where(choice >= 0, self.dr_materials[choice], -1)
            if not c.colors:
                m.geom_rgba[self.surfaces, :3] = 1.0
        if c.camera_pos_jitter and len(self.cams):
            m.cam_pos[self.cams] = n["cam_pos"][self.cams] + rng.uniform(
                -c.camera_pos_jitter, c.camera_pos_jitter, (len(self.cams), 3))
        if c.camera_rot_jitter and len(self.cams):
            for cam in self.cams:
                axis = rng.normal(size=3)
                dq = np.empty(4)
                mujoco.mju_axisAngle2Quat(dq, axis / np.linalg.norm(axis), rng.uniform(-1, 1) * c.camera_rot_jitter)
                q = np.empty(4)
                mujoco.mju_mulQuat(q, n["cam_quat"][cam], dq)
                m.cam_quat[cam] = q
        if c.object_mass_scale and len(self.free_bodies):
            s = rng.uniform(*c.object_mass_scale, len(self.free_bodies))
            m.body_mass[self.free_bodies] = n["body_mass"][self.free_bodies] * s
            m.body_inertia[self.free_bodies] = n["body_inertia"][self.free_bodies] * s[:, None]
        if c.friction_scale and len(self.obj_geoms):
            s = rng.uniform(*c.friction_scale, len(self.obj_geoms))
            m.geom_friction[self.obj_geoms, 0] = n["geom_friction"][self.obj_geoms, 0] * s
        if c.gain_scale:
            s = rng.uniform(*c.gain_scale, len(self.arm_act))
            a = self.arm_act
            m.actuator_gainprm[a, 0] = n["gainprm"][a, 0] * s
            m.actuator_biasprm[a, 1] = n["biasprm"][a, 1] * s
            m.actuator_biasprm[a, 2] = n["biasprm"][a, 2] * np.sqrt(s)
        if c.latency_steps:
            return int(rng.integers(c.latency_steps[0], c.latency_steps[1] + 1))
        return 0
