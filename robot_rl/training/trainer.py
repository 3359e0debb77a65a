"""The learner's work loop, in its own thread, ROS-free.

Incoming steps arrive in a queue (from the learner node's subscription); this thread alone
touches the replay and the agent: drain the queue into replay (robot_rl.data.replay.MixedReplay:
every step to the online side, the human's stretches to the demo side too), run gradient
updates up to `utd` critic steps per received step, and hand a freshly exported ONNX actor to `publish`
every `publish_every` updates.
"""
from __future__ import annotations

import queue
import tempfile
import threading
import time
from pathlib import Path

import numpy as np



class Trainer:
    def __init__(self, agent, replay, publish, *, utd: float, batch_size: int, min_steps: int,
                 publish_every: int, version: int = 0, seed: int = 0, on_progress=None):
        self.agent = agent
        self.replay = replay  # MixedReplay
        self.rng = np.random.default_rng(seed)
        self.on_progress = on_progress  # (steps trained on) -> None, after each drain/update
        self.steps = 0  # online steps ingested
        self.episodes = 0
        self.publish = publish  # (onnx bytes, version) -> None
        self.utd = float(utd)
        self.batch_size = int(batch_size)
        self.min_steps = int(min_steps)
        self.publish_every = int(publish_every)
        self.version = version
        self.inbox: queue.Queue = queue.Queue()
        self.updates = 0  # update calls (one actor step each)
        self.critic_steps = 0
        self.metrics: dict = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trainer", daemon=True)
        self._t0 = time.monotonic()

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

    def export(self) -> bytes:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "actor.onnx"
            self.agent.export_onnx(str(path), version=self.version)
            return path.read_bytes()

    @property
    def updates_per_s(self) -> float:
        return self.updates / max(1e-9, time.monotonic() - self._t0)

    # the thread ----------------------------------------------------------------
    def _drain(self, block: bool) -> None:
        try:
            item = self.inbox.get(timeout=0.05) if block else self.inbox.get_nowait()
            while True:
                kind, payload = item
                if kind == "step":
                    self.replay.add_step(payload)
                    self.steps += 1
                else:
                    self.replay.end_episode(payload)
                    self.episodes += 1
                item = self.inbox.get_nowait()
        except queue.Empty:
            pass

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                due = self.critic_steps < self._owed() and self.replay.online.has_samples
                self._drain(block=not due)
                self._report()
                if not due:
                    continue
                # RLPD's recipe: one sample of utd minibatches, a critic step on each, one actor step.
                k = max(1, int(round(self.utd)))
                batch = self.replay.sample(self.batch_size * k, self.rng)
                self.metrics = self.agent.update(batch, n_critic_steps=k)
                self.critic_steps += k
                self.updates += 1
                self._report()  # at once: in sim the actor may be waiting for exactly this
                if self.updates % self.publish_every == 0:
                    self.version += 1
                    self.publish(self.export(), self.version)
        except BaseException as e:  # noqa: BLE001  the node reports it and keeps ingesting
            self.error = e
            while not self._stop.is_set():  # keep draining so no step is left unread
                self._drain(block=True)
                self._report()

    def _owed(self) -> float:
        """Critic steps due: utd for every step from the min_steps-th on (RLPD's learning starts)."""
        return self.utd * max(0, self.steps - self.min_steps + 1)

    @property
    def trained_steps(self) -> int:
        """Steps the learner has caught up with (never decreasing): all it has while it is below
        min_steps or has stopped on an error, else those its critic steps cover at the UTD ratio."""
        if self.steps < self.min_steps or self.error is not None:
            return self.steps
        return min(self.steps, self.min_steps - 1 + int(self.critic_steps / self.utd))

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.trained_steps)

    def finish_ingest(self) -> None:
        """After stop(): read what is still queued (at shutdown every sent step is counted)."""
        self._drain(block=False)

