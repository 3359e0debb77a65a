"""The episode outcome from the operator's keys: EpisodeStatus as plain code, then the task_status
node over real DDS (teleop/event in, task/status out), then the actor with the node, a replayed
gamepad through the real teleop node and a stand-in for the robot's sensor drivers: the
success key ends the episode as successful in the actor's zarr store.

Why a stand-in and not the twin: in sim the twin's own success check publishes task/status (it
is the reward source there); two publishers of one status would contradict each other. The
stand-in publishes what a robot's drivers publish (joint_states, ee_pose, object_poses) on the
wall clock, with the actor on its timer, as on a robot."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robot_rl.teleop.episode_status import EpisodeStatus

DATA = Path(__file__).parent / "data" / "teleop"


# --- plain code ----------------------------------------------------------------------------


def test_running_then_success_waits_for_reset():
    st = EpisodeStatus(max_episode_steps=0)
    first = [st.tick() for _ in range(3)]
    assert [s["step"] for s in first] == [0, 1, 2]
    assert all(s["reward"] == 0 and not s["terminated"] and not s["truncated"] and s["episode"] == 0 for s in first)
    level, text = st.event("success")
    assert level == "info" and "episode 0 succeeded at step 3" in text
    end = st.tick()
    assert end == {"reward": 1.0, "terminated": True, "truncated": False, "success": True, "episode": 0, "step": 3}
    # waiting: the same terminal status again and again, however long the person takes
    assert all(st.tick() == end for _ in range(50))
    # hil-serl #44: a second outcome key before the reset changes nothing, and says so
    for key in ("failure", "success", "estop"):
        level, text = st.event(key)
        assert level == "warn" and "ignored" in text and "already ended (success)" in text
        assert st.tick() == end
    assert st.event("takeover") is None and st.event("release") is None and st.tick() == end
    level, text = st.event("reset")
    assert level == "info" and "episode 1 starts" in text
    nxt = st.tick()
    assert nxt == {"reward": 0.0, "terminated": False, "truncated": False, "success": False, "episode": 1, "step": 0}
    assert st.history == [{"episode": 0, "steps": 3, "ended_as": "success", "success": True}]


@pytest.mark.parametrize("key, terminated, truncated", [
    ("failure", True, False), ("reset", False, True), ("estop", False, True)])
def test_other_endings(key, terminated, truncated):
    st = EpisodeStatus()
    st.tick()
    st.event(key)
    end = st.tick()
    assert (end["terminated"], end["truncated"], end["success"], end["reward"]) == (terminated, truncated, False, 0.0)
    assert st.tick() == end  # waits
    st.event("reset")  # a reset that ended the episode does not also start the next one
    assert st.tick()["episode"] == 1


def test_max_episode_steps_truncates_and_waits():
    st = EpisodeStatus(max_episode_steps=3)
    out = [st.tick() for _ in range(6)]
    assert [(s["step"], s["truncated"]) for s in out] == [(0, False), (1, False), (2, False), (3, True), (3, True), (3, True)]
    assert st.history[-1]["ended_as"] == "max_episode_steps"
    assert st.event("success")[0] == "warn"  # too late: the episode is over
    st.event("reset")
    assert st.tick()["step"] == 0


def test_unknown_event_and_bad_settings():
    st = EpisodeStatus()
    level, text = st.event("sucess")
    assert level == "warn" and "unknown teleop event 'sucess'" in text
    assert not st.tick()["terminated"]
    with pytest.raises(ValueError, match="max_episode_steps"):
        EpisodeStatus(max_episode_steps=-1)


# --- over DDS ------------------------------------------------------------------------------

rclpy = pytest.importorskip("rclpy")

from conftest import SpunNode, spawn_node, stop_process, wait_for  # noqa: E402
from robot_rl import codec, contract as C  # noqa: E402
from robot_rl.nodes.ros import publisher, subscription  # noqa: E402
from std_msgs.msg import String  # noqa: E402


def node_proc(module: str, run_dir: Path, params: dict, log_name: str):
    run_dir.mkdir(parents=True, exist_ok=True)
    return spawn_node(module, run_dir / f"{log_name}.log", {"use_sim_time": "false", "run_dir": run_dir, **params})



class Operator(SpunNode):
    """A person's keys on teleop/event, and an ear on task/status."""

    def __init__(self):
        super().__init__("test_operator")
        self.lock = threading.Lock()
        self.statuses = []
        subscription(self.node, C.TASK_STATUS, self._on_status)
        self.pub = publisher(self.node, C.TELEOP_EVENT)
        self.start()

    def _on_status(self, msg):
        with self.lock:
            self.statuses.append(codec.status_from_msg(msg))

    def since(self, n):
        with self.lock:
            return list(self.statuses[n:])

    def press(self, key):
        wait_for(lambda: self.pub.get_subscription_count() > 0, 30, "task_status to subscribe to teleop/event")
        self.pub.publish(String(data=key))


