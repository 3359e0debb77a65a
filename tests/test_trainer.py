"""The learner node's work loop without ROS: ingest, UTD, progress for learner sync, publishing."""
import time

import numpy as np

from robot_rl.data.replay import MixedReplay
from robot_rl.learn import make_agent
from robot_rl.spec import ObsSpec
from robot_rl.training.trainer import Trainer

SCHEMA = {"proprio": ((8,), "<f4"), "object": ((7,), "<f4"), "action": ((4,), "<f4")}
SPEC = ObsSpec({"proprio": (8,), "object": (7,)}, {"proprio": "<f4", "object": "<f4"})


def _step(rng, intervened=False, terminated=False):
    return {"proprio": rng.normal(size=8).astype(np.float32), "object": rng.normal(size=7).astype(np.float32),
            "action": rng.uniform(-1, 1, 4).astype(np.float32), "reward": np.float32(terminated),
            "terminated": terminated, "truncated": False, "intervened": intervened,
            "policy_version": np.int32(0), "timestamp": 0.0, "eval": False}


def test_trainer_keeps_utd_reports_progress_and_publishes(tmp_path):
    agent = make_agent("flow", SPEC, 4, {"chunk_len": 2, "actor_hidden": [32], "critic_hidden": [32], "n_critics": 2})
    replay = MixedReplay.create(SCHEMA, 1000, chunk=2, gamma=0.9)
    published, progress = [], []
    t = Trainer(agent, replay, lambda blob, v: published.append((len(blob), v)), utd=2, batch_size=8,
                min_steps=10, publish_every=5, on_progress=progress.append)
    rng = np.random.default_rng(0)
    t.start()
    try:
        for ep in range(4):
            for k in range(10):
                t.put_step(_step(rng, intervened=(ep == 0), terminated=(k == 9)))
            t.put_episode_end({"proprio": np.zeros(8, np.float32), "object": np.zeros(7, np.float32)})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and t.trained_steps < 40:
            time.sleep(0.05)
    finally:
        t.stop()
    assert t.error is None
    assert t.steps == 40 and t.episodes == 4
    assert t.critic_steps == 2 * t.updates == 2 * (40 - 10 + 1)  # UTD 2 from the 10th step on
    assert t.trained_steps == 40 and progress[-1] == 40
    assert progress == sorted(progress)  # progress never goes back
    assert [v for _, v in published] == list(range(1, t.updates // 5 + 1))  # every 5 updates, versions in order
    assert replay.demo.has_samples  # the human's steps reached the demo side


def test_progress_below_min_steps_does_not_block_the_actor():
    agent = make_agent("sac", SPEC, 4, {"chunk_len": 1, "actor_hidden": [16], "critic_hidden": [16], "n_critics": 2})
    t = Trainer(agent, MixedReplay.create(SCHEMA, 100, chunk=1), lambda b, v: None, utd=4, batch_size=4,
                min_steps=50, publish_every=100)
    t.steps = 30  # nothing to train on yet: everything received counts as caught up
    assert t.trained_steps == 30
    t.steps, t.critic_steps = 60, 40
    assert t.trained_steps == 49 + 10  # min_steps - 1 free steps, then 40 / utd 4
