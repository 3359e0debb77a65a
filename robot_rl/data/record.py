"""Record scripted-expert (or any `reset()`/`act(obs)` controller) episodes into an EpisodeStore.

Env-agnostic: any gymnasium env whose observation is a Dict of the spec's keys and whose action
is a Box works, the MuJoCo twin included."""
from __future__ import annotations

import time

import numpy as np

from robot_rl.data.schema import schema_from_spaces
from robot_rl.data.store import EpisodeStore

EXPERT_POLICY_VERSION = -1  # policy_version of steps no learned policy chose


def episode_success(info: dict) -> bool:
    """The env's success flag at episode end ("success" or gymnasium-robotics' "is_success")."""
    return bool(info.get("success", info.get("is_success", False)))


def record_expert_episodes(store_path, env, expert, n_episodes: int, seed: int, source: str = "demo",
                           task: str | None = None, robot: str = "", calibration_id: str = "",
                           max_steps: int | None = None, progress=None) -> dict:
    """Run `n_episodes` episodes of `expert` in `env` (reset with seeds seed, seed+1, ...) and
    append every step to the store at `store_path` (created if absent, else its schema must
    match the env). An episode ends when the env terminates or truncates, or after `max_steps`
    (default: the env's max_episode_steps, else 10000), which counts as truncation.

    Returns {"episodes", "steps", "successes", "store"}. `progress(episode, steps, success)` is
    called after each episode if given."""
    schema = schema_from_spaces(env.observation_space, env.action_space)
    obs_keys = [k for k in schema if k != "action"]
    spec = getattr(env, "spec", None)
    task = task if task is not None else (spec.id if spec is not None else type(env.unwrapped).__name__)
    limit = max_steps or (spec.max_episode_steps if spec is not None and spec.max_episode_steps else 10_000)
    total_steps = successes = 0
    with EpisodeStore.open_or_create(store_path, schema, attrs={"task": task}) as store:
        for ep in range(n_episodes):
            obs, info = env.reset(seed=int(seed) + ep)
            expert.reset()
            store.begin_episode(task=task, source=source, robot=robot, calibration_id=calibration_id,
                                seed=int(seed) + ep)
            for t in range(limit):
                action = np.asarray(expert.act(obs), dtype=np.float32)
                next_obs, reward, terminated, truncated, info = env.step(action)
                truncated = bool(truncated) or t == limit - 1
                store.append_step({**{k: obs[k] for k in obs_keys}, "action": action, "reward": float(reward),
                                   "terminated": bool(terminated), "truncated": truncated,
                                   "intervened": False, "policy_version": EXPERT_POLICY_VERSION,
                                   "timestamp": time.time(), "eval": False})
                obs = next_obs
                if terminated or truncated:
                    break
            success = episode_success(info)
            store.end_episode(obs, success=success)
            total_steps += t + 1
            successes += success
            if progress is not None:
                progress(ep, t + 1, success)
    return {"episodes": n_episodes, "steps": total_steps, "successes": successes, "store": str(store_path)}
