"""MuJoCo digital twin of the robot cell: gymnasium env, controller, tasks, experts.

    env = make_env("pick_cube", cameras=("front", "wrist"), image_size=128, seed=0)
    expert = make_expert("pick_cube"); expert.reset(); obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(expert.act(obs))

Names are loaded on first use (PEP 562): a robot-side process that runs only a scripted expert
(robot_rl.twin.experts, plain NumPy) never loads MuJoCo.
"""
import importlib
import os

# Headless by default (EGL: Mesa llvmpipe on a CPU, the NVIDIA driver on a GPU); must be set
# before mujoco is imported to take effect.
os.environ.setdefault("MUJOCO_GL", "egl")

_WHERE = {
    "RandomizationConfig": "robot_rl.twin.config", "RobotConfig": "robot_rl.twin.config",
    "TwinConfig": "robot_rl.twin.config", "TwinEnv": "robot_rl.twin.env",
    "make_expert": "robot_rl.twin.experts", "ENV_IDS": "robot_rl.twin.factory",
    "make_env": "robot_rl.twin.factory", "register_envs": "robot_rl.twin.factory",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'robot_rl.twin' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
