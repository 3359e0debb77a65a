"""make_env and the gymnasium registrations."""
from __future__ import annotations

import gymnasium as gym

from robot_rl.twin.config import TwinConfig
from robot_rl.twin.env import TwinEnv

ENV_IDS = {"pick_cube": "robot_rl/PickCube-v0", "peg_insert": "robot_rl/PegInsert-v0"}


def make_env(task: str | None = None, cameras=None, image_size=None, seed=None, randomize=None,
             cell=None, config: TwinConfig | dict | None = None, render_mode=None,
             **overrides) -> TwinEnv:
    """A twin env.

    task: "pick_cube" (default) | "peg_insert"; cameras: observation cameras, () = state only
    (default); image_size: int or (H, W), default 128; randomize: bool or a `randomize:` dict;
    cell: calibration YAML path (None: calibration/default_cell.yaml); config: a TwinConfig or a
    `twin:` dict to start from; overrides: any other TwinConfig field. Arguments left at None
    keep the config's value. `seed` seeds the first reset (done here when given).
    """
    base = config if isinstance(config, TwinConfig) else TwinConfig.from_dict(config)
    named = dict(task=task, cameras=None if cameras is None else tuple(cameras),
                 image_size=image_size, cell=cell, randomize=randomize)
    cfg = base.replace(**{k: v for k, v in named.items() if v is not None}, **overrides)
    env = TwinEnv(cfg, render_mode=render_mode)
    if seed is not None:
        env.reset(seed=seed)
    return env


def register_envs() -> None:
    """gym.make("robot_rl/PickCube-v0", cameras=("front",), ...) takes make_env's arguments."""
    for task, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=make_env, kwargs={"task": task})


register_envs()  # importing the factory makes gym.make("robot_rl/PickCube-v0") work
