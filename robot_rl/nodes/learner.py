"""Learner node: ingests transitions from the actor, trains in a background thread, publishes
a versioned one-step ONNX actor every `publish_every` updates (transient_local, so an actor
that starts late still gets the newest), and reports on /diagnostics.

The observation keys follow `policy_cameras` (robot_rl.spec.policy_obs_keys: proprio + object
poses, or proprio + cameras); their shapes come from the demo store or the first transition, so
the same node serves state-based and pixel policies. Settings: robot_rl.training.settings.
With nproc > 1 the built agent is handed to robot_rl.training.ddp.spawn_data_parallel, whose
rank-0 updater the trainer uses in its place (a dead worker fails the trainer, see below).

Restart (a learner killed mid-run, restarted by the supervisor or `respawn`): the checkpoint
run_dir/learner_checkpoint.pt is written every `checkpoint_every` updates with the loop's
state; a learner that starts and finds it (and no init_checkpoint) continues from it, reads
every step already in the actor's store into replay (robot_rl/training/backfill.py: steps the
topic's history no longer holds), skips the steps it then hears again from the topic (keyed by
(episode, index)), and publishes versions above every one published or used before.

A lossy transport (drops, duplicates, reordering; tests/test_faults_transport.py): steps reach
replay in the actor's store order and each once (robot_rl/training/backfill.py Sequencer): what
comes early waits for what is due, a gap is filled from the actor's store at once (steps lost at
the end, with nothing after them, a second later), and where the store is out of reach (a
learner on another machine) skipped after a wait and counted: `lost_steps` / `lost_episode_ends`
on /diagnostics and in learner_summary.json, beside `recovered_from_store` and `duplicates_skipped`.

Failures stop the node with the reason (robot_rl.nodes.ros.run prints it and exits non-zero, and
`robot-rl sim` reports it): a first transition that does not fit (a missing key, another shape
than the demo store's), and a trainer that died (its exception, checked every second).
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_msgs.msg import Int64

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import csv_list, make_node_options, publisher, run, settings, subscription
from robot_rl.spec import ObsSpec, policy_obs_keys
from robot_rl.training.settings import LearnerSettings


class LearnerFailed(RuntimeError):
    """The learner cannot go on: raised out of a callback, it ends the node with the reason."""


class LearnerNode(Node):
    def __init__(self):
        super().__init__("learner", **make_node_options())
        self.settings = s = settings(self, LearnerSettings)
        self.kind, self.seed = s.kind, s.seed
        self.run_dir = Path(s.run_dir)
        self.action_spec = s.action
        self.cameras = csv_list(s.policy_cameras)
        self.train_cfg = dict(utd=s.utd, batch_size=s.batch_size, min_steps=s.min_steps, publish_every=s.publish_every)
        # Warm start: continue training an agent checkpoint (robot-rl pretrain's agent.pt, or a
        # run's learner_checkpoint.pt); its own network config replaces the `agent` section.
        self.init_checkpoint = s.init_checkpoint
        self._init_ck = None  # the checkpoint, read once at start, loaded at the first transition
        self._resume_state = None  # the loop's state saved with the checkpoint, on a restart
        # A checkpoint of this run (written by an earlier life of this learner): continue it.
        self.checkpoint_path = self.run_dir / "learner_checkpoint.pt"
        self.resumed = not self.init_checkpoint and self.checkpoint_path.is_file()
        if self.resumed:
            self.init_checkpoint = str(self.checkpoint_path)
        if self.init_checkpoint:
            self._check_init_checkpoint()  # a wrong file fails at start, not at the first transition
        self.obs_spec: ObsSpec | None = None
        self._first_fits = False  # the first transition matched the policy's keys and shapes
        self.trainer = None
        self.data_parallel = None  # robot_rl.training.ddp.DistributedUpdater, with nproc > 1
        # Several cells feed one learner: each cell's actor numbers its own episodes, so a step
        # is keyed by (cell, episode, index); one cell (cells "") keeps (episode, index).
        self.cells = csv_list(s.cells)
        self.received: set[tuple] = set()
        self.received_by_cell: dict[str, int] = {c: 0 for c in self.cells}
        self.ended: set[tuple] = set()  # episodes whose end is in replay: a repeat is skipped
        self.rejected = 0
        self.episode_ends = 0
        self.duplicates = 0  # steps (and episode ends) heard again and skipped
        self.backfilled = 0  # steps read from the actor's store at start
        self.follower = None  # robot_rl.training.backfill.StoreFollower, while starting
        self.sequencers: dict = {}  # cell -> robot_rl.training.backfill.Sequencer
        self._rows = None  # StoreRows on the actor's store, to fill gaps (False: out of reach)
        self._tail_mark = 0  # store rows seen at the last timer tick: due by the next
        self.versions_published: list[int] = []
        self.warm_started_at: int | None = None  # the checkpoint's update count, if warm-started

        cells = self.cells or [""]  # "" = this node's own namespace
        self.pub_policy = [publisher(self, C.POLICY, namespace=c) for c in cells]  # the policy reaches every cell
        self.pub_progress = [publisher(self, C.LEARNER_PROGRESS, namespace=c) for c in cells]
        self.pub_diag = publisher(self, C.DIAGNOSTICS)
        self._last_progress = -1
        # TensorBoard: training scalars against updates, the actor's rollout/eval figures (its
        # diagnostics) against training steps, in run_dir/tensorboard.
        from robot_rl.training.metrics_log import MetricsLog

        self.tb = MetricsLog(self.run_dir / "tensorboard")
        self._eval_logged = None
        subscription(self, C.DIAGNOSTICS, self._on_diagnostics)
        # Gated deployment: candidates go to the gate, which publishes only those that prove
        # themselves, and obeys the operator's learner/deploy requests (robot_rl/training/gate.py).
        self.gate = self._make_gate(cells) if s.gate.enabled else None
        self.create_timer(1.0, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        # Replay first (the bulk of a backfill may take long), then the subscriptions, then what
        # the actor committed meanwhile: every step committed after that last read is sent after
        # the subscription exists, so the topic's history has it. Callbacks run only once this
        # constructor returns, so no step arrives while replay is being filled.
        backfill = self._backfill_store()
        if s.demos or backfill:
            self._start_from_store(s.demos, backfill)
        for c in cells:
            subscription(self, C.TRANSITIONS, lambda m, c=c: self._on_transitions(m, c), namespace=c)
        if self.trainer is not None:
            if self.follower is not None:
                self._take_backfill(*self.follower.catch_up(self.trainer.replay))
                self.follower.close()
                self.follower = None
            self._go()
        self.get_logger().info(f"learner up: kind={self.kind} {self.train_cfg}"
                               + (f"; resumed from {self.checkpoint_path}" if self.resumed else ""))

    # ------------------------------------------------------------------ set-up
    def _start(self, schema: dict, stores=None, from_init: bool = False) -> None:
        """schema: {key: (shape, dtype)} of the observation keys and "action"."""
        import torch

        from robot_rl.data.replay import MixedReplay
        from robot_rl.learn import make_agent
        from robot_rl.training.loop import replay_device
        from robot_rl.training.trainer import Trainer

        keys = policy_obs_keys(self.cameras)
        missing = [k for k in keys if k not in schema]
        if missing:
            source = ("the demo store's episodes" if stores else "the actor's store" if self.follower is not None
                      else "the actor's transitions")
            raise ValueError(f"{source} miss observation keys {missing} that the policy needs "
                             f"(policy_cameras={','.join(self.cameras) or '<none>'}; present: "
                             f"{sorted(k for k in schema if k != 'action')})")
        torch.manual_seed(self.seed)
        self.obs_spec = ObsSpec({k: tuple(schema[k][0]) for k in keys}, {k: np.dtype(schema[k][1]).str for k in keys})
        if self.init_checkpoint:
            agent = self._warm_start_agent()
        else:
            agent = make_agent(self.kind, self.obs_spec, self.action_spec.dim, self.settings.agent)
        kw = dict(chunk=agent.cfg.chunk_len, gamma=self.settings.gamma, obs_keys=keys,  # chunk = n-step horizon
                  self_imitation=self.settings.self_imitation, interventions=self.settings.interventions,
                  device=replay_device(agent.device))  # on a GPU learner, the replay lives there
        capacity = self.settings.capacity
        # Demo-side rows; 0 = the loaded demos + capacity, so interventions never overwrite them.
        demo_capacity = self.settings.demo_capacity or None
        if stores:  # demos (and interventions) warm-start the demo side
            replay = MixedReplay.from_store(stores, capacity=capacity, demo_capacity=demo_capacity, **kw)
            if replay.demo.has_samples and not self.init_checkpoint:  # state statistics from the
                # demos, not a first batch (a warm-started agent keeps the ones it was trained with)
                agent.fit_obs_normalizer(replay.demo.sample(4096, np.random.default_rng(self.seed))["obs"])
        else:
            replay = MixedReplay.create(schema, capacity, **kw)
        if self.settings.nproc > 1:  # after the normaliser fit and the checkpoint load: workers copy the agent
            from robot_rl.training.ddp import spawn_data_parallel

            self.get_logger().info(f"data-parallel updates over {self.settings.nproc} processes (gloo)")
            agent = self.data_parallel = spawn_data_parallel(agent, self.settings.nproc, self.run_dir,
                                                             threads=torch.get_num_threads())
        self.trainer = Trainer(agent, replay, self._offer_policy, seed=self.seed, on_progress=self._publish_progress,
                               checkpoint=self._save_checkpoint, checkpoint_every=self.settings.checkpoint_every,
                               **self.train_cfg)
        if self.follower is not None:  # this run's steps so far (a restart, or a learner started late)
            self._take_backfill(*self.follower.catch_up(replay))
        if self.resumed:
            self._resume_schedule()
        if not from_init:
            self._go()

    def _go(self) -> None:
        """Publish the initial actor at once (version 0, or above every earlier one on a
        restart), then train."""
        version = 0
        if self.resumed:  # strictly newer than anything the actor may hold, so it is taken
            version = self.trainer.loop.version + 1
            if self.gate is not None:  # above every archived candidate too (rejected ones included)
                version = max([version, *(v + 1 for v in self.gate.versions())])
            self.trainer.loop.version = version
        self._offer_policy(*self.trainer.export(), version)
        self.trainer.start()

    def _resume_schedule(self) -> None:
        """The killed learner's loop state (saved with its checkpoint) and the newest version it
        published (learner_state.json, written before each publish) or the actor ran (the store)."""
        state = dict(self._resume_state or {})
        versions = [int(state.get("version", 0))]
        try:
            versions.append(int(json.loads((self.run_dir / "learner_state.json").read_text())["policy_version"]))
        except (OSError, ValueError, KeyError):
            pass
        if self.follower is not None:
            versions.append(self.follower.max_policy_version())
        state["version"] = max(versions)
        self.trainer.resume(state)
        self.get_logger().warn(
            f"resumed from {self.checkpoint_path}: {self.trainer.updates} updates, policy version "
            f"{state['version']} before the restart; {self.backfilled} steps backfilled from the actor's store")

    def _save_checkpoint(self, _loop=None) -> None:
        """The agent and the loop's state, atomically (tmp file + rename: a learner killed while
        writing leaves the previous checkpoint whole). Called in the trainer thread, or at close."""
        import torch

        ck = self.trainer.agent.state_dict()
        ck["learner"] = self.trainer.state()
        # a name of its own per thread: close() may save while a timed-out trainer thread still does
        tmp = self.checkpoint_path.with_name(f"{self.checkpoint_path.name}.{threading.get_ident()}.tmp")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.save(ck, tmp)
        os.replace(tmp, self.checkpoint_path)

    def _backfill_store(self) -> str:
        """The actor's store to read into replay at start, if it holds steps ("" if none: then
        the first transition starts training, as on a fresh run). Several cells: not backfilled
        (each cell's store lives with its actor)."""
        if self.cells:
            return ""
        from robot_rl.data.store import EpisodeStore

        path = Path(self.settings.backfill_store or self.run_dir / "store.zarr")
        if not EpisodeStore.exists(path):
            return ""
        try:
            steps = EpisodeStore.open(path, "r").n_steps
        except FileNotFoundError:  # the actor is creating it this instant (attrs written, no commit
            return ""  # record yet): it holds no step, the topic will bring the first ones
        return str(path) if steps else ""

    def _take_backfill(self, keys: list, ended: list) -> None:
        self.received.update(keys)
        self.ended.update((e,) for e in ended)  # keyed as _on_transitions keys an episode end
        from robot_rl.training.backfill import Sequencer

        f = self.follower  # live steps go on from where the store's left off
        self.sequencers[""] = Sequencer(row=f.row, episode=f.episode if f.open_in_replay else f.episode - 1,
                                        open_=f.open_in_replay)
        self.episode_ends += len(ended)
        self.backfilled += len(keys)
        loop = self.trainer.loop
        loop.steps += len(keys)  # the schedule counts them as the live steps they were
        loop.episodes += len(ended)

    def _check_init_checkpoint(self) -> None:
        """At start, before observation shapes are known: the checkpoint must be an agent of
        this learner's kind, observation keys and action size."""
        from robot_rl.learn.agent import read_checkpoint

        path = self.init_checkpoint
        if not Path(path).is_file():
            raise FileNotFoundError(f"init_checkpoint: no checkpoint at {path}")
        ck = read_checkpoint(path)  # read once: the agent and (on a restart) the loop's state
        if not isinstance(ck, dict) or "obs_spec" not in ck:
            raise ValueError(f"init_checkpoint {path} is not an agent checkpoint")
        self._refuse_unless_fits(ck.get("kind"), ck.get("action_dim"), sorted(ck["obs_spec"]),
                                 sorted(policy_obs_keys(self.cameras)))
        self._resume_state = ck.pop("learner", None)  # the loop's state (a run's own checkpoint)
        self._init_ck = ck  # kept: the agent is built from this copy, the file is not read again

    def _refuse_unless_fits(self, kind, action_dim, observations, want_observations) -> None:
        have = {"kind": kind, "action size": action_dim, "observations": observations}
        want = {"kind": self.kind, "action size": self.action_spec.dim, "observations": want_observations}
        for what in want:
            if have[what] != want[what]:
                raise ValueError(f"init_checkpoint {self.init_checkpoint} does not fit: {what} {have[what]}, "
                                 f"this learner: {want[what]}")

    def _warm_start_agent(self):
        from robot_rl.learn.agent import load_agent

        agent, self._init_ck = load_agent(self._init_ck), None
        self._refuse_unless_fits(agent.kind, agent.action_dim, agent.spec.to_dict(), self.obs_spec.to_dict())
        self.get_logger().info(f"warm start from {self.init_checkpoint} ({agent.kind}, {agent.num_updates} updates "
                               f"behind it; its network config replaces the agent section)")
        self.warm_started_at = agent.num_updates
        return agent

    def _start_from_store(self, paths: str, backfill: str = "") -> None:
        """One store or several ("demos.zarr,runs/earlier/store.zarr", to resume a run): demo
        episodes fill the demo side, every other episode the online side (its intervention
        segments the demo side too, as settings.interventions says).
        `backfill`: this run's actor store, read as the steps it sent (robot_rl/training/backfill.py)."""
        from robot_rl.data.store import EpisodeStore
        from robot_rl.training.backfill import StoreFollower

        stores = []
        for path in csv_list(paths):
            if backfill and Path(path).resolve() == Path(backfill).resolve():
                continue  # read once, as this run's steps
            stores.append(EpisodeStore.open(path, mode="r"))
            self.get_logger().info(f"replay from {path}: {stores[-1].n_episodes} episodes, {stores[-1].n_steps} steps")
        if backfill:
            self.follower = StoreFollower(backfill, policy_obs_keys(self.cameras))
            self.get_logger().info(f"backfill from {backfill}: {self.follower.store.n_episodes} closed episodes, "
                                   f"{self.follower.store.n_steps} steps")
        schema = stores[0].schema if stores else self.follower.schema
        self._start(schema, stores, from_init=True)

    # ------------------------------------------------------------------ transitions
    def _on_transitions(self, msg, cell: str = "") -> None:
        try:
            kind, meta, arrays = codec.decode_bulk(msg)  # header, crc and arrays read once
            now, out = time.monotonic(), []
            if kind == codec.TRANSITIONS:
                if not self._first_fits:
                    self._start_from_first(meta, arrays)
                meta, steps = codec.transitions_from(meta, arrays, self.obs_spec, self.action_spec.dim)
                seq = self._sequencer(cell)
                for i, step in enumerate(steps):
                    seq.offer_step(int(meta["episode"]), int(meta["index"]) + i, step, out, now)
            elif kind == codec.EPISODE_END and self.trainer is not None:
                meta, final_obs = codec.episode_end_from(meta, arrays, self.obs_spec)
                seq = self._sequencer(cell)
                end_row = meta.get("end_row")
                seq.offer_end(int(meta["episode"]), final_obs, out, now, None if end_row is None else int(end_row))
            else:
                raise codec.PayloadError(f"unexpected payload kind {codec.KIND_NAMES.get(kind, kind)} on {C.TRANSITIONS}")
            self._mend(cell, out, now)
        except codec.PayloadError as e:  # one bad message: logged, counted, the next may be fine
            self.rejected += 1
            self.get_logger().error(f"transition payload rejected: {e}")

    def _sequencer(self, cell: str):
        from robot_rl.training.backfill import Sequencer

        if cell not in self.sequencers:
            self.sequencers[cell] = Sequencer()
        return self.sequencers[cell]

    def _mend(self, cell: str, out: list, now: float, upto: int | None = None, final: bool = False) -> None:
        """Fill a gap from the actor's store, or skip it once it is overdue (or at `final`), then
        hand what is in order to the trainer."""
        seq = self.sequencers.get(cell)
        if seq is not None and (seq.waiting or upto is not None):
            rows = self._gap_store(seq) if not cell else None  # several cells: their stores live with their actors
            if rows is not None:
                seq.fill(rows, out, now, upto)
            if seq.waiting and (final or seq.overdue(now)):
                lost = (seq.lost_steps, seq.lost_ends)
                seq.skip(out, now)
                self.get_logger().warning(
                    f"transitions lost in transport{' from ' + cell if cell else ''}: "
                    f"{seq.lost_steps - lost[0]} steps, {seq.lost_ends - lost[1]} episode ends "
                    f"(not in reach of the actor's store); {seq.lost_steps} steps lost so far")
        for what, key, payload in out:
            if what == "step":
                key = (cell, *key) if self.cells else key
                self.received.add(key)
                if self.cells:
                    self.received_by_cell[cell] += 1
                self.trainer.put_step(payload)
            else:
                self.ended.add((cell, key) if self.cells else (key,))
                self.trainer.put_episode_end(payload)
                self.episode_ends += 1

    def _gap_store(self, seq):
        """The actor's store, opened at the first gap, if it is here and is the one the steps
        come from (None otherwise)."""
        if self._rows is None:
            from robot_rl.data.store import EpisodeStore
            from robot_rl.training.backfill import StoreRows

            path = Path(self.settings.backfill_store or self.run_dir / "store.zarr")
            if not EpisodeStore.exists(path):
                return None  # a learner on another machine: gaps are skipped and counted
            probe = next(iter(seq.steps.items()), None) if seq.steps else None
            if probe is None and seq.last_step is not None:
                probe = (seq.row - 1, (None, seq.last_step))
            if probe is None:
                return None
            try:
                rows = StoreRows(path, policy_obs_keys(self.cameras))
            except (OSError, FileNotFoundError, KeyError, ValueError):
                return None
            if not rows.matches(probe[0], probe[1][1]["timestamp"]):
                rows.close()
                self._rows = False
                self.get_logger().warning(f"{path} is not the store these transitions come from: "
                                          "gaps will be skipped and counted, not filled")
                return None
            self._rows = rows
            self.get_logger().info(f"filling transport gaps from {path}")
        return self._rows or None

    def _mend_timer(self) -> None:
        """Once a second: steps the transport lost with nothing after them (the store has rows
        that should have come by now), and overdue gaps where the store is out of reach."""
        if self.trainer is None:
            return
        now = time.monotonic()
        rows = self._rows or None
        for cell, seq in list(self.sequencers.items()):
            out = []
            upto = self._tail_mark if (rows is not None and not cell) else None
            self._mend(cell, out, now, upto=upto)
        if rows is not None:
            rows.refresh()
            self._tail_mark = rows.n_steps
        elif not self.cells and "" in self.sequencers and self.sequencers[""].last_step is not None:
            self._gap_store(self.sequencers[""])  # open it (it may exist only now) for the next tick

    @property
    def transport(self) -> dict:
        seqs = self.sequencers.values()
        return {"duplicates_skipped": self.duplicates + sum(s.duplicates for s in seqs),
                "recovered_from_store": sum(s.recovered for s in seqs),
                "lost_steps": sum(s.lost_steps for s in seqs), "lost_episode_ends": sum(s.lost_ends for s in seqs),
                "waiting": sum(s.waiting for s in seqs)}

    def _start_from_first(self, meta: dict, arrays: dict) -> None:
        """The first transition starts training. If it does not fit (a key the policy needs is
        missing, the action size or, after a demo store, a shape differs), none after it will:
        fail the start naming the key, rather than reject every later message."""
        try:
            if self.obs_spec is None:  # else the demo store set the shapes: the actor's must match
                skip = set(codec.STEP_SCALARS)
                self._start({k: (tuple(a.shape[1:]), a.dtype.str) for k, a in arrays.items() if k not in skip})
            codec.transitions_from(meta, arrays, self.obs_spec, self.action_spec.dim)
            self._first_fits = True
        except (ValueError, codec.PayloadError) as e:
            raise LearnerFailed(f"the first transition does not fit: {e}") from None

    # ------------------------------------------------------------------ gated deployment
    def _make_gate(self, cells):
        from robot_rl.training.gate import Gate

        s = self.settings
        twin = {"rotation": s.action.rotation, "max_lin_vel": s.action.max_lin_vel, "max_ang_vel": s.action.max_ang_vel}
        levels = {"info": self.get_logger().info, "warn": self.get_logger().warn, "error": self.get_logger().error}
        gate = Gate(s.gate, self.run_dir, s.task, self._publish_policy, twin=twin, on_decision=self._on_gate_record,
                    log=lambda level, text: levels[level](text))
        for c in cells:
            subscription(self, C.DEPLOY, self._on_deploy, namespace=c)
        gate.start()
        return gate

    def _offer_policy(self, onnx_bytes: bytes, sha256: str, version: int) -> None:
        """A new candidate: published at once, or (gate on) handed to the gate with what its
        value estimate needs, taken here, where the agent is idle (the trainer's thread, or before it starts)."""
        if self.gate is None:
            self._publish_policy(onnx_bytes, sha256, version)
            return
        from robot_rl.training.gate import snapshot

        t = self.trainer
        inputs = snapshot(t.agent, t.replay, self.settings.gate.ope_states) if t is not None else None
        self.gate.submit(onnx_bytes, sha256, version, inputs)

    def _on_deploy(self, msg) -> None:
        rid = ""
        try:
            rid = str(json.loads(msg.data).get("id", "")) if msg.data.strip().startswith("{") else ""
        except (ValueError, AttributeError):
            pass
        ok, message = self.gate.request(msg.data)
        (self.get_logger().warn if ok else self.get_logger().error)(f"deploy request {msg.data!r}: {message}")
        self._gate_diagnostics({**self.gate.status(), "request_id": rid, "request_ok": ok}, 0 if ok else 1, message)

    def _on_gate_record(self, record: dict) -> None:
        """Each gate event: TensorBoard (against the candidate version) and /diagnostics at once."""
        if record.get("event") == "decision":
            figures = {k: record.get(k) for k in ("candidate_success", "deployed_success", "candidate_steps",
                                                  "deployed_steps", "q_candidate", "q_deployed", "q_gap",
                                                  "latency_s")}
            self.tb.scalars("gate", {**figures, "accepted": int(bool(record["accepted"]))}, int(record["candidate"]))
            level = 0 if record["accepted"] else 1
            message = f"v{record['candidate']} {'accepted' if record['accepted'] else 'rejected'}: {record['reason']}"
            values = {**self.gate.status(), **{f"gate_{k}": v for k, v in figures.items() if v is not None}}
            self._gate_diagnostics(values, level, message)
        elif record.get("event") in ("deploy", "restore"):
            self._gate_diagnostics(self.gate.status(), 0, f"v{record['candidate']} deployed: {record['reason']}")

    def _gate_diagnostics(self, values: dict, level: int, message: str) -> None:
        self.pub_diag.publish(codec.diagnostics_msg(self.get_clock().now().nanoseconds * 1e-9, "learner_gate",
                                                    values, level, message))

    def _publish_policy(self, onnx_bytes: bytes, sha256: str, version: int, meta: dict | None = None) -> None:
        # Said on disk before it is sent: a learner killed right after a publish restarts above it.
        state = self.run_dir / "learner_state.json"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = state.with_name(state.name + ".tmp")
        tmp.write_text(json.dumps({"policy_version": int(version)}))
        os.replace(tmp, state)
        msg = codec.encode_policy(onnx_bytes, version, {"kind": self.kind, **(meta or {})}, sha256=sha256)
        for pub in self.pub_policy:
            pub.publish(msg)
        self.versions_published.append(version)
        self.get_logger().info(f"published policy version {version} ({len(onnx_bytes)} bytes)")

    def _publish_progress(self, trained: int) -> None:
        if trained != self._last_progress:  # called from the trainer thread
            self._last_progress = trained
            for pub in self.pub_progress:
                pub.publish(Int64(data=int(trained)))

    def _on_diagnostics(self, msg) -> None:
        actor = codec.diagnostics_values(msg, "actor")
        if actor is None or self.trainer is None:
            return
        self.tb.scalars("rollout", {k: actor.get(k) for k in ("success_rate", "intervention_rate", "steps")},
                        self.trainer.updates)
        at = actor.get("eval_at_steps")
        if at is not None and at != self._eval_logged and at.isdigit():  # anyone may publish here
            self._eval_logged = at
            self.tb.scalars("eval", {"success_rate": actor.get("eval_success_rate")}, int(at))

    def _publish_diagnostics(self) -> None:
        self._mend_timer()
        t = self.trainer
        values = {
            "ingested": len(self.received), "episode_ends": self.episode_ends, "rejected": self.rejected,
            "backfilled": self.backfilled, **self.transport,
            "updates": t.updates if t else 0, "critic_steps": t.critic_steps if t else 0,
            "updates_per_s": f"{t.updates_per_s:.1f}" if t else "0",
            "policy_version": self.versions_published[-1] if self.versions_published else -1,
            **{f"ingested_{c}": n for c, n in self.received_by_cell.items()},
        }
        if self.gate is not None:
            values.update(self.gate.status())
        if t is not None:
            values.update({k: f"{v:.4g}" for k, v in t.metrics.items()})
            self.tb.scalars("train", {**t.metrics, "updates_per_s": t.updates_per_s, "ingested": len(self.received)},
                            t.updates)
        level = 2 if (t is not None and t.error is not None) else 0
        message = f"trainer stopped: {t.error!r}" if level else ""
        self.pub_diag.publish(codec.diagnostics_msg(self.get_clock().now().nanoseconds * 1e-9, "learner", values, level, message))
        if level:  # said on /diagnostics; now end the node with it (a learner that no longer
            # learns must not look alive: `robot-rl sim` stops and reports this reason)
            raise LearnerFailed(f"trainer stopped after {t.updates} updates: {type(t.error).__name__}: {t.error}")

    def close(self) -> None:
        if self.gate is not None:  # first: it publishes from its own thread
            self.gate.close()
        self.tb.close()
        if self.trainer is not None:
            for cell in list(self.sequencers):  # what waits goes in: filled from the store, or skipped
                self._mend(cell, [], time.monotonic(), upto=None if cell else 1 << 62, final=True)
            self.trainer.stop()
            self.trainer.finish_ingest()
            self._save_checkpoint()
        if self.data_parallel is not None:  # after the trainer's last update and the checkpoint
            self.data_parallel.close()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "learner_summary.json").write_text(json.dumps({
            "received": sorted([list(k) for k in self.received]), "episode_ends": self.episode_ends,
            "received_by_cell": self.received_by_cell,
            "rejected": self.rejected, "updates": self.trainer.updates if self.trainer else 0,
            **self.transport, "backfilled": self.backfilled, "resumed": self.resumed,
            "replay_steps": self.trainer.steps if self.trainer else 0,
            "versions_published": self.versions_published,
            "init_checkpoint": self.init_checkpoint or None, "warm_started_at_updates": self.warm_started_at,
            "trainer_error": repr(self.trainer.error) if self.trainer and self.trainer.error else None,
        }))


def main(args=None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ.get("ROBOT_RL_LEARNER_THREADS", "1")))
    return run(LearnerNode, args)


if __name__ == "__main__":
    main()
