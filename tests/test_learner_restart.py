"""A learner killed mid-run comes back and loses nothing (issue 18, first bullet).

The real fault: `robot-rl sim` runs the whole graph over real DDS, the test SIGKILLs the
learner process (its pid from run_dir/pids.json), and the supervisor restarts it; the new
learner resumes from its checkpoint, backfills every step of the actor's zarr store, skips the
steps the transition topic's history delivers again, and publishes versions above the old ones.
Below it, the backfill itself without DDS: a real store, written by a live writer while a
follower reads it, against the replay the live path would have built.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from robot_rl.data.replay import INTERVENTION_MODES, MixedReplay
from robot_rl.data.store import EpisodeStore
from robot_rl.training.backfill import StoreFollower

STATE = {"proprio": ((3,), "<f4"), "object": ((2,), "<f4"), "action": ((2,), "<f4")}
KEYS = ("proprio", "object")


def _step(i, intervened=False, terminated=False):
    return {"proprio": np.full(3, i, np.float32), "object": np.array([i, -i], np.float32),
            "action": np.array([i % 7, -i], np.float32), "reward": np.float32(i % 3), "terminated": terminated,
            "truncated": False, "intervened": intervened, "policy_version": np.int32(i // 10),
            "timestamp": float(i), "eval": False}


def _final(i):
    return {"proprio": np.full(3, 1000 + i, np.float32), "object": np.array([1000 + i, 0], np.float32)}


def _replays(interventions="demo"):
    kw = dict(chunk=3, gamma=0.9, obs_keys=KEYS, interventions=interventions)
    return MixedReplay.create(STATE, 256, **kw), MixedReplay.create(STATE, 256, **kw)


def _rows(buf):
    """Every row a buffer holds, gathered as a batch (the targets sampling would see)."""
    g = np.arange(buf._next)
    b = buf._gather(g[buf._is_step[g % buf.capacity]])
    return {k: v for k, v in b.items() if not isinstance(v, dict)} | \
        {f"obs.{k}": v for k, v in b["obs"].items()} | {f"next_obs.{k}": v for k, v in b["next_obs"].items()}


@pytest.mark.parametrize("interventions", INTERVENTION_MODES)
def test_backfill_reads_a_live_store_once_into_the_replay_the_live_path_builds(tmp_path, interventions):
    """Episodes (with an intervention) closed before the learner starts, one open; the writer goes
    on between two catch-ups: the follower's replay equals one fed step by step, as the topic
    would, and every row comes back once under the actor's (episode, row) key."""
    live, backfilled = _replays(interventions)
    store = EpisodeStore.create(tmp_path / "store.zarr", STATE)  # the actor: holds the writer lock
    row, episode, keys, ended = 0, 0, [], []

    def write(n, close, intervene=()):
        nonlocal row, episode
        if store.open_episode is None:
            store.begin_episode(task="t")
        for _ in range(n):
            s = _step(row, intervened=row in intervene, terminated=close and _ == n - 1)
            store.append_step(s)
            live.add_step(s)
            row += 1
        if close:
            store.end_episode(_final(episode))
            live.end_episode(_final(episode))
            episode += 1

    write(12, True, intervene={4, 5, 6})
    write(9, True)
    write(5, False)  # open when the learner starts
    assert store.writer_active
    follower = StoreFollower(tmp_path / "store.zarr", KEYS)  # read-only while the writer runs
    k, e = follower.catch_up(backfilled)
    keys += k
    ended += e
    assert ended == [0, 1] and backfilled.online.episode_open
    write(4, True)  # the open episode goes on and ends, and another begins
    write(6, False, intervene={33})
    k, e = follower.catch_up(backfilled)
    keys += k
    ended += e
    assert follower.catch_up(backfilled) == ([], [])  # nothing new: nothing read twice
    assert sorted(keys) == keys and len(set(keys)) == len(keys) == row == store.n_steps
    assert [r for _, r in keys] == list(range(row)) and ended == [0, 1, 2]
    ends = [12, 21, 30]
    assert all(ep == sum(r >= x for x in ends) for ep, r in keys)  # the episode of each row
    assert follower.max_policy_version() == (row - 1) // 10
    for side in ("online", "demo"):
        a, b = _rows(getattr(live, side)), _rows(getattr(backfilled, side))
        assert a.keys() == b.keys() and (len(a["reward"]) > 0 or (side, interventions) == ("demo", "online"))
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{side} {name}")
    follower.close()
    store.close()


def test_resume_continues_the_schedule_without_owing_what_was_trained():
    """The checkpoint's loop state: updates and version carry on; the steps it had trained on
    owe no updates again, those logged since do."""
    from robot_rl.learn import make_agent
    from robot_rl.spec import ObsSpec
    from robot_rl.training.trainer import Trainer

    spec = ObsSpec({"proprio": (3,), "object": (2,)}, {"proprio": "<f4", "object": "<f4"})
    agent = make_agent("sac", spec, 2, {"actor_hidden": [8], "critic_hidden": [8], "n_critics": 2, "chunk_len": 3},
                       device="cpu")
    replay, _ = _replays()
    t = Trainer(agent, replay, None, utd=2, batch_size=8, min_steps=10, publish_every=5)
    t.loop.steps = 100  # backfilled
    t.resume({"updates": 140, "version": 7, "trained_steps": 80})
    assert t.updates == 140 and t.loop.version == 7 and t.trained_steps == 80
    assert t.loop.owed() - t.loop.critic_steps == 2 * 20  # the 20 steps logged after the checkpoint
    t2 = Trainer(agent, replay, None, utd=2, batch_size=8, min_steps=10, publish_every=5)
    t2.resume({"updates": 140, "version": 7, "trained_steps": 80})  # no store to backfill from
    assert t2.trained_steps == 0 and t2.loop.critic_steps == 0  # a fresh schedule on what comes