def test_node_success_key_ends_episode_then_waits_for_reset(tmp_path):
    op = Operator()
    proc = node_proc("robot_rl.nodes.task_status", tmp_path, {"rate_hz": 20.0, "max_episode_steps": 0}, "task_status")
    try:
        wait_for(lambda: len(op.since(0)) >= 5, 30, "task/status")
        running = op.since(0)
        assert all(not s["terminated"] and not s["truncated"] and s["reward"] == 0 and s["episode"] == 0 for s in running)
        steps = [s["step"] for s in running]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)  # one step per tick
        op.press("success")
        wait_for(lambda: any(s["terminated"] for s in op.since(0)), 10, "a terminal status")
        n = len(op.since(0))
        op.press("failure")  # a second outcome key before the reset: ignored
        time.sleep(1.0)
        after = op.since(n)
        assert len(after) >= 10  # still published at the control rate while waiting
        end = [s for s in op.since(0) if s["terminated"]][0]
        assert end["success"] and end["reward"] == 1.0 and end["episode"] == 0
        assert all(s == end for s in after), "nothing new may happen before the reset"
        n = len(op.since(0))
        op.press("reset")
        wait_for(lambda: any(s["episode"] == 1 for s in op.since(n)), 10, "episode 1")
        first = [s for s in op.since(n) if s["episode"] == 1][0]
        assert first["step"] == 0 and not first["terminated"] and first["reward"] == 0
        assert stop_process(proc) == 0
        summary = json.loads((tmp_path / "task_status_summary.json").read_text())
        assert summary["episodes"] == [{"episode": 0, "steps": end["step"], "ended_as": "success", "success": True}]
        log = (tmp_path / "task_status.log").read_text()
        assert "failure ignored: episode 0 already ended (success)" in log
    finally:
        stop_process(proc)
        op.close()


class RobotStandIn(SpunNode):
    """What a robot's drivers publish, on the wall clock at 30 Hz (franka's joint_states rate):
    a still arm and a cube. Stamped with now, as a driver does."""

    def __init__(self):
        super().__init__("robot_stand_in")
        self.pubs = {t: publisher(self.node, t) for t in (C.JOINT_STATES, C.EE_POSE, C.OBJECT_POSES)}
        self.commands = subscription(self.node, C.COMMAND_TWIST, lambda m: None)  # the arm takes commands
        self.node.create_timer(1 / 30, self._publish)
        self.start()

    def _publish(self):
        t = time.time()
        names = [f"joint{i}" for i in range(1, 8)] + [C.GRIPPER_JOINT]
        self.pubs[C.JOINT_STATES].publish(codec.joint_state_msg(names, np.zeros(8), np.zeros(8), t))
        self.pubs[C.EE_POSE].publish(codec.pose_stamped_msg([0.5, 0.0, 0.2], [1, 0, 0, 0], t, C.BASE_FRAME))
        self.pubs[C.OBJECT_POSES].publish(codec.pose_array_msg([([0.5, 0.1, 0.02], [1, 0, 0, 0])], t, C.BASE_FRAME))


