"""The learner node's driver of the training loop: the loop in its own thread, ROS-free.

Incoming steps arrive in a queue (from the learner node's subscription); this thread alone
touches the loop (replay and agent): drain the queue into it, run the updates it owes
(robot_rl/training/loop.py: the same schedule `robot-rl pretrain` runs), publish on its cadence.
An exception in the thread stops training: it is kept in `error` for the node, which fails with
it (a learner that no longer learns must not look alive), and the queue keeps being drained so
every sent step is still counted.
"""
from __future__ import annotations

import math
import queue
import threading
import time

from robot_rl.training.loop import TrainingLoop


class Trainer:
    def __init__(self, agent, replay, publish, *, utd: float, batch_size: int, min_steps: int,
                 publish_every: int, version: int = 0, seed: int = 0, on_progress=None,
                 checkpoint=None, checkpoint_every: int = 0):
        self.loop = TrainingLoop(agent, replay, utd=utd, batch_size=batch_size, min_steps=min_steps,
                                 publish_every=publish_every, publish=publish, version=version, seed=seed)
        self.on_progress = on_progress  # (steps trained on) -> None, after each drain/update
        # (loop) -> None every `checkpoint_every` updates, in this thread (which alone touches the
        # agent): a learner killed mid-run restarts from at most that many updates back.
        self.checkpoint, self.checkpoint_every = checkpoint, int(checkpoint_every)
        self.inbox: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trainer", daemon=True)
        self._t0 = time.monotonic()

    # the loop's figures, read by the node (ints and a dict: safe to read from another thread)
    agent = property(lambda self: self.loop.agent)
    replay = property(lambda self: self.loop.replay)
    steps = property(lambda self: self.loop.steps)
    episodes = property(lambda self: self.loop.episodes)
    updates = property(lambda self: self.loop.updates)
    critic_steps = property(lambda self: self.loop.critic_steps)
    metrics = property(lambda self: self.loop.metrics)

    # called from other threads -------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def put_step(self, step: dict) -> None:
        self.inbox.put(("step", step))

    def put_episode_end(self, final_obs: dict) -> None:
        self.inbox.put(("end", final_obs))

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def export(self) -> tuple[bytes, str]:
        """The current actor as (ONNX bytes, sha256); before start() only (the thread owns the agent)."""
        return self.loop.export()

    @property
    def updates_per_s(self) -> float:
        return self.loop.updates / max(1e-9, time.monotonic() - self._t0)

    # the thread ----------------------------------------------------------------
    def _drain(self, block: bool) -> None:
        try:
            item = self.inbox.get(timeout=0.05) if block else self.inbox.get_nowait()
            while True:
                kind, payload = item
                if kind == "step":
                    self.loop.add_step(payload)
                else:
                    self.loop.end_episode(payload)
                item = self.inbox.get_nowait()
        except queue.Empty:
            pass

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                due = self.loop.due
                self._drain(block=not due)
                self._report()
                if not due:
                    continue
                self.loop.update()
                if self.checkpoint is not None and self.checkpoint_every and \
                        self.loop.updates % self.checkpoint_every == 0:
                    self.checkpoint(self.loop)
                self._report()  # at once: in sim the actor may be waiting for exactly this
        except BaseException as e:  # noqa: BLE001  the node fails with it (see the module doc)
            self.error = e
            while not self._stop.is_set():  # keep draining so no step is left unread
                self._drain(block=True)
                self._report()

    def resume(self, state: dict) -> None:
        """Continue a killed learner's schedule (before start()): its update count and policy
        version (published versions keep increasing), and the steps it had trained on, as far as
        the replay now holds them (`loop.steps`, set by the caller to the steps backfilled): the
        critic steps those steps owed count as done, so the loop owes updates only for the steps
        logged since the checkpoint, and the progress it reports starts near where it stopped."""
        loop = self.loop
        loop.updates = int(state.get("updates", 0))
        loop.version = max(loop.version, int(state.get("version", 0)))
        covered = min(loop.steps, int(state.get("trained_steps", 0)))
        loop.critic_steps = int(math.ceil(loop.utd * (covered - loop.min_steps + 1))) if covered >= loop.min_steps else 0

    def state(self) -> dict:
        """What resume() needs, saved with the agent in the checkpoint."""
        loop = self.loop
        return {"updates": loop.updates, "version": loop.version, "trained_steps": loop.trained_steps,
                "steps": loop.steps, "critic_steps": loop.critic_steps}

    @property
    def trained_steps(self) -> int:
        """Steps the learner has caught up with (never decreasing): the loop's figure, or all it
        has once it stopped on an error (nobody should wait for a dead trainer)."""
        return self.loop.steps if self.error is not None else self.loop.trained_steps

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.trained_steps)

    def finish_ingest(self) -> None:
        """After stop(): read what is still queued (at shutdown every sent step is counted)."""
        self._drain(block=False)
