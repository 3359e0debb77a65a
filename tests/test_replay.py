"""ReplayBuffer / MixedReplay: batch format, chunk + n-step targets, episode ends, mixing."""
import numpy as np
import pytest

from robot_rl.data.replay import MixedReplay, Prefetcher, ReplayBuffer, intervention_segments, to_torch
from robot_rl.data.schema import SchemaError
from robot_rl.data.store import EpisodeStore
from robot_rl.data.synthetic import make_schema, obs_at, step_at

STATE = {"proprio": ((8,), "<f4"), "action": ((2,), "<f4")}
IMG = make_schema(cameras=("front",), image_size=8)


def state_step(i, reward=0.0, terminated=False, truncated=False, intervened=False):
    return {"proprio": np.full(8, i, np.float32), "action": np.array([i, -i], np.float32), "reward": reward,
            "terminated": terminated, "truncated": truncated, "intervened": intervened}


def fill(buf, rewards, terminated, start=0, final=None):
    for t, r in enumerate(rewards):
        buf.add_step(state_step(start + t, r, terminated=terminated and t == len(rewards) - 1))
    buf.end_episode({"proprio": np.full(8, start + len(rewards) if final is None else final, np.float32)})


# None: numpy ring in host memory; "cpu": the torch ring (the code path of device="cuda")
DEVICES = [None, pytest.param("cpu", id="torch")]


def numpy_batch(batch):
    """Batch with torch tensors (device-resident replay) as numpy arrays."""
    if isinstance(batch, dict):
        return {k: numpy_batch(v) for k, v in batch.items()}
    return batch if isinstance(batch, np.ndarray) else batch.cpu().numpy()


def batch_for(buf, starts):
    """Gather the batch for given global row indices (bypasses random sampling)."""
    return numpy_batch(buf._gather(np.asarray(starts)))


@pytest.mark.parametrize("device", DEVICES)
def test_chunk_targets_match_hand_computation(device):
    g = 0.5
    buf = ReplayBuffer(STATE, capacity=64, chunk=3, gamma=g, device=device)
    fill(buf, [1.0, 2.0, 4.0, 8.0], terminated=True)  # rows 0-3 steps, row 4 = final obs
    fill(buf, [1.0, 1.0], terminated=False, start=100)  # truncated: rows 5,6 steps, row 7 final
    b = batch_for(buf, [0, 1, 2, 3, 5, 6])
    # t=0: full chunk, h=3: 1 + .5*2 + .25*4 = 3, next obs = step 3, bootstraps with g^3
    # t=1: h=3: 2 + 2 + 2 = 6, next = row 4 = final obs; step 3 terminates inside -> discount 0
    # t=2: h=2: 4 + .5*8 = 8, terminated inside -> discount 0
    # t=3: h=1: 8, terminated -> 0
    # t=5 (truncated episode): h=2: 1 + .5 = 1.5, bootstraps from the final obs with g^2
    # t=6: h=1: 1, g^1
    np.testing.assert_allclose(b["reward"], [3.0, 6.0, 8.0, 8.0, 1.5, 1.0])
    np.testing.assert_allclose(b["discount"], [g**3, 0.0, 0.0, 0.0, g**2, g])
    np.testing.assert_allclose(b["next_obs"]["proprio"][:, 0], [3, 4, 4, 4, 102, 102])
    np.testing.assert_allclose(b["obs"]["proprio"][:, 0], [0, 1, 2, 3, 100, 101])
    np.testing.assert_allclose(b["mask"], [[1, 1, 1], [1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0]])
    # padded actions repeat the last real one
    np.testing.assert_allclose(b["actions"][:, :, 0], [[0, 1, 2], [1, 2, 3], [2, 3, 3], [3, 3, 3],
                                                       [100, 101, 101], [101, 101, 101]])
    assert b["actions"].shape == (6, 3, 2) and b["actions"].dtype == np.float32
    for k in ("mask", "reward", "discount", "is_demo"):
        assert b[k].dtype == np.float32, k


def test_nstep_with_single_actions():
    buf = ReplayBuffer(STATE, capacity=64, chunk=1, nstep=3, gamma=0.9)
    fill(buf, [1.0, 1.0, 1.0, 1.0, 1.0], terminated=False)
    b = batch_for(buf, [0, 3])
    np.testing.assert_allclose(b["reward"], [1 + 0.9 + 0.81, 1 + 0.9])
    np.testing.assert_allclose(b["discount"], [0.9**3, 0.9**2], rtol=1e-6)
    assert b["actions"].shape == (2, 1, 2)
    np.testing.assert_allclose(b["next_obs"]["proprio"][:, 0], [3, 5])


