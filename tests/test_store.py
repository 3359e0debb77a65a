"""EpisodeStore: layout, round trip, schema errors, recovery of an interrupted episode, locking."""
import numpy as np
import pytest
import zarr

from robot_rl.data.schema import BOOKKEEPING, SchemaError
from robot_rl.data.store import EpisodeStore, StoreLockedError
from robot_rl.data.synthetic import make_schema, obs_at, step_at

SCHEMA = make_schema(cameras=("front",), image_size=16)


def write_episodes(store, lengths, first=0, source="policy"):
    i = first
    for e, T in enumerate(lengths):
        store.begin_episode(task="pick_cube", source=source, robot="panda", calibration_id="cal-1", seed=e)
        for t in range(T):
            store.append_step(step_at(SCHEMA, i, terminated=(t == T - 1 and e % 2 == 0)))
            i += 1
        store.end_episode(obs_at(SCHEMA, 10_000 + e), success=e % 2 == 0)
    return i


def test_round_trip(tmp_path):
    path = tmp_path / "run.zarr"
    with EpisodeStore.create(path, SCHEMA, attrs={"run": "unit"}) as s:
        write_episodes(s, [5, 3, 7])
        assert (s.n_steps, s.n_episodes) == (15, 3)
    r = EpisodeStore.open(path, "r", schema=SCHEMA)
    assert r.attrs == {"run": "unit"}
    assert [(sl.start, sl.stop) for sl in r.episode_slices()] == [(0, 5), (5, 8), (8, 15)]
    ep = r.episode(1)
    for t in range(3):
        want = step_at(SCHEMA, 5 + t, terminated=False)
        for k in list(SCHEMA) + list(BOOKKEEPING):
            np.testing.assert_array_equal(ep[k][t], want[k], err_msg=k)
    np.testing.assert_array_equal(ep["final_obs"]["front"], obs_at(SCHEMA, 10_001)["front"])
    assert ep["meta"] == {"index": 1, "start": 5, "end": 8, "length": 3, "success": False, "interrupted": False,
                          "task": "pick_cube", "source": "policy", "robot": "panda", "calibration_id": "cal-1",
                          "seed": 1}
    table = r.episode_table()
    assert table["success"].tolist() == [True, False, True]
    assert table["length"].tolist() == [5, 3, 7]


def test_plain_zarr_reader_sees_diffusion_policy_layout(tmp_path):
    """An outside tool reads only data/* and meta/episode_ends (what Diffusion Policy uses)."""
    path = tmp_path / "run.zarr"
    with EpisodeStore.create(path, SCHEMA) as s:
        write_episodes(s, [4, 6])
    root = zarr.open_group(str(path), mode="r")
    ends = root["meta/episode_ends"][:]
    assert ends.dtype == np.int64 and ends.tolist() == [4, 10]
    for key in list(SCHEMA) + list(BOOKKEEPING):
        arr = root["data"][key]
        assert arr.shape[0] == ends[-1], key  # Diffusion Policy asserts this
    np.testing.assert_array_equal(root["data/front"][7], obs_at(SCHEMA, 7)["front"])
    np.testing.assert_allclose(root["data/proprio"][4:10, 0], np.arange(4, 10))
    for name, member in root["meta"].members():  # DP loads every meta member as an array
        assert isinstance(member, zarr.Array), name


def test_reopen_appends_and_keeps_everything(tmp_path):
    path = tmp_path / "run.zarr"
    with EpisodeStore.create(path, SCHEMA) as s:
        i = write_episodes(s, [3])
    with EpisodeStore.open(path, "a", schema=SCHEMA) as s:
        write_episodes(s, [4], first=i)
    r = EpisodeStore.open(path, "r")
    assert (r.n_steps, r.n_episodes) == (7, 2)
    np.testing.assert_allclose(r.read("proprio")[:, 0], np.arange(7))


