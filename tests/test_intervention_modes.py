"""What a human's steps are to the learner (MixedReplay `interventions`, the learner's
`interventions` parameter): "demo" puts each intervention segment on the demo side as it happens
(HIL-SERL), "successful" only those of an episode that ends in success, "online" none. Every
intervened step stays online experience in all three. Live and from a store alike."""
import numpy as np
import pytest

from robot_rl.data.replay import INTERVENTION_MODES, MixedReplay
from robot_rl.data.store import EpisodeStore

from test_self_imitation import SCHEMA, demo_values, live_episode, step


def mix(mode):
    return MixedReplay.create(SCHEMA, capacity=2000, chunk=2, interventions=mode)


def test_demo_mode_takes_every_segment_at_once():
    m = mix("demo")
    for t in range(10):  # the segment is on the demo side before the episode ends
        m.add_step(step(100 + t, intervened=t in (3, 4, 5)))
    assert {103, 104, 105} <= demo_values(m) and 102 not in demo_values(m)
    m.end_episode({"proprio": np.zeros(3, np.float32)})
    live_episode(m, 10, 200, success=False, intervened_at=(1, 2))
    assert {201, 202} <= demo_values(m)


@pytest.mark.parametrize("mode", INTERVENTION_MODES)
def test_segments_join_the_demo_side_as_the_mode_says(mode):
    m = mix(mode)
    live_episode(m, 10, 100, success=False, intervened_at=(2, 3))  # helped, then failed
    live_episode(m, 10, 200, success=True, intervened_at=(4, 5, 6, 9))  # helped, then succeeded
    values = demo_values(m)
    assert ({102, 103} <= values) == (mode == "demo")
    assert ({204, 205, 206, 209} <= values) == (mode in ("demo", "successful"))
    assert not values & {100, 101, 104, 200, 203, 207, 208}  # the policy's own steps: never demos
    assert len(m.online) == 20  # every step is experience in every mode
    # ... imitated from the online side too only in "demo" mode: the BC terms weigh any row by
    # is_demo, so an online copy marked 1 would still be cloned in the other modes
    assert online_is_demo(m) == ({102, 103, 204, 205, 206, 209} if mode == "demo" else set())


def online_is_demo(m):
    rows = np.arange(m.online._next)
    b = m.online._gather(rows[m.online._valid(rows)])
    return set(b["obs"]["proprio"][b["is_demo"] > 0, 0].astype(int).tolist())


def test_a_successful_episodes_segment_is_closed_by_the_observation_after_it():
    m = mix("successful")
    live_episode(m, 8, 300, success=True, intervened_at=(2, 3))
    rows = np.arange(m.demo._next)
    b = m.demo._gather(rows[m.demo._valid(rows)])
    assert sorted(b["obs"]["proprio"][:, 0].astype(int)) == [302, 303]
    assert np.all(b["is_demo"] == 1)
    # the step after the segment (304) is the observation its last transition leads to
    last = m.demo._gather(np.array([1]))
    assert int(last["next_obs"]["proprio"][0, 0]) == 304


def test_from_store_follows_the_mode(tmp_path):
    with EpisodeStore.create(tmp_path / "run.zarr", SCHEMA) as s:
        for v0, ok in ((100, False), (200, True)):
            s.begin_episode(source="policy")
            for t in range(10):
                last = t == 9
                s.append_step(dict(step(v0 + t, reward=float(ok and last), terminated=ok and last,
                                        intervened=t in (2, 3)),
                                   truncated=not ok and last, policy_version=0, timestamp=0.1 * t, eval=False))
            s.end_episode({"proprio": np.zeros(3, np.float32)}, success=ok)
    got = {}
    for mode in INTERVENTION_MODES:
        m = MixedReplay.from_store(EpisodeStore.open(tmp_path / "run.zarr"), capacity=500, chunk=2,
                                   interventions=mode)
        got[mode] = demo_values(m)
        assert len(m.online) == 20
        assert online_is_demo(m) == ({102, 103, 202, 203} if mode == "demo" else set())
    assert got["demo"] == {102, 103, 202, 203}
    assert got["successful"] == {202, 203}
    assert got["online"] == set()


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="interventions"):
        mix("advice")
    from robot_rl.training.settings import LearnerSettings

    with pytest.raises(ValueError, match="interventions"):
        LearnerSettings(interventions="always")