@pytest.mark.parametrize("device", DEVICES)
def test_sampled_chunks_never_cross_episode_ends(device):
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(STATE, capacity=500, chunk=4, gamma=0.99, device=device)
    start = 0
    ends = []
    for T in [3, 1, 7, 2, 10]:
        fill(buf, [0.0] * T, terminated=False, start=start)
        start += T
        ends.append(start)
    b = numpy_batch(buf.sample(2000, rng))
    t0 = b["obs"]["proprio"][:, 0]
    ep_end = np.array([next(e for e in ends if e > t) for t in t0])
    acts = b["actions"][:, :, 0]
    real = b["mask"] > 0
    assert np.all(acts[real] < ep_end[:, None].repeat(4, 1)[real])  # every real action inside its episode
    np.testing.assert_array_equal(b["mask"].sum(1), np.minimum(4, ep_end - t0))
    np.testing.assert_array_equal(b["next_obs"]["proprio"][:, 0], np.minimum(t0 + 4, ep_end))
    assert set(np.unique(t0)) == set(range(start))  # every step is sampled, final rows never


def test_ring_overwrites_oldest_and_keeps_sampling_valid():
    rng = np.random.default_rng(1)
    buf = ReplayBuffer(STATE, capacity=20, chunk=2, gamma=0.9)
    start = 0
    for _ in range(10):
        fill(buf, [1.0] * 5, terminated=True, start=start)
        start += 5
    assert len(buf) <= 20
    b = buf.sample(500, rng)
    t0 = b["obs"]["proprio"][:, 0]
    assert t0.min() >= start - 20  # only recent steps
    nxt = b["next_obs"]["proprio"][:, 0]
    assert np.all((nxt - t0 >= 1) & (nxt - t0 <= 2))


def test_open_episode_is_sampled_once_rows_exist():
    rng = np.random.default_rng(2)
    buf = ReplayBuffer(STATE, capacity=50, chunk=3, gamma=0.9)
    for i in range(3):
        buf.add_step(state_step(i))
    assert not buf.has_samples
    with pytest.raises(RuntimeError, match="no sampleable"):
        buf.sample(4, rng)
    buf.add_step(state_step(3))
    b = buf.sample(32, rng)
    assert set(b["obs"]["proprio"][:, 0]) == {0.0}
    assert np.all(b["mask"] == 1)


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_replay_ratio_and_interventions(device):
    rng = np.random.default_rng(3)
    mix = MixedReplay.create(STATE, capacity=1000, chunk=2, gamma=0.9, device=device, interventions="demo")
    for t in range(10):  # a demo episode: demo side only
        mix.add_step(state_step(1000 + t), demo=True)
    mix.end_episode({"proprio": np.full(8, 1010, np.float32)})
    b = numpy_batch(mix.sample(64, rng))
    assert np.all(b["is_demo"] == 1)  # online side empty: all demos
    # online episode with an intervention on steps 3..5
    for t in range(10):
        mix.add_step(state_step(t, intervened=3 <= t < 6))
    mix.end_episode({"proprio": np.full(8, 10, np.float32)})
    assert len(mix.online) == 10 and len(mix.demo) == 13
    b = numpy_batch(mix.sample(1000, rng))
    src = b["obs"]["proprio"][:, 0]
    from_demo = slice(0, 500)
    assert np.all((src[from_demo] >= 1000) | ((src[from_demo] >= 3) & (src[from_demo] < 6)))
    assert np.all(src[500:] < 10)
    # intervention segment (3,4,5) ends with the observation of step 6, and bootstraps
    seg = src[from_demo] == 5
    assert seg.any()
    np.testing.assert_allclose(b["next_obs"]["proprio"][from_demo][seg, 0], 6)
    np.testing.assert_allclose(b["mask"][from_demo][seg], [[1, 0]] * seg.sum())
    assert np.all(b["is_demo"][:500] == 1)
    np.testing.assert_array_equal(b["is_demo"][500:], ((src[500:] >= 3) & (src[500:] < 6)).astype(np.float32))


