"""The twin as a gymnasium env: a MuJoCo cell that stands in for the robot.

One env step = one policy tick (control_dt, default 0.1 s): a normalised ee-velocity action
(robot_rl.spec.ActionSpec) -> Cartesian controller -> joint targets -> mj_step(nstep) with no
Python per physics substep. The observation is built with robot_rl.spec.proprio_vector /
object_vector from the same values the accessors (robot_state, object_poses) report, so the ROS
twin node and the actor node rebuild exactly this observation from messages.
"""
from __future__ import annotations

from collections import deque

import gymnasium as gym
import mujoco
import numpy as np

from robot_rl.calibration.cell import load_cell
from robot_rl.spec import object_vector, proprio_vector
from robot_rl.twin.assets import asset_path
from robot_rl.twin.config import TwinConfig
from robot_rl.twin.controller import CartesianController
from robot_rl.twin.randomization import Randomizer
from robot_rl.twin.rendering import CameraRenderer
from robot_rl.twin.scene import build_model, servo_name
from robot_rl.twin.tasks import make_task


_POS_BOUND = 10.0  # m; finite bounds for the Box spaces, far beyond any cell


def _ids(model, kind, names, what):
    out = []
    for n in names:
        i = mujoco.mj_name2id(model, kind, n)
        if i < 0:
            raise ValueError(f"twin.robot.{what}: the model has no {kind.name[6:].lower()} {n!r}")
        out.append(i)
    return np.array(out, dtype=int)


class TwinEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, config: TwinConfig | None = None, render_mode: str | None = None):
        self.cfg = cfg = config or TwinConfig()
        self.render_mode = render_mode
        self.action_spec = cfg.action_spec
        self.cell = load_cell(cfg.cell or asset_path("calibration", "default_cell.yaml"))
        for name in cfg.cameras:
            self.cell.camera(name)  # KeyError naming the cameras the cell has
        self.task = make_task(cfg.task, cfg.task_params)
        self.model = build_model(cfg, self.cell, self.task)
        self.data = mujoco.MjData(self.model)
        self.task.bind(self.model)
        self.metadata = {**self.metadata, "render_fps": cfg.control_hz}

        m, r = self.model, cfg.robot
        self.arm_joint_ids = _ids(m, mujoco.mjtObj.mjOBJ_JOINT, r.arm_joints, "arm_joints")
        self.grip_joint_ids = _ids(m, mujoco.mjtObj.mjOBJ_JOINT, r.gripper_joints, "gripper_joints")
        self.arm_qpos = m.jnt_qposadr[self.arm_joint_ids]
        self.arm_dof = m.jnt_dofadr[self.arm_joint_ids]
        self.grip_qpos = m.jnt_qposadr[self.grip_joint_ids]
        self.grip_dof = m.jnt_dofadr[self.grip_joint_ids]
        self.arm_act = self._arm_actuators()
        if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, r.gripper_actuator) >= 0:
            grip_names = [r.gripper_actuator]
        else:  # the servos scene.py added, one per gripper joint, driven alike
            grip_names = [servo_name(j) for j in r.gripper_joints]
        self.grip_act = _ids(m, mujoco.mjtObj.mjOBJ_ACTUATOR, grip_names, "gripper_actuator")
        self.ee_site = int(_ids(m, mujoco.mjtObj.mjOBJ_SITE, [r.ee_site], "ee_site")[0])
        self.joint_names = tuple(r.arm_joints) + tuple(r.gripper_joints)
        self.camera_names = tuple(cfg.cameras)
        self.camera_ids = {n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, n) for n in self.cell.cameras}

        self.controller = CartesianController(
            m, self.data, self.arm_qpos, self.arm_dof, self.arm_act, self.ee_site, r.home_qpos,
            cfg.workspace_min, cfg.workspace_max, damping=cfg.ik_damping, leash=cfg.target_leash)
        self.randomizer = Randomizer(m, cfg.randomize, self.task.body_ids, self.arm_act,
                                     list(self.camera_ids.values()))
        self.renderer = CameraRenderer(m, *cfg.image_size)
        self.n_substeps = cfg.n_substeps
        self.control_dt = cfg.control_dt
        self.max_episode_steps = cfg.max_episode_steps or self.task.default_max_steps
        self._down_quat = np.asarray(r.ee_down_quat, np.float64)

        H, W = cfg.image_size
        k = len(self.task.object_names)
        pose_hi = np.array([_POS_BOUND] * 3 + [1.0] * 4, np.float32)
        spaces = {
            "proprio": gym.spaces.Box(np.append(-pose_hi, 0.0).astype(np.float32),
                                      np.append(pose_hi, 1.0).astype(np.float32), (8,), np.float32),
            "object": gym.spaces.Box(np.tile(-pose_hi, k), np.tile(pose_hi, k), (7 * k,), np.float32),
        }
        for name in self.camera_names:
            spaces[name] = gym.spaces.Box(0, 255, (H, W, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_spec.dim,), np.float32)
        self._queue: deque = deque()
        self._latency = cfg.latency_steps
        self._steps = 0
        self._grip_cmd = -1.0
        self._clock_base = -self.control_dt  # the first reset brings it to 0

    def _arm_actuators(self) -> np.ndarray:
        m, r = self.model, self.cfg.robot
        if r.arm_actuators:
            return _ids(m, mujoco.mjtObj.mjOBJ_ACTUATOR, r.arm_actuators, "arm_actuators")
        by_joint = {int(m.actuator_trnid[i, 0]): i for i in range(m.nu)
                    if m.actuator_trntype[i] == mujoco.mjtTrn.mjTRN_JOINT}
        return np.array([by_joint[int(j)] for j in self.arm_joint_ids], dtype=int)

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        rng = self.np_random
        m, d = self.model, self.data
        extra_latency = self.randomizer.apply(rng)
        if self.cfg.randomize.enabled:
            # masses/inertias changed: recompute what MuJoCo derives from them at compile time
            # (constraint regularisation uses them; stale values make grasps blow up)
            mujoco.mj_setConst(m, d)
        self._clock_base += d.time + self.control_dt  # the settle step below counts too
        mujoco.mj_resetData(m, d)
        d.qpos[self.arm_qpos] = self.cfg.robot.home_qpos
        start = np.asarray(self.cfg.home_ee_pos) + rng.uniform(-1, 1, 3) * self.cfg.init_ee_noise
        start = np.clip(start, self.cfg.workspace_min, self.cfg.workspace_max)
        q = self.controller.solve(start, self._down_quat)
        d.ctrl[self.arm_act] = q
        self.set_gripper_qpos(self.cfg.robot.gripper_ctrl_open)
        self._grip_cmd = self.task.reset(self, rng)
        self._apply_grip(self._grip_cmd)
        d.qvel[:] = 0.0
        mujoco.mj_forward(m, d)
        mujoco.mj_step(m, d, self.n_substeps)  # settle contacts (a grasped peg) before t = 0
        d.time = 0.0
        self._sync()
        self.controller.reset(self._down_quat if not self.cfg.rotation else self.controller.ee_quat())
        self._latency = self.cfg.latency_steps + extra_latency
        self._queue = deque()
        self._steps = 0
        return self._obs(), self._info()

    def step(self, action):
        a = np.asarray(action, np.float32).reshape(-1)
        if a.shape != (self.action_spec.dim,):
            raise ValueError(f"action has shape {a.shape}, expected ({self.action_spec.dim},)")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action has non-finite values: {a}")
        if self._latency:
            self._queue.append(a)
            a = self._queue.popleft() if len(self._queue) > self._latency else None
        if a is not None:
            twist, grip = self.action_spec.to_command(a)
            self.controller.command(twist, self.control_dt)
            self._grip_cmd = grip
            self._apply_grip(grip)
        else:  # nothing has arrived yet: hold the reference
            self.controller.command(np.zeros(6), self.control_dt)
        mujoco.mj_step(self.model, self.data, self.n_substeps)
        self._sync()
        self._steps += 1
        success = self.task.success(self.data)
        if self.cfg.reward == "sparse":
            reward = 1.0 if success else 0.0
        else:
            reward = 1.0 if success else self.task.shaped_reward(self.data, self.controller.ee_pos())
        terminated = bool(success and self.cfg.terminate_on_success)
        truncated = bool(self._steps >= self.max_episode_steps and not terminated)
        return self._obs(), float(reward), terminated, truncated, self._info(success)

    def render(self, camera_name: str | None = None) -> np.ndarray:
        """uint8 (H, W, 3) image of a camera (default: the first observation camera, else front)."""
        name = camera_name or (self.camera_names[0] if self.camera_names else next(iter(self.camera_ids)))
        if name not in self.camera_ids:
            raise KeyError(f"no camera {name!r}; the cell has {sorted(self.camera_ids)}")
        return self.renderer.render(self.data, name)

    def close(self):
        self.renderer.close()

    # ------------------------------------------------------------------ accessors (ROS twin node)
    @property
    def sim_time(self) -> float:
        """Seconds of simulated time since the env was made: monotonic across resets, so the
        ROS twin node can publish it as /clock."""
        return float(self._clock_base + self.data.time)

    def robot_state(self) -> dict:
        d = self.data
        qpos = np.concatenate([d.qpos[self.arm_qpos], d.qpos[self.grip_qpos]])
        qvel = np.concatenate([d.qvel[self.arm_dof], d.qvel[self.grip_dof]])
        return dict(
            joint_names=self.joint_names,
            joint_pos=qpos,
            joint_vel=qvel,
            ee_pos=self.controller.ee_pos(),
            ee_quat=self.controller.ee_quat(),
            gripper_width=self.gripper_width(),
        )

    def object_poses(self) -> list:
        """[(name, position(3), quaternion wxyz(4))] of the task's tracked objects, base frame."""
        return self.task.object_poses(self.data)

    def camera_info(self, name: str) -> dict:
        """Calibration of a camera at the rendered size (the twin renders ideal pinhole images,
        so D is zeros; `calibration_D` is the real camera's)."""
        cam = self.cell.camera(name)
        H, W = self.cfg.image_size
        K = cam.scaled_K(W, H)
        return dict(
            width=W, height=H, K=K, D=np.zeros(5), distortion_model="plumb_bob",
            R=np.eye(3), P=np.hstack([K, np.zeros((3, 1))]),  # sensor_msgs/CameraInfo's R, P
            calibration_D=np.asarray(cam.distortion), frame_id=cam.frame_id,
            parent=cam.parent, extrinsic=cam.extrinsic.copy(),
        )

    def gripper_width(self) -> float:
        return float(self.cfg.robot.gripper_width_scale * self.data.qpos[self.grip_qpos].sum())

    # ------------------------------------------------------------------ internals
    def set_gripper_qpos(self, opening_per_finger: float) -> None:
        self.data.qpos[self.grip_qpos] = opening_per_finger

    def _apply_grip(self, grip: float) -> None:
        r = self.cfg.robot
        self.data.ctrl[self.grip_act] = r.gripper_ctrl_closed if grip > 0 else r.gripper_ctrl_open

    def _sync(self) -> None:
        # mj_step leaves positions-derived quantities one substep stale; refresh what obs,
        # jacobians and rendering read.
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def _obs(self) -> dict:
        s = self.robot_state_vector()
        obs = {"proprio": s, "object": object_vector((p, q) for _, p, q in self.object_poses())}
        for name in self.camera_names:
            obs[name] = self.render(name)
        return obs

    def robot_state_vector(self) -> np.ndarray:
        return proprio_vector(self.controller.ee_pos(), self.controller.ee_quat(), self.gripper_width())

    def _info(self, success: bool | None = None) -> dict:
        if success is None:
            success = self.task.success(self.data)
        return {"success": bool(success)}
