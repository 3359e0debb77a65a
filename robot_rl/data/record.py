"""Record scripted-expert (or any `reset()`/`act(obs)` controller) episodes into an EpisodeStore.

Env-agnostic: any gymnasium env whose observation is a Dict of the spec's keys and whose action
is a Box works, the MuJoCo twin included."""
from __future__ import annotations

import time

import numpy as np

from robot_rl.data.schema import schema_from_spaces
from robot_rl.data.store import EpisodeStore

EXPERT_POLICY_VERSION = -1  # policy_version of steps no learned policy chose


def step_success(info: dict, reward: float) -> bool:
    """The env's success flag ("success" or gymnasium-robotics' "is_success"); an env without one
    counts a positive reward as success."""
    for key in ("success", "is_success"):
        if key in info:
            return bool(info[key])
    return reward > 0


def expert_episode(env, expert, seed: int, max_steps: int | None = None):
    """One episode of a `reset()`/`act(obs)` controller: yields (obs, action, reward, terminated,
    truncated, next_obs, info) per step. The episode ends when the env terminates or truncates,
    or after `max_steps` (default: the env's max_episode_steps, else 10000), which counts as
    truncation. The one rollout of scripted experts: demo stores (record_expert_episodes) and
    pretrain's demos (robot_rl/training/pretrain.py) both come from here."""
    spec = getattr(env, "spec", None)
    limit = max_steps or (spec.max_episode_steps if spec is not None and spec.max_episode_steps else 10_000)
    obs, _ = env.reset(seed=int(seed))
    expert.reset()
    for t in range(limit):
        action = np.asarray(expert.act(obs), dtype=np.float32)
        next_obs, reward, terminated, truncated, info = env.step(action)
        truncated = bool(truncated) or t == limit - 1
        yield obs, action, float(reward), bool(terminated), truncated, next_obs, info
        if terminated or truncated:
            return
        obs = next_obs


def record_expert_episodes(store_path, env, expert, n_episodes: int, seed: int, source: str = "demo",
                           task: str | None = None, robot: str = "", calibration_id: str = "",
                           max_steps: int | None = None, progress=None) -> dict:
    """Run `n_episodes` episodes of `expert` in `env` (expert_episode, reset with seeds seed,
    seed+1, ...) and append every step to the store at `store_path` (created if absent, else
    its schema must match the env). An episode is a success if the env says so at its last step.
    Each episode's metadata holds its seed and, if the controller names one, its `operator`.

    Returns {"episodes", "steps", "successes", "store"}. `progress(episode, steps, success)` is
    called after each episode if given."""
    schema = schema_from_spaces(env.observation_space, env.action_space)
    obs_keys = [k for k in schema if k != "action"]
    spec = getattr(env, "spec", None)
    task = task if task is not None else (spec.id if spec is not None else type(env.unwrapped).__name__)
    total_steps = successes = 0
    # who made the demos (the twin's experts say "expert" or "sloppy"): learning that should beat
    # its teachers is judged against them, so every episode names its operator
    who = {"operator": expert.operator} if getattr(expert, "operator", None) else {}
    with EpisodeStore.open_or_create(store_path, schema, attrs={"task": task}) as store:
        for ep in range(n_episodes):
            store.begin_episode(task=task, source=source, robot=robot, calibration_id=calibration_id,
                                seed=int(seed) + ep, **who)
            n = 0
            for obs, action, reward, terminated, truncated, final_obs, info in expert_episode(
                    env, expert, int(seed) + ep, max_steps):
                store.append_step({**{k: obs[k] for k in obs_keys}, "action": action, "reward": reward,
                                   "terminated": terminated, "truncated": truncated,
                                   "intervened": False, "policy_version": EXPERT_POLICY_VERSION,
                                   "timestamp": time.time(), "eval": False})
                n += 1
            success = step_success(info, reward)
            store.end_episode(final_obs, success=success)
            total_steps += n
            successes += success
            if progress is not None:
                progress(ep, n, success)
    return {"episodes": n_episodes, "steps": total_steps, "successes": successes, "store": str(store_path)}
