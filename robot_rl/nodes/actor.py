"""Actor node: owns the control loop. Each tick: newest observation (stale -> hold), the ONNX
policy's action or the human's while the teleop is engaged, the safety filter, publish, and log
the step to the local zarr store before it goes to the learner.

Triggers: `timer` (robot: rate_hz on the node clock) or `observation` (sim: one tick per complete
observation, in lock-step with the twin, so sim time runs as fast as compute allows).
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_msgs.msg import Bool

from robot_rl import codec, contract as C
from robot_rl.control.episode_log import EpisodeLog
from robot_rl.control.policy_runner import ChunkQueue, OnnxPolicy, PolicyError
from robot_rl.data.store import EpisodeStore
from robot_rl.nodes.ros import csv_list, make_node_options, param, params_under, publisher, run, subscription
from robot_rl.safety import SafetyConfig, SafetyFilter
from robot_rl.spec import ActionSpec, policy_obs_keys


class ActorNode(Node):
    def __init__(self):
        super().__init__("actor", **make_node_options())
        self.task = param(self, "task", "pick_cube")
        self.run_dir = Path(param(self, "run_dir", "runs/sim"))
        self.cameras = csv_list(param(self, "policy_cameras", ""))
        self.action_spec = ActionSpec(**params_under(self, "action"))
        safety_cfg = SafetyConfig.from_dict(params_under(self, "safety"))
        self.safety = SafetyFilter(safety_cfg)
        self.rate_hz = param(self, "rate_hz", 10.0)
        self.trigger = param(self, "trigger", "timer")
        if self.trigger not in ("timer", "observation"):
            raise ValueError(f"actor.trigger must be timer or observation, not {self.trigger!r}")
        self.teleop_wait_s = param(self, "teleop_wait_s", 0.5)
        self.max_steps = int(param(self, "max_steps", 0))
        self.max_episodes = int(param(self, "max_episodes", 0))  # 0 = no limit
        # After the first episode and then every eval_every training steps, eval_episodes episodes
        # with no intervention allowed (eval_every 0 = never).
        self.eval_every = int(param(self, "eval_every", 0))
        self.eval_episodes = int(param(self, "eval_episodes", 5))
        self.next_eval_at = 0  # the first block measures the warm-start policy
        self.evaluating = False
        self.eval_left = 0
        self.eval_block: list[bool] = []
        self.eval_history: list[dict] = []  # {"steps", "success_rate", "episodes"} per block
        # Sim: start acting only once a learner listens, so a run's first steps reach it too.
        self.wait_for_learner = bool(param(self, "wait_for_learner", False))
        self.wait_for_teleop = bool(param(self, "wait_for_teleop", False))  # recording demos
        # Sim: stay at most this many steps ahead of what the learner has trained on at its UTD
        # ratio, so results do not depend on how fast this machine is (0 = never wait).
        self.learner_sync_lag = int(param(self, "learner_sync_lag", 0))
        self.learner_progress = 0
        self.gripper_joints = csv_list(param(self, "gripper_joints", C.GRIPPER_JOINT))
        self.obs_keys = policy_obs_keys(self.cameras)  # what this actor feeds a policy
        self.state_based = "object" in self.obs_keys

        self.latest: dict = {}  # topic -> newest message
        self.teleop: dict = {}  # teleop topic -> its newest decoded command
        self.sets: dict[int, dict] = {}  # lock-step: stamp -> {topic: message}, until ticked
        self.last_tick_key = -1
        self.waiting_since: float | None = None
        self.policy: OnnxPolicy | None = None
        self.next_policy: OnnxPolicy | None = None  # arrived during an evaluation
        self.versions_used: set[int] = set()
        self.chunks = ChunkQueue()
        self.engaged = False
        # Lock-step: the teleop sends its engaged flag with every answer, on a topic of its own
        # (no stamp), so an answer counts only once a flag has also arrived since the last tick.
        self.engaged_heard = False
        self.holds = 0
        self.hold_reasons: dict[str, int] = {}
        self.ticks = 0
        self.finished = False
        self.recent = deque(maxlen=20)  # (success, intervened) of the last episodes
        self.log: EpisodeLog | None = None
        self.store = None

        sq = C.sensor_qos(param(self, "sensor_reliability", "reliable"))
        required = [C.JOINT_STATES, C.EE_POSE, C.TASK_STATUS]
        if self.state_based:
            required.append(C.OBJECT_POSES)
        required += [C.camera_topic(c) for c in self.cameras]
        self.required = required
        for topic in required:
            subscription(self, topic, lambda m, t=topic: self._on_sensor(t, m), sq)
        subscription(self, C.TELEOP_ENGAGED, self._on_engaged)
        subscription(self, C.TELEOP_GRIPPER, lambda m: self._on_teleop(C.TELEOP_GRIPPER, m))
        subscription(self, C.TELEOP_TWIST, lambda m: self._on_teleop(C.TELEOP_TWIST, m))
        subscription(self, C.POLICY, self._on_policy)
        subscription(self, C.LEARNER_PROGRESS, self._on_progress)
        self.pub_twist = publisher(self, C.COMMAND_TWIST)
        self.pub_grip = publisher(self, C.COMMAND_GRIPPER)
        self.pub_transitions = publisher(self, C.TRANSITIONS)
        self.pub_diag = publisher(self, C.DIAGNOSTICS)
        self.pub_eval = publisher(self, C.EVALUATING)
        self.pub_eval.publish(Bool(data=False))
        wall = Clock(clock_type=ClockType.STEADY_TIME)
        if self.trigger == "timer":
            self.create_timer(1.0 / self.rate_hz, self._on_timer)
        else:  # lock-step: ticks come from observations; this only enforces the teleop wait
            self.create_timer(0.02, self._try_lockstep_tick, clock=wall)
        self.create_timer(1.0, self._publish_diagnostics, clock=wall)
        self.get_logger().info(
            f"actor up: task={self.task} trigger={self.trigger} cameras={self.cameras or 'none (state)'} "
            f"action_dim={self.action_spec.dim} run_dir={self.run_dir}"
        )

    # ------------------------------------------------------------------ inputs
    def _on_sensor(self, topic: str, msg) -> None:
        self.latest[topic] = msg
        if self.trigger == "observation":
            key = codec.stamp_key(msg.header.stamp)
            if key > self.last_tick_key:
                self.sets.setdefault(key, {})[topic] = msg
            self._try_lockstep_tick()

    def _on_teleop(self, topic: str, msg) -> None:
        """Decoded on arrival: a malformed command from a device is logged and dropped, never
        reaches the tick."""
        try:
            value = codec.twist_from_msg(msg) if topic == C.TELEOP_TWIST else codec.gripper_from_msg(msg)
        except codec.CodecError as e:
            self.get_logger().error(f"teleop command rejected: {e}")
            return
        self.latest[topic] = msg  # answers one observation: its stamp says which
        self.teleop[topic] = value
        if self.trigger == "observation":
            self._try_lockstep_tick()

    def _on_progress(self, msg) -> None:
        self.learner_progress = int(msg.data)
        if self.trigger == "observation":
            self._try_lockstep_tick()

    def _on_engaged(self, msg) -> None:
        self.engaged = bool(msg.data)
        self.engaged_heard = True
        if self.trigger == "observation":
            self._try_lockstep_tick()

    def _on_policy(self, msg) -> None:
        try:
            version, blob, meta = codec.decode_policy(msg)
            policy = OnnxPolicy(blob, version, self.action_spec.dim)
            missing = set(policy.obs_spec.shapes) - set(self.obs_keys)
            if missing:
                raise PolicyError(f"policy needs observations {sorted(missing)} this actor does not have")
        except (codec.PayloadError, PolicyError) as e:
            self.get_logger().error(f"policy rejected, keeping version {self._version()}: {e}")
            return
        if self.policy is not None and version <= self.policy.version:
            self.get_logger().warning(f"policy version {version} is not newer than {self.policy.version}; ignored")
            return
        if self.evaluating and self.policy is not None:
            self.next_policy = policy  # an evaluation measures one policy: swap when it ends
            return
        self._swap(policy)

    def _swap(self, policy: OnnxPolicy) -> None:
        self.policy, self.next_policy = policy, None
        self.chunks.clear()
        self.get_logger().info(f"policy version {policy.version} swapped in (chunk {policy.chunk}, sha256 {policy.sha256[:12]})")

    def _version(self) -> int:
        return self.policy.version if self.policy is not None else -1

    # ------------------------------------------------------------------ ticking
    def _stamp(self, topic):
        msg = self.latest.get(topic)
        return None if msg is None else codec.stamp_key(msg.header.stamp)

    def _try_lockstep_tick(self) -> None:
        """Tick on every complete observation, in stamp order: the twin may publish a terminal
        observation and the next episode's first back to back, and both matter."""
        if (self.wait_for_learner and self.count_subscribers(C.TRANSITIONS) == 0) or (
                self.wait_for_teleop and self.count_publishers(C.TELEOP_TWIST) == 0):
            return  # not started: the twin waits for a first command meanwhile
        if self.learner_sync_lag and self.log is not None and self.count_subscribers(C.TRANSITIONS) > 0 and \
                self.log.steps_logged - self.learner_progress > self.learner_sync_lag:
            return  # let the learner catch up; the twin waits for our command meanwhile
        while self.sets:
            key = min(self.sets)
            msgs = self.sets[key]
            if len(msgs) < len(self.required):
                if len(self.sets) > 50:  # an observation that never completes must not stall us
                    self.get_logger().warning("dropping an incomplete observation")
                    del self.sets[key]
                    continue
                return
            terminal = self._is_terminal(msgs)
            if not terminal and self.count_publishers(C.TELEOP_TWIST) > 0 and not self._teleop_answered(key):
                now = time.monotonic()
                if self.waiting_since is None:
                    self.waiting_since = now
                if now - self.waiting_since < self.teleop_wait_s:
                    return  # the scripted human is still deciding about this observation
            self.waiting_since = None
            if not terminal:  # this tick used up the teleop's answer (a terminal one has none)
                self.engaged_heard = False
            del self.sets[key]
            self.last_tick_key = key
            self._tick(msgs, age_override=0.0)

    @staticmethod
    def _is_terminal(msgs: dict) -> bool:
        try:
            st = codec.status_from_msg(msgs[C.TASK_STATUS])
        except codec.CodecError:
            return False
        return st["terminated"] or st["truncated"]

    def _teleop_answered(self, key: int) -> bool:
        return self.engaged_heard and self._stamp(C.TELEOP_TWIST) == key and self._stamp(C.TELEOP_GRIPPER) == key

    def _on_timer(self) -> None:
        if any(self.latest.get(t) is None for t in self.required):
            self._publish(np.zeros(6), -1.0)  # nothing heard yet: hold
            return
        self._tick(dict(self.latest), age_override=None)

    def _tick(self, msgs: dict, age_override: float | None) -> None:
        self.ticks += 1
        now = self.get_clock().now().nanoseconds * 1e-9
        obs_t = min(codec.from_stamp(msgs[t].header.stamp) for t in self.required)
        age = age_override if age_override is not None else max(0.0, now - obs_t)
        try:
            obs, status = self._observation(msgs)
        except codec.CodecError as e:
            self._hold(f"bad observation: {e}")
            return
        if self.log is None:
            self._open_store(obs)
        if self.max_episodes and self.log.episodes_done >= self.max_episodes:
            self.finished = True
        if self.finished:
            self._hold("budget spent")
            return
        if self.max_steps and self.log.steps_logged + (self.log.pending is not None) >= self.max_steps:
            self.finished = True  # this observation completes the last step: exactly max_steps logged
            self._hold("budget spent")
            self._record(obs, status)
            return
        terminal = status["terminated"] or status["truncated"]
        if not terminal:  # command first, bookkeeping after: the store write is off the latency path
            action, intervened = self._decide(obs, obs_t)
            twist, grip = self.action_spec.to_command(action)
            result = self.safety.filter(twist, grip, obs["proprio"][:3], age)
            if result.held:
                self._count_hold(result.reasons)
            self._publish(result.twist, result.grip, obs_t)
        if self._record(obs, status) and not terminal:
            executed = self.action_spec.from_command(result.twist, result.grip)
            self.log.act(obs, executed, intervened, self._version(), obs_t, eval_mode=self.evaluating)
            self.versions_used.add(self._version())

    def _decide(self, obs: dict, obs_t: float) -> tuple[np.ndarray, bool]:
        """The human's action while engaged (never during evaluation), else the policy's."""
        if self.engaged and not self.evaluating and self._teleop_fresh(obs_t):
            self.chunks.clear()
            return self.action_spec.from_command(self.teleop[C.TELEOP_TWIST], self.teleop[C.TELEOP_GRIPPER]), True
        if self.policy is not None:
            try:
                return self.chunks.next(lambda: self.policy(obs)), False
            except PolicyError as e:
                self.get_logger().error(f"policy failed, holding: {e}")
        action = np.zeros(self.action_spec.dim, np.float32)
        action[-1] = -1.0  # no policy yet: hold still, gripper open
        return action, False

    def _record(self, obs: dict, status: dict) -> bool:
        """Complete the previous step with this observation's outcome; True if an episode is open."""
        ended = self.log.episodes_done
        acting = self.log.observe(obs, status, eval_mode=self.evaluating)
        if self.log.episodes_done > ended:
            self._schedule_eval()  # decided before the next episode's first observation
        return acting

    def _teleop_fresh(self, obs_t: float) -> bool:
        msg, grip = self.latest.get(C.TELEOP_TWIST), self.latest.get(C.TELEOP_GRIPPER)
        if msg is None or grip is None:
            return False
        age = obs_t - codec.from_stamp(msg.header.stamp)
        return -1e-9 <= age <= self.safety.cfg.stale_timeout_s

    def _observation(self, msgs: dict) -> tuple[dict, dict]:
        obs = codec.observation_from_msgs(msgs, self.cameras, self.state_based, self.gripper_joints)
        return obs, codec.status_from_msg(msgs[C.TASK_STATUS])

    def _hold(self, reason: str) -> None:
        self._count_hold((reason,))
        res = self.safety.hold(reason)
        self._publish(res.twist, res.grip)

    def _count_hold(self, reasons) -> None:
        self.holds += 1
        for r in reasons:
            key = r.split(" (")[0]
            self.hold_reasons[key] = self.hold_reasons.get(key, 0) + 1

    def _publish(self, twist, grip: float, t: float | None = None) -> None:
        t = t if t is not None else self.get_clock().now().nanoseconds * 1e-9
        self.pub_grip.publish(codec.gripper_msg(grip, t))  # the twin steps once both of this stamp are in
        self.pub_twist.publish(codec.twist_msg(twist, t, C.BASE_FRAME))

    # ------------------------------------------------------------------ storage and learner
    def _open_store(self, obs: dict) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = Path(param(self, "store", "") or self.run_dir / "store.zarr")
        schema = {k: (tuple(np.shape(v)), np.asarray(v).dtype.str) for k, v in obs.items()}
        schema["action"] = ((self.action_spec.dim,), "<f4")
        # An existing store is appended to (a resumed run), and must have this run's schema.
        self.store = EpisodeStore.open_or_create(
            str(path), schema, attrs={"task": self.task, "action_names": list(self.action_spec.names)})
        self.log = EpisodeLog(self.store, self._send_step, self._send_episode_end,
                              {"task": self.task, "robot": param(self, "robot", "twin")},
                              source=param(self, "episode_source", "policy"))
        self.get_logger().info(f"logging to {path}")

    def _send_step(self, step: dict, meta: dict) -> None:
        self.pub_transitions.publish(codec.encode_transitions([step], meta))

    def _send_episode_end(self, final_obs: dict, meta: dict) -> None:
        self.pub_transitions.publish(codec.encode_episode_end(final_obs, meta))
        if meta["eval"]:
            self.eval_block.append(meta["success"])
            if len(self.eval_block) == self.eval_episodes:
                rate = float(np.mean(self.eval_block))
                self.eval_history.append({"steps": meta["steps"], "train_steps": meta["train_steps"],
                                          "success_rate": rate, "episodes": len(self.eval_block),
                                          "policy_version": self._version()})
                self.get_logger().info(f"evaluation after {meta['train_steps']} training steps: "
                                       f"success {rate:.0%} over {len(self.eval_block)} episodes")
        else:
            self.recent.append((meta["success"], meta["intervened"]))

    def _schedule_eval(self) -> None:
        train_steps = self.log.steps_logged - self.log.eval_steps
        if self.eval_left == 0 and self.eval_every and train_steps >= self.next_eval_at:
            self.eval_left, self.eval_block = self.eval_episodes, []
            while self.next_eval_at <= train_steps:
                self.next_eval_at += self.eval_every
        self.evaluating = self.eval_left > 0
        if self.evaluating:
            self.eval_left -= 1
        elif self.next_policy is not None:
            self._swap(self.next_policy)
        self.pub_eval.publish(Bool(data=self.evaluating))

    def _publish_diagnostics(self) -> None:
        if self.log is None:
            return
        success = np.mean([s for s, _ in self.recent]) if self.recent else 0.0
        interv = np.mean([i for _, i in self.recent]) if self.recent else 0.0
        values = {
            "steps": self.log.steps_logged, "episodes": self.log.episodes_done,
            "success_rate": f"{success:.3f}", "intervention_rate": f"{interv:.3f}",
            "policy_version": self._version(), "holds": self.holds, "finished": self.finished,
            "evaluating": self.evaluating,
        }
        if self.eval_history:
            values["eval_success_rate"] = f"{self.eval_history[-1]['success_rate']:.3f}"
            values["eval_at_steps"] = self.eval_history[-1]["train_steps"]
        self.pub_diag.publish(codec.diagnostics_msg(self.get_clock().now().nanoseconds * 1e-9, "actor", values))

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            summary = {
                "steps_logged": self.log.steps_logged, "episodes": self.log.episodes_done,
                "successes": self.log.successes, "interventions": self.log.interventions,
                "versions_used": sorted(self.versions_used), "holds": self.holds,
                "hold_reasons": self.hold_reasons, "ticks": self.ticks, "evaluations": self.eval_history,
            }
            (self.run_dir / "actor_summary.json").write_text(json.dumps(summary, indent=1))
        if self.store is not None and hasattr(self.store, "close"):
            self.store.close()


def main(args=None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return run(ActorNode, args)


if __name__ == "__main__":
    main()
