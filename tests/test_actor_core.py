"""The actor's control loop as plain code (robot_rl.control.actor_core), without DDS: messages
built by the codec, a real ONNX policy, a real zarr store, the node's outputs recorded."""
import numpy as np
import pytest
from onnx import TensorProto, helper

pytest.importorskip("rclpy")  # message classes (no graph, no spinning)

from robot_rl import codec  # noqa: E402
from robot_rl.control.actor_core import ESTOP_LATCH_FILE, ActorCore, ActorSettings  # noqa: E402
from robot_rl.names import EE_POSE, JOINT_STATES, OBJECT_POSES, TASK_STATUS, TELEOP_GRIPPER, TELEOP_TWIST  # noqa: E402

H = 4  # the test policy's chunk


def onnx_policy(chunk_vx, grip=-1.0, n_obj=7) -> bytes:
    """A one-step ONNX actor whose chunk is fixed: step i commands vx = chunk_vx[i] (so a test
    sees which entry of a chunk ran); it reads proprio and object like a real one."""
    acts = np.zeros((1, len(chunk_vx), 4), np.float32)
    acts[0, :, 0] = chunk_vx
    acts[0, :, 3] = grip
    nodes = [
        helper.make_node("ReduceSum", ["proprio"], ["p"], keepdims=1),
        helper.make_node("ReduceSum", ["object"], ["o"], keepdims=1),
        helper.make_node("Add", ["p", "o"], ["s"]),
        helper.make_node("Mul", ["s", "zero"], ["z"]),  # (B, 1): the inputs matter for shape only
        helper.make_node("Unsqueeze", ["z", "axes"], ["z3"]),
        helper.make_node("Add", ["z3", "chunk"], ["actions"]),
    ]
    graph = helper.make_graph(
        nodes, "fixed_chunk",
        [helper.make_tensor_value_info("proprio", TensorProto.FLOAT, ["B", 8]),
         helper.make_tensor_value_info("object", TensorProto.FLOAT, ["B", n_obj])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["B", len(chunk_vx), 4])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
         helper.make_tensor("axes", TensorProto.INT64, [1], [2]),
         helper.make_tensor("chunk", TensorProto.FLOAT, acts.shape, acts.ravel().tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


class Recorder:
    """The core's outputs, as the node would publish them."""

    def __init__(self, listening=True, teleop=False, arm=True):
        self.commands, self.transitions, self.eval_flags, self.logs = [], [], [], []
        self.t = 0.0
        self.listening, self.teleop, self.arm = listening, teleop, arm

    def command(self, twist, grip, stamp):
        self.commands.append((np.asarray(twist).copy(), float(grip), stamp))

    def transition(self, msg):
        self.transitions.append(msg)

    def evaluating(self, flag):
        self.eval_flags.append(flag)

    def log(self, level, text):
        self.logs.append((level, text))

    def now(self):
        return self.t

    def learner_listening(self):
        return self.listening

    def teleop_present(self):
        return self.teleop

    def arm_listening(self):
        return self.arm


def observation(t, episode=0, step=0, done=False, success=False, ee=(0.5, 0.0, 0.2), nan=False):
    joints = codec.joint_state_msg([f"j{i}" for i in range(7)] + ["gripper"], [0.0] * 7 + [0.04], [0.0] * 8, t)
    ee_pos = (np.nan, 0.0, 0.2) if nan else ee
    return {
        JOINT_STATES: joints,
        EE_POSE: codec.pose_stamped_msg(ee_pos, (1, 0, 0, 0), t, "base_link"),
        OBJECT_POSES: codec.pose_array_msg([((0.5, 0.1, 0.02), (1, 0, 0, 0))], t, "base_link"),
        TASK_STATUS: codec.status_msg(t, dict(reward=float(success), terminated=done, truncated=False,
                                              success=success, episode=episode, step=step)),
    }


def make(tmp_path, **kw):
    io = Recorder(teleop=kw.pop("teleop_present", False))
    s = ActorSettings(run_dir=str(tmp_path), trigger=kw.pop("trigger", "observation"), wait_for_learner=False,
                      learner_sync_lag=0, eval_every=kw.pop("eval_every", 0), **kw)
    return ActorCore(s, io), io


class Sim:
    """Feeds the core one observation per step, as the twin does in lock-step."""

    def __init__(self, core, io):
        self.core, self.io, self.t, self.episode, self.step_i = core, io, 0.0, 0, 0

    def step(self, done=False, success=False, order=None, **kw):
        msgs = observation(self.t, self.episode, self.step_i, done, success, **kw)
        for topic in (order or list(msgs)):
            self.core.sensor(topic, msgs[topic])
        self.t = round(self.t + 0.1, 6)
        self.step_i += 1
        if done:
            self.episode += 1
            self.step_i = 0
            self.t = round(self.t + 0.1, 6)
        return self.io.commands[-1] if self.io.commands else None

    def vx(self):
        return round(self.io.commands[-1][0][0] / 0.2, 4)  # back to the normalised action


def give_policy(core, version, chunk, **kw):
    core.offer_policy(codec.encode_policy(onnx_policy(chunk, **kw), version))


CHUNK = [0.1, 0.2, 0.3, 0.4]


def test_chunk_restarts_at_each_new_episode(tmp_path):
    core, io = make(tmp_path)
    sim = Sim(core, io)
    give_policy(core, 1, CHUNK)
    sim.step(); sim.step()
    assert sim.vx() == 0.2  # second entry of the chunk
    sim.step(done=True, success=True)  # terminal: the episode ends mid-chunk
    sim.step()
    assert sim.vx() == 0.1, "the new episode must not run the previous episode's plan"


def test_chunk_restarts_after_a_hold_a_takeover_and_a_swap(tmp_path):
    core, io = make(tmp_path)
    sim = Sim(core, io)
    give_policy(core, 1, CHUNK)
    sim.step(); sim.step()
    sim.step(nan=True)  # a bad observation: hold
    assert io.commands[-1][0].tolist() == [0.0] * 6
    sim.step()
    assert sim.vx() == 0.1, "after a hold the policy replans"
    sim.step()
    # a takeover for one step, answered with the observation's stamp
    core.teleop(TELEOP_TWIST, codec.twist_msg([0.05, 0, 0, 0, 0, 0], sim.t, "base_link"))
    core.teleop(TELEOP_GRIPPER, codec.gripper_msg(-1.0, sim.t))
    core.set_engaged(True)
    sim.step()
    assert sim.vx() == 0.25  # the human's 0.05 m/s
    core.set_engaged(False)
    sim.step()
    assert sim.vx() == 0.1, "after a takeover the policy replans"
    give_policy(core, 2, [0.5, 0.6, 0.7, 0.8])
    sim.step()
    assert sim.vx() == 0.5, "a new policy starts its own chunk"
    sim.step()
    assert sim.vx() == 0.6


def test_evaluation_start_restarts_the_chunk_and_holds_back_new_policies(tmp_path):
    core, io = make(tmp_path, eval_every=3, eval_episodes=2, eval_at_start=True)
    sim = Sim(core, io)
    give_policy(core, 1, CHUNK)
    for _ in range(3):
        sim.step()
    sim.step(done=True)  # episode 0 ends after 3 steps: the first evaluation block starts
    assert core.evaluating and io.eval_flags[-1] is True
    give_policy(core, 2, [0.9] * 4)
    sim.step()
    assert sim.vx() == 0.1 and core.version == 1, "an evaluation measures one policy"
    sim.step(done=True); sim.step(); sim.step(done=True)  # two eval episodes
    assert not core.evaluating and io.eval_flags[-1] is False
    assert core.version == 2, "the queued policy is swapped in after the block"
    assert len(core.eval_history) == 1 and core.eval_history[0]["episodes"] == 2
    sim.step()
    assert sim.vx() == 0.9


def test_policy_error_holds_and_keeps_the_grip(tmp_path):
    core, io = make(tmp_path)
    sim = Sim(core, io)
    give_policy(core, 1, CHUNK, grip=1.0)  # closes the gripper
    sim.step()
    assert io.commands[-1][1] == 1.0
    from test_faults_policy import nan_on_the_robots_observation  # finite on the load-time probes

    core.offer_policy(codec.encode_policy(nan_on_the_robots_observation(), 2))  # loads, NaN at run time
    sim.step()
    twist, grip, _ = io.commands[-1]
    assert twist.tolist() == [0.0] * 6 and grip == 1.0, "a fault must never drop what the robot holds"
    assert core.hold_reasons.get("policy error") == 1


def test_the_robot_actor_takes_no_step_until_its_commands_have_a_taker(tmp_path):
    """On the robot (timer trigger) a tick whose command nobody takes (the adapter or Servo not yet
    discovered) would be logged as executed while the arm stood still: it holds instead."""
    core, io = make(tmp_path, trigger="timer")
    io.arm = False
    Sim(core, io).step()  # a complete, fresh observation
    core.timer()
    assert core.hold_reasons.get("no one takes command/twist yet", 0) >= 1 and core.log is None, core.hold_reasons
    io.arm = True
    core.timer()
    assert core.log is not None, "acts (and logs) once the arm listens"


def test_startup_holds_pass_the_filter(tmp_path):
    core, io = make(tmp_path, trigger="timer")
    core.safety.prev_grip = 1.0  # e.g. a grip the filter last let through
    core.timer()  # nothing heard yet
    twist, grip, _ = io.commands[-1]
    assert twist.tolist() == [0.0] * 6 and grip == 1.0
    assert any(r.startswith("no data yet") for r in core.hold_reasons)
    assert set(core.stale_topics) == {JOINT_STATES, EE_POSE, TASK_STATUS, OBJECT_POSES}
    sim = Sim(core, io)
    sim.step()  # no policy yet: a hold through the filter too
    io.t = 0.05
    core.timer()
    assert core.hold_reasons.get("no policy yet") == 1


def test_timer_path_names_stale_topics(tmp_path):
    core, io = make(tmp_path, trigger="timer")
    give_policy(core, 1, CHUNK)
    for topic, msg in observation(0.0).items():
        core.sensor(topic, msg)
    io.t = 0.05
    core.timer()
    assert round(io.commands[-1][0][0] / 0.2, 4) == 0.1 and not core.stale_topics
    core.sensor(JOINT_STATES, observation(0.9)[JOINT_STATES])  # the others go quiet
    io.t = 1.0
    core.timer()
    assert io.commands[-1][0].tolist() == [0.0] * 6
    assert core.stale_topics == sorted([EE_POSE, OBJECT_POSES, TASK_STATUS])
    assert core.diagnostics()["stale_topics"] == ",".join(sorted([EE_POSE, OBJECT_POSES, TASK_STATUS]))


def test_policy_gating(tmp_path):
    core, io = make(tmp_path)
    give_policy(core, 3, CHUNK)
    Sim(core, io).step()  # the robot's observation shapes are known from here on
    give_policy(core, 2, [0.9] * 4)
    assert core.version == 3, "an older version is ignored"
    msg = codec.encode_policy(onnx_policy([0.9] * 4), 4)
    msg.data = bytes(msg.data[:-5]) + b"xxxxx"  # corrupted in transit
    core.offer_policy(msg)
    give_policy(core, 5, [0.9] * 4, n_obj=14)  # wants observations this actor cannot feed
    core.offer_policy(codec.encode_policy(b"not an onnx model", 6))
    assert core.version == 3
    assert sum(level == "error" for level, _ in io.logs) == 3


def test_lockstep_assembly_out_of_order_and_missing(tmp_path):
    core, io = make(tmp_path)
    give_policy(core, 1, CHUNK)
    first, second = observation(0.0), observation(0.1, step=1)
    for topic in (JOINT_STATES, EE_POSE, OBJECT_POSES):
        core.sensor(topic, first[topic])
    for topic, msg in second.items():  # the next observation completes first
        core.sensor(topic, msg)
    assert io.commands == [], "an incomplete earlier set blocks later ones (stamp order)"
    core.sensor(TASK_STATUS, first[TASK_STATUS])
    assert [c[2] for c in io.commands] == [0.0, 0.1], "both ticked, in stamp order"
    # a set that never completes is dropped after 50 newer ones
    core.sensor(JOINT_STATES, observation(0.2)[JOINT_STATES])
    for i in range(3, 60):
        for topic, msg in observation(i / 10, step=i).items():
            core.sensor(topic, msg)
    assert any("incomplete" in text for _, text in io.logs)
    assert len(io.commands) > 40


def test_lockstep_waits_for_the_teleop_answer(tmp_path):
    now = [0.0]
    core, io = make(tmp_path, teleop_present=True, teleop_wait_s=1.0)
    core.monotonic = lambda: now[0]
    give_policy(core, 1, CHUNK)
    for topic, msg in observation(0.0).items():
        core.sensor(topic, msg)
    assert io.commands == []
    core.teleop(TELEOP_TWIST, codec.twist_msg([0.0] * 6, 0.0, "base_link"))
    core.teleop(TELEOP_GRIPPER, codec.gripper_msg(-1.0, 0.0))
    assert io.commands == [], "an answer counts only with its engaged flag"
    core.set_engaged(False)
    assert len(io.commands) == 1
    for topic, msg in observation(0.1, step=1).items():  # no answer: the wait times out
        core.sensor(topic, msg)
    now[0] = 1.5
    core.poll()
    assert len(io.commands) == 2


def test_estop_latches_and_survives_a_restart(tmp_path):
    core, io = make(tmp_path, trigger="timer")
    give_policy(core, 1, CHUNK)
    for topic, msg in observation(0.0).items():
        core.sensor(topic, msg)
    core.set_estop(True)
    assert io.commands[-1][0].tolist() == [0.0] * 6, "held at once, not at the next tick"
    core.timer()
    assert io.commands[-1][0].tolist() == [0.0] * 6
    ok, why = core.clear_estop()
    assert not ok and "still true" in why
    core.set_estop(False)
    core.timer()
    assert io.commands[-1][0].tolist() == [0.0] * 6, "false on the topic alone does not release"
    assert (tmp_path / ESTOP_LATCH_FILE).exists()
    core.close()  # the actor process ends (its store lock goes with it)
    restarted, io2 = make(tmp_path, trigger="timer")
    assert restarted.estop_latched and restarted.diagnostics()["estop"] is True
    give_policy(restarted, 1, CHUNK)
    for topic, msg in observation(0.0).items():
        restarted.sensor(topic, msg)
    restarted.timer()
    assert io2.commands[-1][0].tolist() == [0.0] * 6
    ok, _ = restarted.clear_estop()
    assert ok and not (tmp_path / ESTOP_LATCH_FILE).exists()
    restarted.timer()
    assert round(io2.commands[-1][0][0] / 0.2, 4) == 0.1


def test_steps_reach_the_store_before_the_wire(tmp_path):
    core, io = make(tmp_path, max_steps=3)
    sim = Sim(core, io)
    give_policy(core, 1, CHUNK)
    for _ in range(5):
        sim.step()
    summary = core.close()
    assert summary["steps_logged"] == 3 and core.finished
    assert len(io.transitions) == 3
    import zarr

    root = zarr.open_group(str(tmp_path / "store.zarr"), mode="r")
    assert root["data/action"].shape[0] == 3


def test_each_stored_episode_says_its_cell(tmp_path):
    from robot_rl.data.store import EpisodeStore

    core, io = make(tmp_path)
    core.cell = "cell_a"
    sim = Sim(core, io)
    give_policy(core, 1, CHUNK)
    sim.step(); sim.step(done=True, success=True)
    core.close()
    assert EpisodeStore.open(str(tmp_path / "store.zarr"), "r").episode_meta(0)["cell"] == "cell_a"


def test_policy_file_runs_from_the_start_and_a_bad_one_fails_it(tmp_path):
    good = tmp_path / "actor.onnx"
    good.write_bytes(onnx_policy(CHUNK))
    core, io = make(tmp_path, policy_file=str(good))
    assert core.version == 0
    Sim(core, io).step()
    assert round(io.commands[-1][0][0] / 0.2, 4) == 0.1
    core.close()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(onnx_policy(CHUNK, n_obj=14)[:50])
    with pytest.raises(ValueError, match="bad.onnx"):
        make(tmp_path, policy_file=str(bad))
    with pytest.raises(ValueError, match="missing.onnx"):
        make(tmp_path, policy_file=str(tmp_path / "missing.onnx"))


def test_the_first_evaluation_waits_for_training_unless_measuring_a_warm_start(tmp_path):
    core, io = make(tmp_path, eval_every=5, eval_episodes=1)
    sim = Sim(core, io)
    give_policy(core, 1, CHUNK)
    sim.step(); sim.step(done=True)  # 1 training step: no block yet
    assert not core.evaluating
    for _ in range(4):
        sim.step()
    sim.step(done=True)  # 5 training steps
    assert core.evaluating
