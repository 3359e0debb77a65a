"""The actor's control loop as plain code: the ROS node only converts and publishes.

In: sensor messages, teleop answers and the engaged flag, the learner's policy blobs and
progress, the e-stop, clock ticks. Out (through `io`, an ActorIO): commands (every one, holds
included, through the one safety filter), transition payloads (after the step is in the local
store), the evaluation flag, log lines.

The loop, each tick: the newest complete observation (lock-step: the set of messages stamped
with one sim time, in stamp order; robot: the newest of each topic on the timer, its age
checked), the human's command while engaged or the policy's next action (action chunks run
open loop, one per tick), the safety filter, publish, log the step to zarr.

The chunk queue is cleared at every boundary a planned chunk must not cross: a new episode, an
evaluation start, any hold, a takeover, a policy swap.

Guards on the policy's commands (robot_rl/control/guard.py): ease-in after a swap, a takeover
release or a hold; trips (observation out of the policy's training distribution, commands
saturated at the safety bounds) that latch a hold like the e-stop. Both are off in sim.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from robot_rl import codec
from robot_rl.control.episode_log import EpisodeLog
from robot_rl.control.guard import EaseIn, ObsStatsError, TripMonitor, TripSettings, parse_obs_stats
from robot_rl.control.policy_runner import ChunkQueue, OnnxPolicy, PolicyError
from robot_rl.names import EE_POSE, GRIPPER_JOINT, JOINT_STATES, OBJECT_POSES, TASK_STATUS, TELEOP_GRIPPER, TELEOP_TWIST, camera_topic
from robot_rl.safety import SafetyConfig, SafetyFilter
from robot_rl.spec import ActionSpec, policy_obs_keys

ESTOP_LATCH_FILE = "estop_latched"  # in run_dir: an e-stop outlives an actor restart
TRIP_LATCH_FILE = "trip_latched"  # in run_dir: so does a trip (a respawned actor must not resume)


@dataclass
class ActorSettings:
    """The actor node's parameters; defaults are config/sim.yaml's (tests/test_settings.py)."""

    task: str = "pick_cube"
    run_dir: str = "runs/sim"
    store: str = ""  # "" = run_dir/store.zarr; an existing store is appended to
    robot: str = "twin"  # episode metadata
    episode_source: str = "policy"  # policy on a learning run, demo when recording
    policy_cameras: str = ""  # "front,wrist": a pixel policy; "" = state-based
    gripper_joints: str = GRIPPER_JOINT  # joint_states entries whose positions sum to the opening
    action: ActionSpec = field(default_factory=ActionSpec)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    rate_hz: float = 10.0  # the control rate: the timer's, the safety filter's control period
    trigger: str = "observation"  # observation (sim, lock-step) | timer (robot, wall clock)
    teleop_wait_s: float = 2.0  # lock-step: wall seconds to wait for the teleop's answer
    max_steps: int = 0  # 0 = no limit
    max_episodes: int = 0
    wait_for_learner: bool = True  # lock-step: act once a learner subscribes to transitions
    wait_for_teleop: bool = False  # lock-step: act once a teleop publishes (recording demos)
    learner_sync_lag: int = 20  # sim: at most this many steps ahead of the learner (0 = never wait)
    eval_every: int = 500  # training steps between evaluation blocks (0 = never)
    eval_episodes: int = 10  # episodes per block, no intervention allowed
    eval_at_start: bool = False  # a first block before any training (measures a warm start)
    sensor_reliability: str = "reliable"  # best_effort where the drivers publish best-effort
    policy_file: str = ""  # an ONNX actor to run from the start (version 0) until a newer one arrives
    ease_in_ticks: int = 0  # policy ticks to ramp from hold to the policy's twist (0 = off)
    trip: TripSettings = field(default_factory=TripSettings)

    def __post_init__(self):
        if self.trigger not in ("timer", "observation"):
            raise ValueError(f"actor.trigger must be timer or observation, not {self.trigger!r}")
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {self.rate_hz}")
        if self.ease_in_ticks < 0:
            raise ValueError(f"ease_in_ticks must be >= 0, got {self.ease_in_ticks}")

    @property
    def cameras(self) -> list[str]:
        return _csv(self.policy_cameras)


def _csv(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    return [s.strip() for s in str(value or "").split(",") if s.strip()]


class ActorIO(Protocol):
    """What the core needs from the outside world (the node; a recorder in tests)."""

    def command(self, twist: np.ndarray, grip: float, stamp: float) -> None: ...
    def transition(self, msg) -> None: ...
    def evaluating(self, flag: bool) -> None: ...
    def log(self, level: str, text: str) -> None: ...
    def now(self) -> float: ...  # the node clock (sim time in sim), seconds
    def learner_listening(self) -> bool: ...
    def teleop_present(self) -> bool: ...
    def arm_listening(self) -> bool: ...  # someone takes command/twist (the adapter, once Servo is matched)


class ActorCore:
    def __init__(self, s: ActorSettings, io: ActorIO, monotonic=time.monotonic, cell: str = ""):
        self.s = s
        self.cell = cell  # the cell's namespace: each stored episode says which cell it ran in
        self.io = io
        self.monotonic = monotonic  # wall time for the lock-step teleop wait
        self.run_dir = Path(s.run_dir)
        self.spec = s.action
        self.safety = SafetyFilter(s.safety, control_dt=1.0 / s.rate_hz)
        self.lockstep = s.trigger == "observation"
        self.cameras = s.cameras
        self.obs_keys = policy_obs_keys(self.cameras)  # what this actor feeds a policy
        self.state_based = "object" in self.obs_keys
        self.gripper_joints = _csv(s.gripper_joints)
        self.required = [JOINT_STATES, EE_POSE, TASK_STATUS] + ([OBJECT_POSES] if self.state_based else []) \
            + [camera_topic(c) for c in self.cameras]

        self.latest: dict = {}  # topic -> newest message
        self.teleop_cmd: dict = {}  # teleop topic -> its newest decoded command
        self.engaged = False
        # Lock-step: the teleop sends its engaged flag with every answer, on a topic of its own
        # (no stamp), so an answer counts only once a flag has also arrived since the last tick.
        self.engaged_heard = False
        self.sets: dict[int, dict] = {}  # lock-step: stamp -> {topic: message}, until ticked
        self.last_tick_key = -1
        self.waiting_since: float | None = None
        self.learner_progress = 0

        self.obs_shapes: dict = {}  # key -> shape, from the first observation
        self.policy: OnnxPolicy | None = None
        self.next_policy: OnnxPolicy | None = None  # arrived during an evaluation
        self.versions_used: set[int] = set()
        self.chunks = ChunkQueue()
        self.chunk_episode = None  # the status' episode id the queued chunk was planned in

        self.evaluating = False
        # the first block: before any training when measuring a warm start, else after eval_every
        self.next_eval_at = 0 if s.eval_at_start else s.eval_every
        self.eval_left = 0
        self.eval_block: list[bool] = []
        self.eval_history: list[dict] = []

        self.ease = EaseIn(s.ease_in_ticks)
        self.trip = TripMonitor(s.trip, s.safety)
        self.trips: list[dict] = []  # every trip this run: the summary says why it stopped
        self.trip_reason = ""  # "" = not tripped
        trip_file = self.run_dir / TRIP_LATCH_FILE
        if trip_file.exists():
            self.trip_reason = trip_file.read_text().strip() or "trip latched before this start"
            io.log("warn", f"trip latched from before this start ({trip_file}): {self.trip_reason}; "
                           "holding the policy until cleared")
        self.estop_asserted = False  # the topic's last value
        self.estop_latched = (self.run_dir / ESTOP_LATCH_FILE).exists()
        if self.estop_latched:
            io.log("warn", f"e-stop latched from before this start ({self.run_dir / ESTOP_LATCH_FILE}); "
                           "holding until cleared")
        if s.policy_file:  # a wrong file fails the start, naming it
            try:
                self._swap(self._verified(Path(s.policy_file).read_bytes(), 0))
            except (OSError, PolicyError) as e:
                raise ValueError(f"policy_file {s.policy_file}: {e}") from None
        self.stale_topics: list[str] = []
        self.holds = 0
        self.hold_reasons: dict[str, int] = {}
        self.ticks = 0
        self.finished = False
        self.recent = deque(maxlen=20)  # (success, intervened) of the last training episodes
        self.log: EpisodeLog | None = None
        self.store = None

    # ------------------------------------------------------------------ inputs
    def sensor(self, topic: str, msg) -> None:
        self.latest[topic] = msg
        if self.lockstep:
            key = codec.stamp_key(msg.header.stamp)
            if key > self.last_tick_key:
                self.sets.setdefault(key, {})[topic] = msg
            self.poll()

    def teleop(self, topic: str, msg) -> None:
        """Decoded on arrival: a malformed command from a device is logged and dropped."""
        try:
            value = codec.twist_from_msg(msg) if topic == TELEOP_TWIST else codec.gripper_from_msg(msg)
        except codec.CodecError as e:
            self.io.log("error", f"teleop command rejected: {e}")
            return
        self.latest[topic] = msg  # answers one observation: its stamp says which
        self.teleop_cmd[topic] = value
        if self.lockstep:
            self.poll()

    def set_engaged(self, engaged: bool) -> None:
        self.engaged = bool(engaged)
        self.engaged_heard = True
        if self.lockstep:
            self.poll()

    def set_progress(self, steps: int) -> None:
        self.learner_progress = int(steps)
        if self.lockstep:
            self.poll()

    def offer_policy(self, msg) -> None:
        """A policy blob from the learner: verified, then swapped in (or queued behind an
        evaluation, which measures one policy). Anything wrong keeps the last good one."""
        try:
            version, blob, meta = codec.decode_policy(msg)  # checks the sha256: hashed once here
            policy = self._verified(blob, version, sha256=meta["sha256"])
        except (codec.PayloadError, PolicyError) as e:
            self.io.log("error", f"policy rejected, keeping version {self.version}: {e}")
            return
        if self.policy is not None and version <= self.policy.version:
            self.io.log("warn", f"policy version {version} is not newer than {self.policy.version}; ignored")
            return
        if self.evaluating and self.policy is not None:
            self.next_policy = policy
            return
        self._swap(policy)

    def _verified(self, blob: bytes, version: int, sha256: str | None = None) -> OnnxPolicy:
        """An ONNX actor this robot can run, or PolicyError saying why not."""
        policy = OnnxPolicy(blob, version, self.spec.dim, sha256=sha256)
        missing = set(policy.obs_spec.shapes) - set(self.obs_keys)
        if missing:
            raise PolicyError(f"policy needs observations {sorted(missing)} this actor does not have")
        wrong = {k: (shape, self.obs_shapes[k]) for k, shape in policy.obs_spec.shapes.items()
                 if k in self.obs_shapes and tuple(shape) != self.obs_shapes[k]}
        if wrong:
            raise PolicyError("policy expects observation shapes that differ from this robot's: " + ", ".join(
                f"{k} {want} (robot: {have})" for k, (want, have) in wrong.items()))
        try:
            policy.obs_stats = parse_obs_stats(policy.metadata)
        except ObsStatsError as e:
            raise PolicyError(str(e)) from None
        bad = {k: len(m) for k, (m, _) in (policy.obs_stats or {}).items()
               if policy.obs_spec.shapes.get(k) != (len(m),)}
        if bad:
            raise PolicyError(f"policy's obs_stats do not match its inputs: {bad}")
        return policy

    def set_estop(self, asserted: bool) -> None:
        """The e-stop topic. True latches at once (and on disk); False alone does not release:
        that takes clear_estop() too, an explicit act of the operator."""
        self.estop_asserted = bool(asserted)
        if asserted and not self.estop_latched:
            self.estop_latched = True
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / ESTOP_LATCH_FILE).write_text("e-stop asserted; robot-rl estop --clear releases it\n")
            self.io.log("warn", "E-STOP: holding until cleared")
            if not self.lockstep:  # hold now, not at the next tick (lock-step: the twin holds itself)
                self._hold("estop")

    def clear_estop(self) -> tuple[bool, str]:
        """The operator's one clear (actor/clear_estop, `robot-rl estop --clear`): releases a
        latched e-stop and a latched trip alike, both being 'held until a person says go'."""
        if self.estop_asserted:
            return False, "the e-stop topic is still true: release the e-stop first (publish false)"
        was, tripped = self.estop_latched, self.trip_reason
        self.estop_latched, self.trip_reason = False, ""
        (self.run_dir / ESTOP_LATCH_FILE).unlink(missing_ok=True)
        (self.run_dir / TRIP_LATCH_FILE).unlink(missing_ok=True)
        self.trip.restart()
        said = ["e-stop cleared" if was else "e-stop was not latched"]
        if tripped:
            said.append(f"trip cleared ({tripped})")
        if was or tripped:
            self.io.log("warn", "; ".join(said))
        return True, "; ".join(said)

    def _latch_trip(self, reason: str) -> None:
        self.trip_reason = reason
        self.trips.append({"reason": reason, "tick": self.ticks, "policy_version": self.version})
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / TRIP_LATCH_FILE).write_text(reason + "\n")
        self.io.log("warn", f"TRIP: {reason}; holding the policy until cleared (robot-rl estop --clear)")

    # ------------------------------------------------------------------ ticking
    def poll(self) -> None:
        """Lock-step: tick on every complete observation, in stamp order (the twin may publish
        a terminal observation and the next episode's first back to back, and both matter)."""
        if (self.s.wait_for_learner and not self.io.learner_listening()) or (
                self.s.wait_for_teleop and not self.io.teleop_present()):
            return  # not started: the twin waits for a first command meanwhile
        if self.s.learner_sync_lag and self.log is not None and self.io.learner_listening() and \
                self.log.steps_logged - self.learner_progress > self.s.learner_sync_lag:
            return  # let the learner catch up; the twin waits for our command meanwhile
        while self.sets:
            key = min(self.sets)
            msgs = self.sets[key]
            if len(msgs) < len(self.required):
                if len(self.sets) > 50:  # an observation that never completes must not stall us
                    self.io.log("warn", "dropping an incomplete observation")
                    del self.sets[key]
                    continue
                return
            terminal = _is_terminal(msgs)
            if not terminal and self.io.teleop_present() and not self._teleop_answered(key):
                now = self.monotonic()
                if self.waiting_since is None:
                    self.waiting_since = now
                if now - self.waiting_since < self.s.teleop_wait_s:
                    return  # the human is still deciding about this observation
            self.waiting_since = None
            if not terminal:  # this tick used up the teleop's answer (a terminal one has none)
                self.engaged_heard = False
            del self.sets[key]
            self.last_tick_key = key
            self._tick(msgs, age=0.0)

    def timer(self) -> None:
        """Robot: one tick on the wall clock with the newest message of each topic."""
        if not self.io.arm_listening():
            # Not a step: a command nobody takes would be logged as executed while the arm stood
            # still (DDS discovery of adapter -> Servo can take seconds on a loaded machine).
            self._hold("no one takes command/twist yet")
            return
        now = self.io.now()
        missing = [t for t in self.required if t not in self.latest]
        if missing:
            self.stale_topics = missing
            self._hold(f"no data yet on {', '.join(missing)}")
            return
        ages = {t: now - codec.from_stamp(self.latest[t].header.stamp) for t in self.required}
        self.stale_topics = sorted(t for t, a in ages.items() if not a <= self.s.safety.stale_timeout_s)
        self._tick(dict(self.latest), age=max(0.0, max(ages.values())))

    def _teleop_answered(self, key: int) -> bool:
        return self.engaged_heard and self._stamp(TELEOP_TWIST) == key and self._stamp(TELEOP_GRIPPER) == key

    def _stamp(self, topic):
        msg = self.latest.get(topic)
        return None if msg is None else codec.stamp_key(msg.header.stamp)

    def _tick(self, msgs: dict, age: float) -> None:
        self.ticks += 1
        obs_t = min(codec.from_stamp(msgs[t].header.stamp) for t in self.required)
        try:
            obs = codec.observation_from_msgs(msgs, self.cameras, self.state_based, self.gripper_joints)
            status = codec.status_from_msg(msgs[TASK_STATUS])
        except codec.CodecError as e:
            self._hold(f"bad observation: {e}", obs_t)
            return
        if self.log is None:
            self._open_store(obs)
        wrong = {k: np.shape(v) for k, v in obs.items() if np.shape(v) != self.obs_shapes.get(k, np.shape(v))}
        if wrong:  # a well-formed message of another size (a camera reconfigured): the store and
            # the policy take this run's shapes only (issue 18, tests/test_faults_input.py)
            self._hold(f"bad observation: shapes {wrong}, this run's are "
                       f"{ {k: self.obs_shapes[k] for k in wrong} }", obs_t)
            return
        if self.s.max_episodes and self.log.episodes_done >= self.s.max_episodes:
            self.finished = True
        if self.finished:
            self._hold("budget spent", obs_t)
            return
        if self.s.max_steps and self.log.steps_logged + (self.log.pending is not None) >= self.s.max_steps:
            self.finished = True  # this observation completes the last step: exactly max_steps logged
            self._hold("budget spent", obs_t)
            self._record(obs, status)
            return
        terminal = status["terminated"] or status["truncated"]
        if not terminal:  # command first, bookkeeping after: the store write is off the latency path
            if status["episode"] != self.chunk_episode:
                self.chunks.clear()  # a new episode: nothing planned in the last one carries over
                self.chunk_episode = status["episode"]
            result, intervened = self._command(obs, obs_t, age)
            self.io.command(result.twist, result.grip, obs_t)
        if self._record(obs, status) and not terminal:
            executed = self.spec.from_command(result.twist, result.grip)
            self.log.act(obs, executed, intervened, self.version, obs_t, eval_mode=self.evaluating)
            self.versions_used.add(self.version)

    def _command(self, obs: dict, obs_t: float, age: float):
        """-> (safety result, intervened): the human's command while engaged (never during
        evaluation), else the policy's; every path, holds included, through the filter.
        A latched trip holds the policy only: the human may still take over (and drive the
        robot back to where the policy knows its way), the e-stop holds everything."""
        intervened, reason, by_policy = False, None, False
        if self.estop_latched:
            reason = "estop"
        elif self.engaged and not self.evaluating and self._teleop_fresh(obs_t):
            self.chunks.clear()  # a takeover: the policy replans from what the human leaves
            action, intervened = self.spec.from_command(self.teleop_cmd[TELEOP_TWIST], self.teleop_cmd[TELEOP_GRIPPER]), True
            twist, grip = self.spec.to_command(action)
        elif self.policy is None:
            reason = "no policy yet"
        elif self.trip_reason:
            reason = "trip"
        else:
            reason, twist, grip = self._policy_command(obs)
            by_policy = reason is None
        if reason is not None:
            result = self.safety.hold(reason)  # zero twist, the grip kept: a fault drops nothing
        else:
            if by_policy:  # ramp up from the hold (zero) after a swap, a takeover or a hold
                twist = twist * self.ease.factor()
            result = self.safety.filter(twist, grip, obs["proprio"][:3], age)
        if result.held:
            self.chunks.clear()
            self._count_hold(result.reasons)
        if not by_policy or result.held:  # the policy did not drive: it takes over afresh next time
            self.ease.restart()
            self.trip.restart()
        return result, intervened

    def _policy_command(self, obs: dict):
        """-> (hold reason or None, twist, grip): the policy's command, checked by the trips
        before it runs (its observation) and after (its speeds)."""
        tripped = self.trip.observation(obs)
        if tripped is None:
            try:
                action = self.chunks.next(lambda: self.policy(obs))
            except PolicyError as e:
                self.io.log("error", f"policy failed, holding: {e}")
                return "policy error", None, None
            twist, grip = self.spec.to_command(action)
            tripped = self.trip.command(twist)
            if tripped is None:
                return None, twist, grip
        self._latch_trip(tripped)  # this very tick holds: the k-th bad tick never leaves the stack
        return "trip", None, None

    def _record(self, obs: dict, status: dict) -> bool:
        """Complete the previous step with this observation's outcome; True if an episode is open."""
        ended = self.log.episodes_done
        acting = self.log.observe(obs, status, eval_mode=self.evaluating)
        if self.log.episodes_done > ended:
            self._schedule_eval()  # decided before the next episode's first observation
        return acting

    def _teleop_fresh(self, obs_t: float) -> bool:
        msg = self.latest.get(TELEOP_TWIST)
        if msg is None or TELEOP_GRIPPER not in self.teleop_cmd:
            return False
        stamp = codec.from_stamp(msg.header.stamp)
        if self.lockstep:  # an answer to this very observation, stamped with it
            return -1e-9 <= obs_t - stamp <= self.s.safety.stale_timeout_s
        # robot: a device stamps with its own now, later than the sensors' stamps; fresh if recent
        return abs(self.io.now() - stamp) <= self.s.safety.stale_timeout_s

    def _hold(self, reason: str, stamp: float | None = None) -> None:
        self.chunks.clear()
        self.ease.restart()  # the policy did not drive this tick: it takes over afresh next time
        self.trip.restart()
        self._count_hold((reason,))
        res = self.safety.hold(reason)
        self.io.command(res.twist, res.grip, self.io.now() if stamp is None else stamp)

    def _count_hold(self, reasons) -> None:
        self.holds += 1
        for r in reasons:
            key = r.split(" (")[0]
            self.hold_reasons[key] = self.hold_reasons.get(key, 0) + 1

    # ------------------------------------------------------------------ policy and evaluation
    @property
    def version(self) -> int:
        return self.policy.version if self.policy is not None else -1

    def _swap(self, policy: OnnxPolicy) -> None:
        self.policy, self.next_policy = policy, None
        self.chunks.clear()
        self.ease.restart()  # a new policy eases in from standstill
        self.trip.restart()
        self.trip.stats = getattr(policy, "obs_stats", None)
        self.io.log("info", f"policy version {policy.version} swapped in (chunk {policy.chunk}, sha256 {policy.sha256[:12]})")
        if self.s.trip.ood_std and self.trip.stats is None:
            self.io.log("warn", f"policy version {policy.version} carries no obs_stats: "
                                "the out-of-distribution trip is off while it runs")

    def _schedule_eval(self) -> None:
        train_steps = self.log.steps_logged - self.log.eval_steps
        if self.eval_left == 0 and self.s.eval_every and train_steps >= self.next_eval_at:
            self.eval_left, self.eval_block = self.s.eval_episodes, []
            while self.next_eval_at <= train_steps:
                self.next_eval_at += self.s.eval_every
        was = self.evaluating
        self.evaluating = self.eval_left > 0
        if self.evaluating:
            self.eval_left -= 1
            if not was:
                self.chunks.clear()  # an evaluation starts from a clean plan
        elif self.next_policy is not None:
            self._swap(self.next_policy)
        self.io.evaluating(self.evaluating)

    # ------------------------------------------------------------------ storage and learner
    def _open_store(self, obs: dict) -> None:
        from robot_rl.data.store import EpisodeStore

        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = Path(self.s.store or self.run_dir / "store.zarr")
        schema = {k: (tuple(np.shape(v)), np.asarray(v).dtype.str) for k, v in obs.items()}
        self.obs_shapes = {k: shape for k, (shape, _) in schema.items()}
        schema["action"] = ((self.spec.dim,), "<f4")
        # An existing store is appended to (a resumed run), and must have this run's schema.
        self.store = EpisodeStore.open_or_create(
            str(path), schema, attrs={"task": self.s.task, "action_names": list(self.spec.names)})
        self.log = EpisodeLog(self.store, self._send_step, self._send_episode_end,
                              {"task": self.s.task, "robot": self.s.robot, "cell": self.cell},
                              source=self.s.episode_source)
        self.io.log("info", f"logging to {path}")

    def _send_step(self, step: dict, meta: dict) -> None:
        self.io.transition(codec.encode_transitions([step], meta))

    def _send_episode_end(self, final_obs: dict, meta: dict) -> None:
        self.io.transition(codec.encode_episode_end(final_obs, meta))
        if meta["eval"]:
            self.eval_block.append(meta["success"])
            if len(self.eval_block) == self.s.eval_episodes:
                rate = float(np.mean(self.eval_block))
                self.eval_history.append({"steps": meta["steps"], "train_steps": meta["train_steps"],
                                          "success_rate": rate, "episodes": len(self.eval_block),
                                          "policy_version": self.version})
                self.io.log("info", f"evaluation after {meta['train_steps']} training steps: "
                                    f"success {rate:.0%} over {len(self.eval_block)} episodes")
        else:
            self.recent.append((meta["success"], meta["intervened"]))

    def diagnostics(self) -> dict:
        values = {"estop": self.estop_latched, "trip": self.trip_reason, "stale_topics": ",".join(self.stale_topics),
                  "policy_version": self.version, "holds": self.holds}
        if self.log is None:
            return values
        success = np.mean([s for s, _ in self.recent]) if self.recent else 0.0
        interv = np.mean([i for _, i in self.recent]) if self.recent else 0.0
        values.update({
            "steps": self.log.steps_logged, "episodes": self.log.episodes_done,
            "success_rate": f"{success:.3f}", "intervention_rate": f"{interv:.3f}",
            "finished": self.finished, "evaluating": self.evaluating,
        })
        if self.eval_history:
            values["eval_success_rate"] = f"{self.eval_history[-1]['success_rate']:.3f}"
            values["eval_at_steps"] = self.eval_history[-1]["train_steps"]
        return values

    def diagnostics_status(self) -> tuple[int, str]:
        """(level, message) of the actor's /diagnostics status: ERROR while a latched hold (e-stop,
        trip) waits for the operator, saying why; WARN while topics are stale."""
        said = (["e-stop latched"] if self.estop_latched else []) + (
            [f"tripped: {self.trip_reason}"] if self.trip_reason else [])
        if said:
            return 2, "; ".join(said)
        return (1, f"stale: {','.join(self.stale_topics)}") if self.stale_topics else (0, "")

    def close(self) -> dict | None:
        """Shut down: close the open step and the store; the run's summary (None if nothing ran)."""
        summary = None
        if self.log is not None:
            self.log.close()
            summary = {
                "steps_logged": self.log.steps_logged, "episodes": self.log.episodes_done,
                "successes": self.log.successes, "interventions": self.log.interventions,
                "versions_used": sorted(self.versions_used), "holds": self.holds,
                "hold_reasons": self.hold_reasons, "ticks": self.ticks, "evaluations": self.eval_history,
                "trips": self.trips, "tripped": self.trip_reason,
            }
        if self.store is not None and hasattr(self.store, "close"):
            self.store.close()
        return summary


def _is_terminal(msgs: dict) -> bool:
    try:
        st = codec.status_from_msg(msgs[TASK_STATUS])
    except codec.CodecError:
        return False
    return st["terminated"] or st["truncated"]
