"""record_expert_episodes with a tiny fake gymnasium env (the spec's observation dict)."""
import gymnasium as gym
import numpy as np
import pytest

from robot_rl.data.record import record_expert_episodes
from robot_rl.data.replay import MixedReplay
from robot_rl.data.schema import SchemaError
from robot_rl.data.store import EpisodeStore
from robot_rl.spec import POSE_DIM, PROPRIO_DIM


class FakeReachEnv(gym.Env):
    """Move the end effector to a random target; a camera image shows the distance."""

    def __init__(self, image_size=12, max_steps=25):
        self.observation_space = gym.spaces.Dict({
            "proprio": gym.spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32),
            "object": gym.spaces.Box(-np.inf, np.inf, (POSE_DIM,), np.float32),
            "front": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
        })
        self.action_space = gym.spaces.Box(-1, 1, (4,), np.float32)
        self.max_steps, self.size = max_steps, image_size

    def _obs(self):
        proprio = np.concatenate([self.ee, [1, 0, 0, 0], [0.04]]).astype(np.float32)
        obj = np.concatenate([self.target, [1, 0, 0, 0]]).astype(np.float32)
        img = np.full((self.size, self.size, 3), min(255, int(1000 * np.linalg.norm(self.ee - self.target))), np.uint8)
        return {"proprio": proprio, "object": obj, "front": img}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.ee = np.zeros(3)
        self.target = self.np_random.uniform(-0.2, 0.2, 3)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.ee = self.ee + 0.05 * np.clip(action[:3], -1, 1)
        self.t += 1
        success = np.linalg.norm(self.ee - self.target) < 0.02
        return self._obs(), float(success), bool(success), self.t >= self.max_steps, {"success": bool(success)}


class ReachExpert:
    def __init__(self, gain=10.0):
        self.gain = gain
        self.resets = 0

    def reset(self):
        self.resets += 1

    def act(self, obs):
        delta = obs["object"][:3] - obs["proprio"][:3]
        return np.append(np.clip(self.gain * delta, -1, 1), 1.0).astype(np.float32)


def test_record_expert_episodes_round_trip(tmp_path):
    path = tmp_path / "demos.zarr"
    env, expert = FakeReachEnv(), ReachExpert()
    summary = record_expert_episodes(path, env, expert, n_episodes=4, seed=10, robot="fake")
    assert summary["episodes"] == 4 and expert.resets == 4
    store = EpisodeStore.open(path)
    assert store.n_episodes == 4 and store.n_steps == summary["steps"]
    # replay the same seeds by hand and compare everything that was stored
    for e in range(4):
        ep = store.episode(e)
        obs, _ = env.reset(seed=10 + e)
        for t in range(ep["meta"]["length"]):
            np.testing.assert_array_equal(ep["proprio"][t], obs["proprio"])
            np.testing.assert_array_equal(ep["front"][t], obs["front"])
            action = expert.act(obs)
            np.testing.assert_array_equal(ep["action"][t], action)
            obs, reward, term, trunc, info = env.step(action)
            assert ep["reward"][t] == reward and ep["terminated"][t] == term
        np.testing.assert_array_equal(ep["final_obs"]["proprio"], obs["proprio"])
        assert ep["meta"]["success"] == info["success"] and ep["meta"]["source"] == "demo"
        assert ep["meta"]["seed"] == 10 + e and ep["meta"]["robot"] == "fake"
        assert not ep["intervened"].any() and np.all(ep["policy_version"] == -1)
    assert summary["successes"] == int(store.episode_table()["success"].sum()) >= 3
    # demos feed the replay's demo side
    mix = MixedReplay.from_store(store, chunk=4)
    assert len(mix.demo) == store.n_steps and len(mix.online) == 0
    b = mix.sample(16, np.random.default_rng(0))
    assert np.all(b["is_demo"] == 1) and b["obs"]["front"].shape == (16, 12, 12, 3)


def test_record_caps_episode_length_and_appends(tmp_path):
    path = tmp_path / "demos.zarr"
    lazy = ReachExpert(gain=0.0)  # never reaches the target
    record_expert_episodes(path, FakeReachEnv(max_steps=1000), lazy, n_episodes=1, seed=0, max_steps=7)
    record_expert_episodes(path, FakeReachEnv(max_steps=1000), lazy, n_episodes=2, seed=1, max_steps=5,
                           source="policy")
    store = EpisodeStore.open(path)
    assert store.episode_table()["length"].tolist() == [7, 5, 5]
    assert store.episode_table()["source"].tolist() == ["demo", "policy", "policy"]
    assert store.read("truncated")[[6, 11, 16]].all() and store.read("truncated").sum() == 3
    with pytest.raises(SchemaError, match="'front'"):
        record_expert_episodes(path, FakeReachEnv(image_size=8), lazy, n_episodes=1, seed=0)
