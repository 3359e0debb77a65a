"""Backfill: a (re)started learner reads the actor's episode store into replay, ROS-free.

The actor writes every step to its store before it sends it (principle 4), so the store holds
everything a learner that was down (or started late) missed, far past the transition topic's
history depth. `StoreFollower` reads a store's committed rows in order, each once, into a
MixedReplay the way the live path would have put them there (online side; intervened steps on
the demo side too), and returns the keys it read, (episode, index), the same keys the actor's
transition messages carry (robot_rl/control/episode_log.py: the episode's index in the store
and the step's row), so the learner skips those steps when they arrive again from the topic.

It follows a store that a live actor is writing: opened read-only (readers never take the
writer's lock and see committed rows only, robot_rl/data/store.py), and `catch_up` may be called
again to read what was committed since. An episode still open is added step by step and left
open in replay, so the steps that come later from the topic continue it.
"""
from __future__ import annotations

import numpy as np

from robot_rl.data.replay import iter_store_episodes, select_episodes
from robot_rl.data.store import EpisodeStore

STEP_KEYS = ("action", "reward", "terminated", "intervened")


class StoreFollower:
    def __init__(self, path, obs_keys):
        self.path = path
        self.store = EpisodeStore.open(path, "r")
        self.obs_keys = tuple(obs_keys)
        self.row = 0  # the next store row to read
        self.episode = 0  # the store episode that row belongs to
        self.open_in_replay = False  # rows of self.episode were added as live steps: it is open there
        self.steps = 0  # rows read so far
        self.episodes = 0  # episodes closed so far

    @property
    def schema(self) -> dict:
        return self.store.schema

    def catch_up(self, replay) -> tuple[list[tuple[int, int]], list[int]]:
        """Read the rows committed since the last call into `replay` (a MixedReplay whose live
        episode, if any, is the one this follower left open). Returns (step keys, episodes ended)."""
        st = self.store
        st.refresh()  # one commit record: the closed episodes and the open one agree with each other
        n, n_closed = st.n_steps, st.n_episodes
        ends = st.episode_ends()
        keys: list[tuple[int, int]] = []
        ended: list[int] = []
        if self.open_in_replay and self.episode < n_closed:  # the episode we left open has closed
            end = int(ends[self.episode])
            self._add_live(replay, self.row, end, keys)
            meta = st.episode_meta(self.episode)
            if meta["interrupted"]:  # a dead writer's episode: no observation after its last step;
                # close on that step's own observation (one slightly wrong bootstrap, no lost step)
                final = {k: st.read(k, end - 1, end)[0] for k in self.obs_keys}
            else:
                final = {k: st.read_final_obs(k, self.episode, self.episode + 1)[0] for k in self.obs_keys}
            replay.end_episode(final)
            ended.append(self.episode)
            self.row, self.episode, self.open_in_replay = end, self.episode + 1, False
        if self.episode < n_closed:  # whole closed episodes, read in groups of rows (not per step)
            picked = select_episodes(st, episodes=range(self.episode, n_closed))
            for ep, steps, final in iter_store_episodes(st, picked, self.obs_keys):
                replay.add_stored_episode(steps, final)
            for e in range(self.episode, n_closed):  # every row is read, even an interrupted
                start = int(ends[e - 1]) if e else 0  # episode's unusable last one, or an empty episode
                keys += [(e, r) for r in range(start, int(ends[e]))]
                ended.append(e)
            self.row, self.episode = int(ends[n_closed - 1]), n_closed
        if n > self.row:  # the open episode's rows so far: live steps, left open
            self._add_live(replay, self.row, n, keys)
            self.row, self.open_in_replay = n, True
        self.steps += len(keys)
        self.episodes += len(ended)
        return keys, ended

    def _add_live(self, replay, lo: int, hi: int, keys: list) -> None:
        if hi <= lo:
            return
        cols = {k: self.store.read(k, lo, hi) for k in self.obs_keys + STEP_KEYS}
        for i in range(hi - lo):
            step = {k: v[i] for k, v in cols.items()}
            replay.add_step(step)
            keys.append((self.episode, lo + i))

    def max_policy_version(self) -> int:
        """The newest policy version the actor ran (-1: none): a restarted learner numbers on above it."""
        if self.store.n_steps == 0:
            return -1
        return int(np.max(self.store.read("policy_version")))

    def close(self) -> None:
        self.store.close()


class StoreRows:
    """Single rows of a live actor store, for filling the gaps a lossy transport leaves: the
    step at a row (with its episode) and the end of a closed episode. The actor commits a step
    before it sends it, so any row below one that did arrive is already here."""

    def __init__(self, path, obs_keys):
        self.store = EpisodeStore.open(path, "r")
        self.obs_keys = tuple(obs_keys)
        self._ends = np.zeros(0, np.int64)

    def refresh(self) -> None:
        self.store.refresh()
        if len(self._ends) != self.store.n_episodes:
            self._ends = self.store.episode_ends()

    @property
    def n_steps(self) -> int:
        return self.store.n_steps

    def step(self, row: int) -> tuple[int, dict]:
        """(episode, step dict) of a committed row."""
        ep = int(np.searchsorted(self._ends, row, side="right"))
        step = {k: self.store.read(k, row, row + 1)[0] for k in self.obs_keys + STEP_KEYS}
        return ep, step

    def closed_at(self, episode: int) -> int | None:
        """The row after a closed episode's last step (None while it is open)."""
        return int(self._ends[episode]) if episode < len(self._ends) else None

    def final_obs(self, episode: int) -> dict:
        end = int(self._ends[episode])
        if self.store.episode_meta(episode)["interrupted"]:  # as StoreFollower: its last step's own obs
            return {k: self.store.read(k, end - 1, end)[0] for k in self.obs_keys}
        return {k: self.store.read_final_obs(k, episode, episode + 1)[0] for k in self.obs_keys}

    def matches(self, row: int, timestamp: float) -> bool:
        """Is this the store the steps came from? (a run_dir may hold an earlier run's store)"""
        self.refresh()
        return row < self.n_steps and float(self.store.read("timestamp", row, row + 1)[0]) == float(timestamp)

    def close(self) -> None:
        self.store.close()


