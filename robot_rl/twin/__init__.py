"""MuJoCo digital twin of the robot cell: gymnasium env, controller, tasks, experts.

    env = make_env("pick_cube", cameras=("front", "wrist"), image_size=128, seed=0)
    expert = make_expert("pick_cube"); expert.reset(); obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(expert.act(obs))
"""
import os

# Headless by default (EGL: Mesa llvmpipe on a CPU, the NVIDIA driver on a GPU); must be set
# before mujoco is imported to take effect.
os.environ.setdefault("MUJOCO_GL", "egl")

from robot_rl.twin.config import RandomizationConfig, RobotConfig, TwinConfig  # noqa: E402
from robot_rl.twin.env import TwinEnv  # noqa: E402
from robot_rl.twin.experts import make_expert  # noqa: E402
from robot_rl.twin.factory import ENV_IDS, make_env, register_envs  # noqa: E402

register_envs()

__all__ = ["ENV_IDS", "RandomizationConfig", "RobotConfig", "TwinConfig", "TwinEnv", "make_env",
           "make_expert", "register_envs"]
