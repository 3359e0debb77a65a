"""The actor's step bookkeeping: outcome arrives with the next observation, store before send."""
import numpy as np

from robot_rl.control.episode_log import EpisodeLog
from robot_rl.data.store import EpisodeStore

SCHEMA = {"proprio": ((8,), "<f4"), "object": ((7,), "<f4"), "action": ((4,), "<f4")}


def obs(i):
    return {"proprio": np.full(8, i, np.float32), "object": np.full(7, -i, np.float32)}


def status(ep, step, reward=0.0, term=False, trunc=False, success=False):
    return dict(reward=reward, terminated=term, truncated=trunc, success=success, episode=ep, step=step)


def test_steps_are_stored_before_they_are_sent(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    sent, ends = [], []

    def send(step, meta):
        assert store.n_steps == meta["index"] + 1  # already durable when it goes out
        sent.append((step, meta))

    log = EpisodeLog(store, send, lambda o, m: ends.append(m), {"task": "t"})
    for k in range(3):
        assert log.observe(obs(k), status(0, k))
        log.act(obs(k), np.full(4, k / 10, np.float32), intervened=k == 1, policy_version=5, t=k * 0.1, eval_mode=False)
    assert not log.observe(obs(3), status(0, 3, reward=1.0, term=True, success=True))
    assert store.n_steps == 3 and store.n_episodes == 1
    assert [m["index"] for _, m in sent] == [0, 1, 2]
    assert ends[0]["success"] and ends[0]["intervened"]
    ep = store.episode(0)
    np.testing.assert_array_equal(ep["reward"], [0, 0, 1])
    np.testing.assert_array_equal(ep["intervened"], [False, True, False])
    np.testing.assert_array_equal(store.final_obs(0)["proprio"], obs(3)["proprio"])
    # the next episode opens on its first observation
    assert log.observe(obs(10), status(1, 0))
    log.act(obs(10), np.zeros(4, np.float32), False, 6, 1.0, False)
    assert not log.observe(obs(11), status(1, 1, trunc=True))
    assert store.n_episodes == 2 and log.successes == 1


def test_episode_changed_under_the_actor_is_closed(tmp_path):
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    ends = []
    log = EpisodeLog(store, lambda s, m: None, lambda o, m: ends.append(m), {})
    log.observe(obs(0), status(0, 0))
    log.act(obs(0), np.zeros(4, np.float32), False, 0, 0.0, False)
    assert log.observe(obs(1), status(7, 0))  # a reset nobody announced
    assert ends[0]["interrupted"] and store.n_steps == 1 and store.n_episodes == 1
    assert store.episode(0)["truncated"][-1]


def test_a_restarted_log_keys_steps_by_their_place_in_the_store(tmp_path):
    """An actor restarted on its store continues the store's numbering, so a learner that also
    backfills from that store never mistakes a new step for one it has (or the reverse)."""
    store = EpisodeStore.create(tmp_path / "s.zarr", SCHEMA)
    log = EpisodeLog(store, lambda s, m: None, lambda o, m: None, {"task": "t"})
    for k in range(3):
        log.observe(obs(k), status(0, k))
        log.act(obs(k), np.zeros(4, np.float32), intervened=False, policy_version=0, t=k * 0.1, eval_mode=False)
    log.observe(obs(3), status(0, 3, reward=1.0, term=True, success=True))
    store.close()
    reopened = EpisodeStore.open(tmp_path / "s.zarr", "a")
    sent = []
    log2 = EpisodeLog(reopened, lambda s, m: sent.append(m), lambda o, m: None, {"task": "t"})
    for k in range(2):  # a new process: its own episode ids start again at 0
        log2.observe(obs(k), status(0, k))
        log2.act(obs(k), np.zeros(4, np.float32), intervened=False, policy_version=0, t=k * 0.1, eval_mode=False)
    assert sent == [{"episode": 1, "index": 3}]
