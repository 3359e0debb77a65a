"""Crash safety and concurrent reading, with real processes.

A writer process (robot_rl.data.synthetic.run_writer) appends random-length episodes and
reports "S <i>" after every append_step returns (through a pipe). Writers are forked from the
test process, which has already imported everything (zarr resets its IO thread after a fork),
so a kill cycle costs a fraction of a second rather than a Python start. The test kills it with SIGKILL at random moments
and checks that every reported step is intact, nothing uncommitted is visible, and the episode
it was writing comes back marked interrupted. Values are functions of the step index, so every
row can be checked without a copy.
"""
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from robot_rl.data.store import EpisodeStore
from robot_rl.data.synthetic import final_obs_index, make_schema, run_writer

REPO = Path(__file__).resolve().parents[1]
CAMERAS = ("front",)
SCHEMA = make_schema(cameras=CAMERAS, image_size=32)


def _writer_main(conn, path, seed):
    run_writer(path, SCHEMA, seed=seed, report=lambda *msg: conn.send(msg))


def forked_writer(ctx, path, seed):
    """(process, connection): a writer forked from this process."""
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_writer_main, args=(child, str(path), seed), daemon=True)
    proc.start()
    child.close()  # so that recv() hits EOF once the writer is dead
    return proc, parent


def drain(conn):
    msgs = []
    while True:
        try:
            msgs.append(conn.recv())
        except (EOFError, OSError):
            return msgs


def start_writer(path, seed, max_steps=None, cameras=CAMERAS):
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cmd = [sys.executable, "-m", "robot_rl.data.synthetic", str(path), str(seed),
           "-" if max_steps is None else str(max_steps), ",".join(cameras)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)


def expected_images(start, stop, key="front", size=32):
    i = np.arange(start, stop)
    img = np.empty((len(i), size, size, 3), np.uint8)
    img[:] = ((i + len(key)) % 251).astype(np.uint8)[:, None, None, None]
    img[:, 0, :, 0] = np.arange(size) % 256
    return img


def check_rows(store, start=0):
    """Every committed row equals what run_writer wrote for that step index."""
    n = store.n_steps
    i = np.arange(start, n)
    np.testing.assert_array_equal(store.read("proprio", start, n)[:, 0], i.astype(np.float32))
    np.testing.assert_array_equal(store.read("proprio", start, n)[:, 7], (i + 0.007).astype(np.float32))
    np.testing.assert_array_equal(store.read("action", start, n), np.sin(i[:, None] + np.arange(4)).astype(np.float32))
    np.testing.assert_array_equal(store.read("timestamp", start, n), 1000.0 + 0.1 * i)
    np.testing.assert_array_equal(store.read("front", start, n), expected_images(start, n))


def check_episodes(store, first=0):
    """Episode table consistent; episodes from `first` on have the right metadata and final obs."""
    table = store.episode_table()
    ends = table["end"]
    assert np.all(np.diff(np.concatenate([[0], ends])) > 0)
    assert len(ends) == 0 or ends[-1] <= store.n_steps
    for e in range(first, store.n_episodes):
        fin = store.final_obs(e)
        if table["interrupted"][e]:
            assert not table["success"][e]
            assert np.all(fin["proprio"] == 0)
        else:
            assert table["success"][e] == (table["length"][e] % 2 == 0)
            assert 1 <= table["length"][e] <= 15
            assert fin["proprio"][0] == np.float32(final_obs_index(e))
            np.testing.assert_array_equal(fin["front"], expected_images(final_obs_index(e), final_obs_index(e) + 1)[0])


def kill_and_check(tmp_path, kills, seed):
    rng = np.random.default_rng(seed)
    ctx = multiprocessing.get_context("fork")
    path = tmp_path / "crash.zarr"
    total_interrupted, checked, checked_episodes = 0, 0, 0
    for k in range(kills):
        proc, conn = forked_writer(ctx, path, seed=1000 * seed + k)
        ready = conn.recv()
        assert ready[0] == "ready", ready
        early = []
        if rng.random() < 0.75:  # mostly mid-run; otherwise right after opening (recovery just done)
            early.append(conn.recv())  # the first step is in, whatever the machine's load
            time.sleep(float(rng.uniform(0.0, 0.25)))
        proc.kill()  # SIGKILL
        proc.join()
        msgs = early + drain(conn)
        conn.close()
        steps = [m[1] for m in msgs if m[0] == "S"]
        episodes = [m[1] for m in msgs if m[0] == "E"]
        completed = steps[-1] + 1 if steps else int(ready[1])

        r = EpisodeStore.open(path, "r")
        assert completed <= r.n_steps <= completed + 1, (k, completed, r.n_steps)
        assert r.n_episodes >= (episodes[-1] if episodes else int(ready[2]))
        assert not r.writer_active
        open_ep = r.open_episode
        check_rows(r, start=max(0, checked - 16))  # rows written since the last check (and a few before)
        checked = r.n_steps

        with EpisodeStore.open(path, "a", schema=SCHEMA) as w:  # recovery, as the next writer does
            assert w.n_steps == r.n_steps and w.open_episode is None
            if open_ep is not None and open_ep["n_steps"] > 0:
                last = w.episode_meta(-1)
                assert last["interrupted"] and last["end"] == w.n_steps and last["writer_seed"] == 1000 * seed + k
                total_interrupted += 1
            check_episodes(w, first=max(0, checked_episodes - 1))
            checked_episodes = w.n_episodes
        root = zarr.open_group(str(path), mode="r")  # the layout an outside reader expects
        ends = root["meta/episode_ends"][:]
        if len(ends):
            assert root["data/action"].shape[0] == ends[-1] == EpisodeStore.open(path).n_steps
    check_rows(EpisodeStore.open(path))  # and everything once more at the end
    check_episodes(EpisodeStore.open(path))
    return total_interrupted


def test_sigkill_at_random_moments_loses_no_completed_step(tmp_path):
    interrupted = kill_and_check(tmp_path, kills=20, seed=1)
    assert interrupted >= 3  # many kills land inside an episode: the marking was exercised


@pytest.mark.slow
def test_sigkill_many_times(tmp_path):
    assert kill_and_check(tmp_path, kills=200, seed=2) >= 30


def test_reader_in_other_process_sees_only_committed_steps(tmp_path):
    """This process reads while a writer process appends: what it sees is always complete."""
    path = tmp_path / "live.zarr"
    EpisodeStore.create(path, SCHEMA).close()
    proc = start_writer(path, seed=7, max_steps=1500)
    reported = [0]

    def drain():
        for line in proc.stdout:
            if line.startswith("S "):
                reported[0] = int(line.split()[1]) + 1

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    r = EpisodeStore.open(path, "r")
    seen, polls_mid_write = 0, 0
    while proc.poll() is None:
        before = reported[0]
        r.refresh()
        n = r.n_steps
        assert n >= before and n >= seen  # completed steps are visible, never taken back
        if 0 < n < 1500:
            polls_mid_write += 1
            check_rows(r, start=max(0, n - 50))
            np.testing.assert_array_equal(r.read("proprio", 0, n)[:, 0], np.arange(n, dtype=np.float32))
            assert all(sl.stop <= n for sl in r.episode_slices())
        seen = n
        time.sleep(0.01)
    t.join(timeout=10)
    assert proc.returncode == 0
    assert polls_mid_write >= 5
    r.refresh()
    assert r.n_steps >= 1500
    check_rows(r)