class Sequencer:
    """One actor's steps and episode ends, handed to replay in store order and each once,
    whatever order (or how often, or whether) the transport delivered them.

    Steps are keyed (episode, row) by their place in the actor's store and rows are contiguous,
    so the next item due is always known: step `row`, or the end of the open episode. What
    arrives early waits; what arrives again, or after its place was filled, is a duplicate.
    A gap (something waits, the item due has not come) is filled from the actor's store
    (`fill`, at once: the store already holds it), or, where the store is out of reach (a
    learner on another machine), skipped after `reorder_s` of waiting (`skip`: counted in
    `lost_steps` / `lost_ends`; the open episode is closed at the gap on its last step's own
    observation, so no transition in replay spans missing steps)."""

    def __init__(self, row: int = 0, episode: int = -1, open_: bool = False, reorder_s: float = 2.0,
                 max_waiting: int = 2000):
        self.row = row  # the next row due
        self.episode = episode  # the episode of the last step handed on
        self.open = open_  # that episode is open in replay
        self.reorder_s, self.max_waiting = reorder_s, max_waiting
        self.steps: dict[int, tuple[int, dict]] = {}  # row -> (episode, step), waiting
        self.ends: dict[int, tuple] = {}  # episode -> (final obs, its end row or None), waiting
        self.last_step: dict | None = None
        self.gap_since: float | None = None  # monotonic time the current gap was first seen
        self.duplicates = self.recovered = self.lost_steps = self.lost_ends = 0

    # out: a list of ("step", (episode, row), step) and ("end", episode, final_obs), in order
    def offer_step(self, episode: int, row: int, step: dict, out: list, now: float) -> None:
        if row < self.row or row in self.steps:
            self.duplicates += 1
            return
        self.steps[row] = (episode, step)
        self._release(out, now)

    def offer_end(self, episode: int, final_obs: dict, out: list, now: float, end_row: int | None = None) -> None:
        """end_row: the row after the episode's last step (an end that overtook its last steps
        waits for them); None from an actor that does not say (the end then closes at once)."""
        if episode < self.episode or (episode == self.episode and not self.open) or episode in self.ends:
            self.duplicates += 1
            return
        self.ends[episode] = (final_obs, end_row)
        self._release(out, now)

    @property
    def waiting(self) -> int:
        return len(self.steps) + len(self.ends)

    def _release(self, out: list, now: float) -> None:
        while True:
            end = self.ends.get(self.episode) if self.open else None
            if end is not None and (end[1] is None or self.row >= end[1]):
                out.append(("end", self.episode, self.ends.pop(self.episode)[0]))
                self.open = False
                continue
            item = self.steps.get(self.row)
            if item is None or (self.open and item[0] != self.episode):
                break
            del self.steps[self.row]
            self._hand_on(item[0], item[1], out)
        for e in [e for e in self.ends if e < self.episode or (e == self.episode and not self.open)]:
            del self.ends[e]  # an end whose episode was closed meanwhile (from the store, or skipped)
        self.gap_since = (self.gap_since or now) if self.waiting else None

    def _hand_on(self, episode: int, step: dict, out: list) -> None:
        out.append(("step", (episode, self.row), step))
        self.episode, self.open, self.last_step = episode, True, step
        self.row += 1

    def fill(self, rows: StoreRows, out: list, now: float, upto: int | None = None) -> None:
        """Take what is due from the store until nothing waits (and, with `upto`, until row
        `upto`: steps the transport may have lost at the end, with nothing after them)."""
        rows.refresh()
        while True:
            closed = rows.closed_at(self.episode) if self.open else None
            if closed is not None and self.row >= closed and (self.waiting or (upto is not None and closed < upto)):
                out.append(("end", self.episode, rows.final_obs(self.episode)))
                self.open = False
            elif (self.waiting or (upto is not None and self.row < upto)) and self.row < rows.n_steps:
                episode, step = rows.step(self.row)
                if self.open and episode != self.episode:
                    break  # its episode's end is not committed yet: cannot be (the actor commits first)
                self._hand_on(episode, step, out)
            else:
                break
            self.recovered += 1
            self._release(out, now)

    def overdue(self, now: float) -> bool:
        return self.waiting > 0 and (self.waiting > self.max_waiting or now - self.gap_since > self.reorder_s)

    def skip(self, out: list, now: float) -> None:
        """Give up on what is due: close the open episode at the gap, go on at the first row
        that waits."""
        if not self.waiting:
            return
        first = min(self.steps) if self.steps else None
        end = self.ends.get(self.episode) if self.open else None
        if end is not None and end[1] is not None and (first is None or first >= end[1]):
            self.lost_steps += end[1] - self.row  # its end came, some of its last steps did not
            self.row = end[1]
            self._release(out, now)
            return
        if self.open:
            if first is None or self.steps[first][0] != self.episode:
                self.lost_ends += 1  # its end never came
            out.append(("end", self.episode, self.last_step))
            self.open = False
        if first is not None:
            self.lost_steps += first - self.row
            self.row = first
        else:  # only ends of episodes none of whose steps came: nothing to close them on
            self.ends.clear()
        self._release(out, now)