# ---------------------------------------------------------------------------------- the fault
HISTORY = 1000  # the transition topic's depth (robot_rl/contract.py TRANSITIONS_QOS)


# (steps, store rows when the learner is killed): a short run (~25 s), and one killed past the
# topic's history depth, so that its oldest steps can only come back from the store.
@pytest.fixture(scope="module", params=[pytest.param((600, 250), id="short"), pytest.param((1500, 1150), marks=pytest.mark.slow, id="past-history")])
def killed_run(tmp_path_factory, request):
    pytest.importorskip("rclpy")
    from conftest import own_domain_env

    steps, kill_at = request.param
    run_dir = tmp_path_factory.mktemp("restart") / "run"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "robot_rl.cli", "sim", "--task", "pick_cube", "--steps", str(steps),
         "--run-dir", str(run_dir), "-p", "eval_every:=0", "-p", "checkpoint_every:=60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=own_domain_env())
    figures = {}
    try:
        store_path, ck = run_dir / "store.zarr", run_dir / "learner_checkpoint.pt"
        deadline = time.monotonic() + 240
        rows = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if EpisodeStore.exists(store_path) and ck.exists():
                rows = EpisodeStore.open(store_path, "r").n_steps
                if rows >= kill_at:
                    break
            time.sleep(0.1)
        assert proc.poll() is None and rows >= kill_at, "the run never got to the kill point"
        pid = json.loads((run_dir / "pids.json").read_text())["nodes"]["learner"]
        os.kill(pid, signal.SIGKILL)  # the fault: no close(), no final checkpoint, no summary
        killed_at = time.monotonic()
        figures["rows_at_kill"] = rows
        log = run_dir / "logs" / "learner.log"
        while time.monotonic() < deadline and proc.poll() is None:  # back: publishing again
            text = log.read_text(errors="replace")
            if "----- restart 1" in text and "published policy version" in text.split("----- restart 1", 1)[1]:
                break
            time.sleep(0.05)
        figures["down_s"] = round(time.monotonic() - killed_at, 2)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    figures["run_s"] = round(time.monotonic() - t0, 1)
    figures["steps"] = steps
    print(out[-3000:], figures)
    assert proc.returncode == 0, out[-4000:]
    return run_dir, out, figures


def test_the_learner_is_restarted_and_the_run_finishes(killed_run):
    run_dir, out, figures = killed_run
    assert "learner exited (killed by SIGKILL), restarted (restart 1 of at most 5)" in out
    assert "robot-rl sim: budget spent." in out
    pids = json.loads((run_dir / "pids.json").read_text())
    assert pids["restarts"] == {"learner": 1}
    log = (run_dir / "logs" / "learner.log").read_text()
    second = log.split("----- restart 1 of learner (exit code -9: killed by SIGKILL) -----", 1)[1]
    assert f"resumed from {run_dir / 'learner_checkpoint.pt'}" in second
    assert "backfill from" in second


def test_every_logged_step_reached_the_learner_exactly_once(killed_run):
    run_dir, _, figures = killed_run
    with EpisodeStore.open(run_dir / "store.zarr", "r") as store:
        n, ends = store.n_steps, store.episode_ends()
    actor = json.loads((run_dir / "actor_summary.json").read_text())
    learner = json.loads((run_dir / "learner_summary.json").read_text())  # the second life's
    assert n == actor["steps_logged"] == figures["steps"]
    received = [tuple(k) for k in learner["received"]]
    assert len(received) == len(set(received)) == n
    assert sorted(r for _, r in received) == list(range(n))  # none missing
    assert all(ep == int(np.searchsorted(ends, r, side="right")) for ep, r in received)  # right episodes
    # The replay holds each step once: those read from the store plus those heard after.
    assert learner["replay_steps"] == n and learner["resumed"]
    assert figures["rows_at_kill"] <= learner["backfilled"] < n
    assert learner["duplicates_skipped"] > 0  # the topic's history did deliver them again
    # ... but never more than its depth: past it, steps reached the learner from the store alone
    assert learner["duplicates_skipped"] <= HISTORY + len(ends)
    assert learner["episode_ends"] == len(ends)
    figures.update(backfilled=learner["backfilled"], duplicates_skipped=learner["duplicates_skipped"])
    print(figures)


def test_policy_versions_keep_increasing_across_the_restart(killed_run):
    run_dir, _, _ = killed_run
    log = (run_dir / "logs" / "learner.log").read_text()
    first, second = log.split("----- restart 1", 1)

    def published(text):
        return [int(line.split("published policy version ", 1)[1].split()[0])
                for line in text.splitlines() if "published policy version " in line]

    before, after = published(first), published(second)
    assert len(before) >= 2 and len(after) >= 2
    assert after == sorted(set(after)) and min(after) > max(before)
    learner = json.loads((run_dir / "learner_summary.json").read_text())
    assert learner["versions_published"] == after
    with EpisodeStore.open(run_dir / "store.zarr", "r") as store:
        used = store.read("policy_version")
    assert np.all(np.diff(used) >= 0)  # the actor never went back to an older policy
    assert used[-1] in after  # and ran the restarted learner's
    # training went on: the final checkpoint is past the one the restart resumed from
    import torch

    ck = torch.load(run_dir / "learner_checkpoint.pt", weights_only=True)
    assert ck["learner"]["updates"] == learner["updates"] > 0 and ck["learner"]["version"] == after[-1]
