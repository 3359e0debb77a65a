"""Turns the actor's ticks into stored steps: (obs, action) now, reward and done with the next obs.

Every completed step is appended to the local zarr store *before* it is handed to `send`
(principle 4: a learner that is down costs learning time, never data). Episode boundaries
come from the task status (the twin's success check or the robot's reward source).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


class EpisodeLog:
    def __init__(self, store, send_step, send_episode_end, episode_meta: dict, source: str = "policy"):
        self.store = store
        self.send_step = send_step  # (step dict, meta) -> None
        self.send_episode_end = send_episode_end  # (final_obs, meta) -> None
        self.episode_meta = dict(episode_meta)
        self.source = source  # "policy" on a learning run, "demo" when recording demonstrations
        self.pending: dict | None = None
        self.episode: int | None = None  # the status' episode id of the open episode
        self.episode_index = -1  # index in the store
        self.steps_logged = 0
        self.eval_steps = 0  # of those, taken in evaluation episodes
        self.episodes_done = 0
        self.successes = 0
        self.interventions = 0
        self._ep_intervened = False
        self.episode_eval = False

    def observe(self, obs: dict, status: dict, eval_mode: bool = False) -> bool:
        """A new observation and its task status. Returns True if the actor should act on it."""
        if self.pending is not None:
            if status["episode"] != self.episode:
                # The episode changed under us (reset from outside): close it as truncated.
                log.warning("episode %s ended without a terminal status; closing it as truncated", self.episode)
                self._complete(0.0, False, True)
                self._end(self._last_obs, success=False, interrupted=True)
            else:
                self._complete(status["reward"], status["terminated"], status["truncated"])
                if status["terminated"] or status["truncated"]:
                    self._end(obs, success=status["success"])
                    return False
        if status["terminated"] or status["truncated"]:
            return False  # a terminal observation with no step of ours before it
        if self.episode != status["episode"] or self.episode_index < 0:
            self.episode = status["episode"]
            self._ep_intervened = False
            # Steps are keyed by their place in the store (episode row, step row), not by this
            # process's own count: an actor restarted on its store, or a learner backfilling
            # from it, then agree on every key (no duplicates, no clashes).
            self.episode_index = self.store.n_episodes
            self.store.begin_episode(**dict(self.episode_meta, source="eval" if eval_mode else self.source))
            self.episode_eval = eval_mode
        self._last_obs = obs
        return True

    def act(self, obs: dict, action, intervened: bool, policy_version: int, t: float, eval_mode: bool) -> None:
        self.pending = dict(obs)
        self.pending.update(
            action=np.asarray(action, np.float32),
            intervened=bool(intervened),
            policy_version=int(policy_version),
            timestamp=float(t),
            eval=bool(eval_mode),
        )
        self._ep_intervened |= bool(intervened)

    def _complete(self, reward: float, terminated: bool, truncated: bool) -> None:
        step = self.pending
        step.update(reward=np.float32(reward), terminated=bool(terminated), truncated=bool(truncated))
        self.pending = None
        self.store.append_step(step)  # durable first ...
        self.steps_logged += 1
        self.eval_steps += int(step["eval"])
        self.interventions += int(step["intervened"])
        self.send_step(step, {"episode": self.episode_index, "index": self.store.n_steps - 1})  # ... then sent

    def _end(self, final_obs: dict, success: bool, interrupted: bool = False) -> None:
        self.store.end_episode(final_obs, success=bool(success))
        self.episodes_done += 1
        self.successes += int(bool(success))
        self.send_episode_end(
            final_obs,
            {"episode": self.episode_index, "end_row": self.store.n_steps,  # its place: after its last row
             "success": bool(success), "interrupted": interrupted,
             "intervened": self._ep_intervened, "steps": self.steps_logged,
             "train_steps": self.steps_logged - self.eval_steps, "eval": self.episode_eval},
        )
        self.episode = None

    def close(self) -> None:
        """Shutdown: a half-done step is dropped (it has no outcome); the store marks the episode."""
        self.pending = None