def test_interrupted_episode_closed_on_reopen(tmp_path):
    path = tmp_path / "run.zarr"
    s = EpisodeStore.create(path, SCHEMA)
    write_episodes(s, [2])
    s.begin_episode(task="pick_cube", source="intervention")
    for i in range(2, 5):
        s.append_step(step_at(SCHEMA, i))
    s.close()  # the writer goes away without end_episode, as if killed
    r = EpisodeStore.open(path, "r")
    assert r.open_episode["n_steps"] == 3 and not r.writer_active
    with EpisodeStore.open(path, "a") as s:
        assert s.n_episodes == 2
        meta = s.episode_meta(1)
        assert meta["interrupted"] and not meta["success"] and meta["source"] == "intervention"
        assert (meta["start"], meta["length"]) == (2, 3)


def test_bad_steps_raise_schema_error_naming_the_key(tmp_path):
    s = EpisodeStore.create(tmp_path / "run.zarr", SCHEMA)
    s.begin_episode()
    good = step_at(SCHEMA, 0)
    cases = [
        ({k: v for k, v in good.items() if k != "reward"}, "'reward'"),
        ({**good, "front": good["front"].astype(np.float32)}, "'front'.*uint8"),
        ({**good, "proprio": good["proprio"][:5]}, r"'proprio'.*\(8,\)"),
        ({**good, "terminated": 1}, "'terminated'.*bool"),
        ({**good, "extra_key": 1}, "extra_key"),
    ]
    for step, pattern in cases:
        with pytest.raises(SchemaError, match=pattern):
            s.append_step(step)
    assert s.n_steps == 0
    with pytest.raises(SchemaError, match="'front'"):
        s.end_episode({"proprio": good["proprio"], "object": good["object"]})


def test_open_with_other_schema_raises(tmp_path):
    path = tmp_path / "run.zarr"
    EpisodeStore.create(path, SCHEMA).close()
    other = dict(SCHEMA, action=((7,), "<f4"))
    with pytest.raises(SchemaError, match="'action'"):
        EpisodeStore.open(path, "a", schema=other)
    with pytest.raises(SchemaError, match="'wrist'"):
        EpisodeStore.open_or_create(path, make_schema(cameras=("front", "wrist"), image_size=16))
    with pytest.raises(SchemaError, match="action"):
        EpisodeStore.create(tmp_path / "x.zarr", {"proprio": ((8,), "f4")})


def test_one_writer_at_a_time(tmp_path):
    path = tmp_path / "run.zarr"
    s = EpisodeStore.create(path, SCHEMA)
    with pytest.raises(StoreLockedError):
        EpisodeStore.open(path, "a")
    assert EpisodeStore.open(path, "r").writer_active
    s.close()
    EpisodeStore.open(path, "a").close()


def test_misuse_is_reported(tmp_path):
    s = EpisodeStore.create(tmp_path / "run.zarr", SCHEMA)
    with pytest.raises(RuntimeError, match="begin_episode"):
        s.append_step(step_at(SCHEMA, 0))
    s.begin_episode()
    with pytest.raises(ValueError, match="no steps"):
        s.end_episode(obs_at(SCHEMA, 0))
    with pytest.raises(ValueError, match="source"):
        EpisodeStore.create(tmp_path / "b.zarr", SCHEMA).begin_episode(source="human")
    with pytest.raises(FileExistsError):
        EpisodeStore.create(tmp_path / "run.zarr", SCHEMA)
    r = EpisodeStore.open(tmp_path / "run.zarr", "r")
    with pytest.raises(PermissionError):
        r.begin_episode()


def test_commit_record_is_a_zarr_array(tmp_path):
    path = tmp_path / "run.zarr"
    s = EpisodeStore.create(path, SCHEMA)
    s.begin_episode()
    s.append_step(step_at(SCHEMA, 0))
    s.append_step(step_at(SCHEMA, 1))
    slots = zarr.open_array(str(path / "commit"), mode="r")[:]
    newest = slots[np.argmax(slots[:, 0])]
    assert newest[1:4].tolist() == [2, 0, 0]  # n_steps, n_episodes, open_start


def test_fsync_mode_round_trip(tmp_path):
    path = tmp_path / "durable.zarr"
    with EpisodeStore.create(path, SCHEMA, fsync=True) as s:
        write_episodes(s, [3, 2])
    r = EpisodeStore.open(path)
    assert (r.n_steps, r.n_episodes) == (5, 2)
    np.testing.assert_array_equal(r.read("front"), np.stack([step_at(SCHEMA, i)["front"] for i in range(5)]))