def test_from_store_matches_live_filling(tmp_path):
    schema = IMG
    path = tmp_path / "run.zarr"
    live = MixedReplay.create(schema, capacity=200, chunk=3, gamma=0.9, interventions="demo")
    with EpisodeStore.create(path, schema) as s:
        i = 0
        for e, (T, source) in enumerate([(6, "demo"), (8, "policy"), (5, "intervention")]):
            s.begin_episode(source=source)
            for t in range(T):
                step = step_at(schema, i, intervened=source == "intervention" and t >= 2, terminated=t == T - 1)
                s.append_step(step)
                live.add_step(step, demo=source == "demo")
                i += 1
            s.end_episode(obs_at(schema, 500 + e))
            live.end_episode(obs_at(schema, 500 + e))
    loaded = MixedReplay.from_store(EpisodeStore.open(path), chunk=3, gamma=0.9, interventions="demo")
    assert (len(loaded.demo), len(loaded.online)) == (len(live.demo), len(live.online)) == (6 + 3, 13)
    for side in ("demo", "online"):
        a, b = getattr(loaded, side), getattr(live, side)
        rows = np.arange(a._next)
        ba, bb = a._gather(rows[a._valid(rows)]), b._gather(rows[b._valid(rows)])
        for k in ("actions", "mask", "reward", "discount", "is_demo"):
            np.testing.assert_allclose(ba[k], bb[k], err_msg=f"{side} {k}")
        np.testing.assert_array_equal(ba["next_obs"]["front"], bb["next_obs"]["front"])


def test_from_store_filters_and_drops_last_step_of_interrupted(tmp_path):
    path = tmp_path / "run.zarr"
    s = EpisodeStore.create(path, IMG)
    for e, source in enumerate(["demo", "policy"]):
        s.begin_episode(source=source)
        for t in range(4):
            s.append_step(step_at(IMG, 10 * e + t))
        s.end_episode(obs_at(IMG, 99), success=e == 0)
    s.begin_episode(source="policy")
    for t in range(3):
        s.append_step(step_at(IMG, 20 + t))
    s.close()
    store = EpisodeStore.open(path, "a")  # closes the third episode as interrupted
    assert len(ReplayBuffer.from_store(store, sources="demo")) == 4
    assert len(ReplayBuffer.from_store(store, success_only=True)) == 4
    buf = ReplayBuffer.from_store(store, episodes=[2], chunk=2, obs_keys=("proprio",))
    assert len(buf) == 2
    b = buf._gather(np.array([0, 1]))
    np.testing.assert_allclose(b["next_obs"]["proprio"][:, 0], [22, 22])
    assert set(b["obs"]) == {"proprio"}


def test_bad_step_names_key():
    buf = ReplayBuffer(STATE, capacity=10)
    step = state_step(0)
    del step["reward"]
    with pytest.raises(SchemaError, match="'reward'"):
        buf.add_step(step)
    with pytest.raises(SchemaError, match="'proprio'"):
        buf.add_step({**state_step(0), "proprio": np.zeros(3, np.float32)})


def test_intervention_segments():
    assert intervention_segments([0, 1, 1, 0, 1]) == [(1, 3), (4, 5)]
    assert intervention_segments([]) == []


def test_to_torch_and_prefetch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    buf = ReplayBuffer(IMG, capacity=100, chunk=2)
    for t in range(10):
        buf.add_step(step_at(IMG, t))
    buf.end_episode(obs_at(IMG, 10))
    with Prefetcher(lambda: buf.sample(8, rng), depth=2, device="cpu") as pf:
        b = next(pf)
    assert b["obs"]["front"].dtype == torch.uint8 and b["actions"].shape == (8, 2, 4)
    t = to_torch(buf.sample(4, rng))
    assert t["next_obs"]["proprio"].shape == (4, 8)
    gpu_like = ReplayBuffer(IMG, capacity=100, chunk=2, device="cpu")
    for t in range(10):
        gpu_like.add_step(step_at(IMG, t))
    gpu_like.end_episode(obs_at(IMG, 10))
    b = gpu_like.sample(8, rng)
    assert isinstance(b["obs"]["front"], torch.Tensor) and b["obs"]["front"].dtype == torch.uint8
    assert isinstance(b["reward"], torch.Tensor) and b["actions"].dtype == torch.float32
    assert to_torch(b)["mask"] is b["mask"]


@pytest.mark.parametrize("device", DEVICES)
def test_sampling_threads_while_adding_never_see_torn_rows(device):
    """A writer thread fills a small ring (so rows are overwritten all the time) while two
    prefetch threads sample: every sampled image matches its step index, obs and next_obs."""
    import threading

    schema = make_schema(cameras=("front",), image_size=8)
    buf = ReplayBuffer(schema, capacity=64, chunk=3, gamma=0.9, device=device)
    for i in range(10):
        buf.add_step(step_at(schema, i))
    stop = threading.Event()

    def writer():
        i = 10
        while not stop.is_set() and i < 20000:
            buf.add_step(step_at(schema, i))
            if i % 7 == 6:
                buf.end_episode(obs_at(schema, i + 1))
            i += 1

    rng = np.random.default_rng(5)
    t = threading.Thread(target=writer)
    t.start()
    try:
        with Prefetcher(lambda: buf.sample(32, rng), depth=2, threads=2) as pf:
            for _ in range(150):
                b = numpy_batch(next(pf))
                for part in ("obs", "next_obs"):
                    idx = b[part]["proprio"][:, 0].astype(np.int64)
                    np.testing.assert_array_equal(b[part]["front"][:, 1, 1, 0], (idx + 5) % 251)
                np.testing.assert_array_equal(b["next_obs"]["proprio"][:, 0] - b["obs"]["proprio"][:, 0],
                                              b["mask"].sum(1))
    finally:
        stop.set()
        t.join()


