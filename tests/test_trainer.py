"""The one training loop without ROS (robot_rl/training/loop.py) and the learner node's threaded
driver of it: ingest, UTD, progress for learner sync, publishing in memory, failures kept."""
import hashlib
import time

import numpy as np
import pytest

from robot_rl.data.replay import MixedReplay
from robot_rl.learn import make_agent
from robot_rl.learn.export import run_onnx
from robot_rl.spec import ObsSpec
from robot_rl.training.loop import TrainingDiverged, TrainingLoop
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
    replay = MixedReplay.create(SCHEMA, 1000, chunk=2, gamma=0.9, interventions="demo")
    published, progress = [], []
    t = Trainer(agent, replay, lambda blob, sha, v: published.append((blob, sha, v)), utd=2, batch_size=8,
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
    assert [v for _, _, v in published] == list(range(1, t.updates // 5 + 1))  # every 5 updates, in order
    blob, sha, _ = published[-1]  # handed over in memory, hashed once, and a working actor
    assert sha == hashlib.sha256(blob).hexdigest()
    obs = {"proprio": np.zeros((1, 8), np.float32), "object": np.zeros((1, 7), np.float32)}
    assert run_onnx(blob, obs).shape == (1, 2, 4)
    assert replay.demo.has_samples  # the human's steps reached the demo side


def test_progress_below_min_steps_does_not_block_the_actor():
    agent = make_agent("sac", SPEC, 4, {"chunk_len": 1, "actor_hidden": [16], "critic_hidden": [16], "n_critics": 2})
    t = Trainer(agent, MixedReplay.create(SCHEMA, 100, chunk=1), lambda b, s, v: None, utd=4, batch_size=4,
                min_steps=50, publish_every=100)
    t.loop.steps = 30  # nothing to train on yet: everything received counts as caught up
    assert t.trained_steps == 30
    t.loop.steps, t.loop.critic_steps = 60, 40
    assert t.trained_steps == 49 + 10  # min_steps - 1 free steps, then 40 / utd 4


def _loop(cfg=None, **kw):
    agent = make_agent("flow", SPEC, 4, {"chunk_len": 2, "actor_hidden": [16], "critic_hidden": [16], "n_critics": 2,
                                          **(cfg or {})}, device="cpu")
    return TrainingLoop(agent, MixedReplay.create(SCHEMA, 1000, chunk=2, gamma=0.9), **kw)


def test_the_loop_driven_inline_owes_utd_per_step_from_min_steps():
    """The schedule pretrain runs after each chunk: train() does exactly what is owed."""
    loop = _loop(utd=3, batch_size=4, min_steps=5)
    rng = np.random.default_rng(0)
    for k in range(4):
        loop.add_step(_step(rng))
    assert loop.train() == 0 and loop.updates == 0  # below min_steps
    for k in range(6):
        loop.add_step(_step(rng, terminated=(k == 5)))
    loop.end_episode({"proprio": np.zeros(8, np.float32), "object": np.zeros(7, np.float32)})
    assert loop.train() == 6 and loop.critic_steps == 3 * 6  # steps 5..10 owe 3 critic steps each
    assert loop.trained_steps == 10 and loop.episodes == 1 and loop.train() == 0


def test_a_diverged_update_stops_the_loop_and_the_trainer_keeps_the_error():
    """A learning rate no network survives: the first update's losses are NaN. Training on would
    publish garbage; the loop raises and the trainer keeps the error (the node fails with it)."""
    rng = np.random.default_rng(0)
    loop = _loop({"lr": 1e30}, utd=1, batch_size=8)
    for k in range(6):
        loop.add_step(_step(rng))
    with pytest.raises(TrainingDiverged, match="training diverged at update 1: non-finite "):
        loop.train()
    t = Trainer(loop.agent, loop.replay, lambda b, s, v: None, utd=1, batch_size=8, min_steps=1, publish_every=10)
    t.start()
    try:
        for k in range(6):
            t.put_step(_step(rng))
        deadline = time.monotonic() + 30
        while t.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        t.stop()
    assert isinstance(t.error, TrainingDiverged)
    assert t.trained_steps == t.steps == 6  # nobody waits for a dead trainer
