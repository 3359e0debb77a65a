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

from robot_rl.data.replay import intervention_segments, iter_store_episodes, select_episodes
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
                replay.online.add_episode(steps, final)  # as MixedReplay.add_step would have: online ...
                for s, e in intervention_segments(steps["intervened"]):  # ... and the human's segments
                    seg = {k: v[s:e] for k, v in steps.items()}
                    seg_final = final if e == len(steps["intervened"]) else {k: steps[k][e] for k in final}
                    replay.demo.add_episode(seg, seg_final, is_demo=True)
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