def test_from_store_reads_in_groups(tmp_path):
    """Loading in small groups gives the same buffer as loading in one go."""
    from robot_rl.data.replay import iter_store_episodes, select_episodes

    path = tmp_path / "run.zarr"
    with EpisodeStore.create(path, IMG) as s:
        i = 0
        for e, T in enumerate([3, 5, 2, 7, 4]):
            s.begin_episode(source="policy")
            for _ in range(T):
                s.append_step(step_at(IMG, i))
                i += 1
            s.end_episode(obs_at(IMG, 100 + e))
    store = EpisodeStore.open(path)
    picked = select_episodes(store, episodes=[0, 1, 3, 4])
    whole = list(iter_store_episodes(store, picked, ("proprio", "front"), max_rows=10**6))
    small = list(iter_store_episodes(store, picked, ("proprio", "front"), max_rows=6))
    assert [ep["index"] for ep, _, _ in small] == [0, 1, 3, 4]
    for (_, sa, fa), (_, sb, fb) in zip(whole, small):
        for k in sa:
            np.testing.assert_array_equal(sa[k], sb[k])
        np.testing.assert_array_equal(fa["front"], fb["front"])
    np.testing.assert_array_equal(small[2][2]["proprio"], obs_at(IMG, 103)["proprio"])
    np.testing.assert_array_equal(small[2][1]["proprio"][:, 0], np.arange(10, 17))


def _store_of(path, episodes, proprio_dim=8):
    """episodes: [(source, length, first value, intervened steps)]"""
    schema = {"proprio": ((proprio_dim,), "<f4"), "action": ((2,), "<f4")}
    with EpisodeStore.create(path, schema) as s:
        for source, T, v0, hands in episodes:
            s.begin_episode(source=source)
            for t in range(T):
                step = state_step(v0 + t, terminated=t == T - 1, intervened=t in hands)
                step["proprio"] = np.full(proprio_dim, v0 + t, np.float32)
                s.append_step(dict(step, policy_version=0, timestamp=0.1 * t, eval=False))
            s.end_episode({"proprio": np.full(proprio_dim, v0 + T, np.float32)})
    return EpisodeStore.open(path)


def test_live_interventions_never_push_loaded_demos_out(tmp_path):
    """The learner loads its demos, then keeps adding the run's interventions to the demo side:
    with a live capacity the loaded demos must all stay (HIL-SERL keeps both)."""
    store = _store_of(tmp_path / "demos.zarr", [("demo", 5, 1000, ()), ("demo", 5, 2000, ())])
    mix = MixedReplay.from_store(store, capacity=200, chunk=2, interventions="demo")
    for ep in range(6):  # 60 human steps, far more than the 12 demo rows
        for t in range(10):
            mix.add_step(state_step(t), demo=True)
        mix.end_episode({"proprio": np.full(8, 10, np.float32)})
    rows = np.arange(mix.demo._next)
    kept = batch_for(mix.demo, rows[mix.demo._valid(rows)])["obs"]["proprio"][:, 0]
    assert {1000, 1004, 2000, 2004} <= set(kept.tolist())
    assert len(mix.demo) == 10 + 60


def test_from_several_stores_resumes_a_run(tmp_path):
    """A run's demos plus an earlier run's experience: demos and its interventions on the demo
    side, its policy steps online; a store of another layout is refused, naming it."""
    demos = _store_of(tmp_path / "demos.zarr", [("demo", 4, 1000, ())])
    run = _store_of(tmp_path / "run.zarr", [("policy", 6, 0, (2, 3)), ("eval", 5, 100, ())])
    mix = MixedReplay.from_store([demos, run], chunk=2, interventions="demo")
    assert len(mix.online) == 6 + 5 and len(mix.demo) == 4 + 2
    rows = np.arange(mix.demo._next)
    kept = set(batch_for(mix.demo, rows[mix.demo._valid(rows)])["obs"]["proprio"][:, 0].tolist())
    assert kept == {1000, 1001, 1002, 1003, 2, 3}
    other = _store_of(tmp_path / "other.zarr", [("demo", 3, 0, ())], proprio_dim=9)
    with pytest.raises(ValueError, match="other.zarr"):
        MixedReplay.from_store([demos, other])
