"""Self-imitation (MixedReplay self_imitation, issue #21): the policy's own successful, unaided
episodes that are at least as fast as the teachers' join the demo side, and the bar moves with
them. Off by default."""
import numpy as np
import pytest

from robot_rl.data.replay import MixedReplay
from robot_rl.data.store import EpisodeStore

SCHEMA = {"proprio": ((3,), "<f4"), "action": ((2,), "<f4")}


def step(v, reward=0.0, terminated=False, intervened=False):
    return {"proprio": np.full(3, v, np.float32), "action": np.full(2, 0.1, np.float32),
            "reward": np.float32(reward), "terminated": terminated, "intervened": intervened}


def episode_arrays(T, v0, success=True):
    steps = [step(v0 + t, reward=float(success and t == T - 1), terminated=success and t == T - 1) for t in range(T)]
    return {k: np.stack([np.asarray(s[k]) for s in steps]) for k in ("proprio", "action", "reward", "terminated")}


def live_episode(mix, T, v0, success=True, intervened_at=()):
    for t in range(T):
        last = t == T - 1
        mix.add_step(step(v0 + t, reward=float(success and last), terminated=success and last,
                          intervened=t in intervened_at))
    mix.end_episode({"proprio": np.full(3, v0 + T, np.float32)})


def demo_values(mix):
    rows = np.arange(mix.demo._next)
    valid = rows[mix.demo._valid(rows)]
    return set(mix.demo._gather(valid)["obs"]["proprio"][:, 0].astype(int).tolist())


def teachers(self_imitation, lengths=(40, 50, 60), interventions="demo"):
    mix = MixedReplay.create(SCHEMA, capacity=2000, chunk=2, self_imitation=self_imitation,
                             interventions=interventions)
    for i, T in enumerate(lengths):
        mix.add_demo_episode(episode_arrays(T, 1000 * (i + 1)), {"proprio": np.zeros(3, np.float32)})
    return mix


def test_fast_unaided_success_joins_the_demo_side_and_raises_the_bar():
    mix = teachers(0.5)
    assert mix.teacher_lengths == [40, 50, 60]
    before = len(mix.demo)
    live_episode(mix, 30, 10_000)  # faster than the median teacher (50): promoted
    assert mix.promoted == 1 and len(mix.demo) == before + 30
    assert {10_000, 10_029} <= demo_values(mix)
    assert mix.teacher_lengths[-1] == 30
    b = mix.demo._gather(np.arange(mix.demo._next - 31, mix.demo._next - 1))
    assert np.all(b["is_demo"] == 1)
    # the bar is now the median of (30, 40, 50, 60) = 45: a 48-step success no longer qualifies
    live_episode(mix, 48, 20_000)
    assert mix.promoted == 1 and 20_000 not in demo_values(mix)
    assert len(mix.online) == 30 + 48  # the online side keeps every policy step either way


def test_failures_and_aided_episodes_are_never_promoted():
    mix = teachers(0.5)
    live_episode(mix, 10, 10_000, success=False)  # short, but it failed (truncated)
    live_episode(mix, 20, 20_000, intervened_at=(5, 6))  # a person helped
    assert mix.promoted == 0
    values = demo_values(mix)
    assert 10_000 not in values and 20_000 not in values
    assert {20_005, 20_006} <= values  # the intervention segment itself goes in (interventions "demo")


def test_off_by_default_and_bounds():
    mix = teachers(0.0)
    live_episode(mix, 5, 10_000)
    assert mix.promoted == 0 and 10_000 not in demo_values(mix)
    assert MixedReplay.create(SCHEMA, capacity=100).self_imitation == 0.0
    with pytest.raises(ValueError, match="self_imitation"):
        MixedReplay.create(SCHEMA, capacity=100, self_imitation=1.5)


def test_no_teacher_no_promotion_and_live_demos_count_as_teachers():
    mix = MixedReplay.create(SCHEMA, capacity=2000, chunk=2, self_imitation=1.0)
    live_episode(mix, 5, 10_000)  # nothing to compare against yet
    assert mix.promoted == 0
    for t in range(12):  # a live demo episode (teleoperated), successful
        mix.add_step(step(500 + t, reward=float(t == 11), terminated=t == 11), demo=True)
    mix.end_episode({"proprio": np.zeros(3, np.float32)})
    assert mix.teacher_lengths == [12]
    live_episode(mix, 12, 20_000)
    assert mix.promoted == 1


def test_from_store_takes_the_successful_demos_as_teachers(tmp_path):
    with EpisodeStore.create(tmp_path / "demos.zarr", SCHEMA) as s:
        for T, ok in ((20, True), (30, True), (8, False)):
            s.begin_episode(source="demo")
            for t in range(T):
                s.append_step(dict(step(t, reward=float(ok and t == T - 1), terminated=ok and t == T - 1),
                                   truncated=not ok and t == T - 1, policy_version=0, timestamp=0.1 * t,
                                   eval=False))
            s.end_episode({"proprio": np.zeros(3, np.float32)}, success=ok)
    mix = MixedReplay.from_store(EpisodeStore.open(tmp_path / "demos.zarr"), capacity=500, chunk=2,
                                 self_imitation=0.5)
    assert sorted(mix.teacher_lengths) == [20, 30]
    live_episode(mix, 24, 10_000)
    assert mix.promoted == 1