def test_graph_operator_success_key_is_a_successful_episode_in_the_store(tmp_path):
    """actor (timer, wall clock) + task_status + the teleop node replaying a gamepad whose Start
    button says success: the actor's store holds one episode, marked successful; the pad's
    second Start is ignored, its Guide button latches the actor's e-stop."""
    import zarr

    from robot_rl.data.store import EpisodeStore

    robot = RobotStandIn()
    op = Operator()
    procs = []
    store = tmp_path / "store.zarr"
    devices = tmp_path / "devices.yaml"
    devices.write_text(f"gamepad:\n  replay: {DATA / 'gamepad_operator_keys.jsonl'}\n")
    try:
        procs.append(node_proc("robot_rl.nodes.task_status", tmp_path, {"rate_hz": 10.0, "max_episode_steps": 0},
                               "task_status"))
        procs.append(node_proc("robot_rl.nodes.actor", tmp_path, {
            "trigger": "timer", "rate_hz": 10.0, "max_episodes": 1, "eval_every": 0, "episode_source": "demo",
            "wait_for_learner": False, "learner_sync_lag": 0, "store": str(store)}, "actor"))
        # the person picks the pad up once the robot is logging (the replay's clock starts then)
        wait_for(lambda: store.exists(), 60, "the actor's store")
        teleop = node_proc("robot_rl.nodes.teleop", tmp_path, {"driver": "gamepad", "devices_file": str(devices)},
                           "teleop")
        procs.append(teleop)
        wait_for(lambda: (tmp_path / "estop_latched").exists(), 40, "the pad's e-stop to latch the actor")
        ended = [s for s in op.since(0) if s["terminated"]]
        assert ended and ended[0]["success"] and ended[0]["episode"] == 0
        assert not any(s["episode"] > 0 and s["terminated"] for s in op.since(0))  # the 2nd Start: ignored
        for p in procs:
            assert stop_process(p) == 0, p.args
        s = EpisodeStore.open(str(store), mode="r")
        assert s.n_episodes == 1, "exactly one episode: the success key ended it, nothing more"
        assert bool(s.episode_meta(0)["success"]) is True
        rewards = s.read("reward")
        assert rewards[-1] == 1.0 and np.all(rewards[:-1] == 0) and len(rewards) >= 10
        # Steps the stick drove (3.0-3.5 s) are not asserted here: on the actor's timer whether the
        # person's command is taken depends on the phase of three wall clocks (see
        # test_timer_actor_takes_a_teleop_command_stamped_after_the_oldest_sensor below).
        intervened = s.read("intervened").astype(bool)
        # those taken carry the stick's +y, or zero on the release tick; never the other way
        assert np.all(s.read("action")[intervened][:, 1] >= 0)
        summary = json.loads((tmp_path / "actor_summary.json").read_text())
        assert summary["episodes"] == 1 and summary["successes"] == 1
        assert zarr.open_group(str(store), mode="r")  # the store opens as a plain zarr group too
        log = (tmp_path / "task_status.log").read_text()
        assert "success ignored" in log and "reset: episode 1 starts" in log
    finally:
        for p in procs:
            stop_process(p)
        op.close()
        robot.close()


class _IO:
    def __init__(self):
        self.t, self.commands, self.logs = 0.0, [], []

    def command(self, twist, grip, stamp):
        self.commands.append((np.asarray(twist).copy(), float(grip)))

    def transition(self, msg):
        pass

    def evaluating(self, flag):
        pass

    def log(self, level, text):
        self.logs.append((level, text))

    def now(self):
        return self.t

    def learner_listening(self):
        return False

    def teleop_present(self):
        return True

    def arm_listening(self):
        return True


def test_timer_actor_takes_a_teleop_command_stamped_after_the_oldest_sensor(tmp_path):
    """On the robot a device stamps with its own now, after the oldest sensor message: the actor
    measures the teleop's age against its clock there, not against the observation's stamp."""
    from robot_rl.control.actor_core import ActorCore, ActorSettings

    io = _IO()
    core = ActorCore(ActorSettings(run_dir=str(tmp_path), trigger="timer", wait_for_learner=False), io)
    names = [f"j{i}" for i in range(7)] + [C.GRIPPER_JOINT]
    core.sensor(C.JOINT_STATES, codec.joint_state_msg(names, np.zeros(8), np.zeros(8), 1.00))
    core.sensor(C.EE_POSE, codec.pose_stamped_msg([0.5, 0.0, 0.2], [1, 0, 0, 0], 1.00, C.BASE_FRAME))
    core.sensor(C.OBJECT_POSES, codec.pose_array_msg([([0.5, 0.1, 0.02], [1, 0, 0, 0])], 1.00, C.BASE_FRAME))
    core.sensor(C.TASK_STATUS, codec.status_msg(0.95, {"reward": 0.0, "terminated": False, "truncated": False,
                                                       "success": False, "episode": 0, "step": 3}))
    core.set_engaged(True)  # the teleop's tick 20 ms after the newest sensor message
    core.teleop(C.TELEOP_GRIPPER, codec.gripper_msg(-1.0, 1.02))
    core.teleop(C.TELEOP_TWIST, codec.twist_msg([0.0, 0.05, 0.0, 0.0, 0.0, 0.0], 1.02, C.BASE_FRAME))
    io.t = 1.05  # the actor's tick
    core.timer()
    twist, _ = io.commands[-1]
    assert twist[1] == pytest.approx(0.05), f"the person's command was not taken: holds {core.hold_reasons}"
