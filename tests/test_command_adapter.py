"""Command adapters: contract twists -> MoveIt Servo's TwistStamped (frame, units, fresh stamps,
the watchdog's zero twists, the e-stop) and gripper commands -> a controller's targets; the
plain-code mapping first, then the node over real DDS."""
import threading
import time

import numpy as np
import pytest

from robot_rl.robot.commands import CommandAdapterCore, CommandAdapterSettings
from robot_rl.robot.gripper import GripperSettings, gripper_targets, gripper_width
from robot_rl.robot.servo import ServoSettings, TwistWatchdog, servo_twist

TWIST = np.array([0.1, -0.2, 0.8, 0.4, -2.0, 0.0])


# ---------------------------------------------------------------------------- plain code
def test_speed_units_pass_through_and_unitless_is_scaled_and_clipped():
    np.testing.assert_array_equal(servo_twist(TWIST, ServoSettings(command_in_type="speed_units")), TWIST)
    out = servo_twist(TWIST, ServoSettings(command_in_type="unitless"))
    np.testing.assert_allclose(out, [0.25, -0.5, 1.0, 0.5, -1.0, 0.0])  # /0.4, /0.8, clipped
    out = servo_twist(TWIST, ServoSettings(command_in_type="unitless", scale_linear=1.0, scale_rotational=4.0))
    np.testing.assert_allclose(out, [0.1, -0.2, 0.8, 0.1, -0.5, 0.0])
    with pytest.raises(ValueError, match="not finite"):
        servo_twist([0, 0, np.nan, 0, 0, 0], ServoSettings())
    with pytest.raises(ValueError, match="5 values"):
        servo_twist([0] * 5, ServoSettings())
    with pytest.raises(ValueError, match="speed_units or unitless"):
        ServoSettings(command_in_type="velocity")


def test_watchdog_resends_while_fresh_then_zeros_and_counts_once():
    w = TwistWatchdog(ServoSettings(), timeout_s=0.2)
    np.testing.assert_array_equal(w.tick(0.0), np.zeros(6))  # nothing commanded yet: zeros
    np.testing.assert_array_equal(w.command(TWIST, 1.0), TWIST)
    np.testing.assert_array_equal(w.tick(1.1), TWIST)  # between actor ticks: the held command
    np.testing.assert_array_equal(w.tick(1.2), TWIST)
    for t in (1.21, 1.3, 5.0):
        np.testing.assert_array_equal(w.tick(t), np.zeros(6))
    assert w.timeouts == 1 and w.zeros_sent == 4
    np.testing.assert_array_equal(w.command(TWIST, 6.0), TWIST)  # the actor is back
    np.testing.assert_array_equal(w.tick(6.1), TWIST)
    # a NaN command is a hold: zeros now, and the held command is forgotten
    np.testing.assert_array_equal(w.command([np.nan] * 6, 6.15), np.zeros(6))
    np.testing.assert_array_equal(w.tick(6.16), np.zeros(6))
    assert w.rejected == 1 and "not finite" in w.last_error


def test_estop_zeros_regardless_of_the_actor_and_resumes_only_on_a_fresh_command():
    w = TwistWatchdog(ServoSettings(), timeout_s=0.2)
    w.command(TWIST, 0.0)
    np.testing.assert_array_equal(w.set_estop(True), np.zeros(6))
    np.testing.assert_array_equal(w.command(TWIST, 0.05), np.zeros(6))
    np.testing.assert_array_equal(w.tick(0.06), np.zeros(6))
    assert w.set_estop(False) is None
    np.testing.assert_array_equal(w.tick(0.07), np.zeros(6))  # the pre-e-stop command is gone
    np.testing.assert_array_equal(w.command(TWIST, 0.08), TWIST)
    assert w.status(0.08)["commanding"] is True


def test_gripper_targets_binary_and_continuous():
    s = GripperSettings(open_width=0.08, closed_width=0.0)
    assert gripper_targets(-1.0, s) == [0.04, 0.04]  # open: each finger half the opening
    assert gripper_targets(0.3, s) == [0.0, 0.0]  # binary, like the twin: > 0 closes
    assert gripper_targets(0.0, s) == [0.04, 0.04]
    c = GripperSettings(mode="continuous", open_width=0.08, closed_width=0.02, joints="j", joint_scale=1.0)
    assert gripper_width(-1.0, c) == pytest.approx(0.08)
    assert gripper_width(0.0, c) == pytest.approx(0.05)
    assert gripper_targets(1.0, c) == [pytest.approx(0.02)]
    assert gripper_width(7.0, c) == pytest.approx(0.02)  # clipped to the command range
    with pytest.raises(ValueError, match="not finite"):
        gripper_targets(np.inf, s)
    with pytest.raises(ValueError, match="open_width > closed_width"):
        GripperSettings(open_width=0.0, closed_width=0.05)
    with pytest.raises(ValueError, match="float64_array"):
        GripperSettings(interface="action")


def test_core_holds_the_gripper_during_estop_and_reports():
    core = CommandAdapterCore(CommandAdapterSettings())
    assert core.gripper(1.0) == [0.0, 0.0]
    core.set_estop(True)
    assert core.gripper(-1.0) is None  # an e-stop never opens the hand on a held object
    level, message, values = core.status(0.0)
    assert level == 2 and "e-stop" in message and values["gripper_held_for_estop"] == 1
    with pytest.raises(ValueError, match="shorter than one watchdog period"):
        CommandAdapterSettings(watchdog_hz=2.0, watchdog_timeout_s=0.2)


# ---------------------------------------------------------------------------- node, real DDS
pytest.importorskip("rclpy")

from conftest import SpunNode, spawn_node, stop_process  # noqa: E402


class ActorAndArm(SpunNode):
    """The actor (contract commands, estop) and the arm's side (Servo's input, the gripper
    controller's input), in one test node."""

    def __init__(self, servo_topic: str, grip_type, grip_topic: str):
        from geometry_msgs.msg import TwistStamped
        from std_msgs.msg import Bool

        from robot_rl import contract as C
        from robot_rl.nodes.ros import publisher, qos

        super().__init__("actor_and_arm")
        self.Bool = Bool
        self.twist = publisher(self.node, C.COMMAND_TWIST)
        self.grip = publisher(self.node, C.COMMAND_GRIPPER)
        self.estop = publisher(self.node, C.ESTOP)
        self.lock = threading.Lock()
        self.servo, self.grips, self.diags = [], [], []
        self.node.create_subscription(type(self._diag_type()), "/diagnostics", self._on_diag, qos(C.Qos(20)))
        self.node.create_subscription(TwistStamped, servo_topic, lambda m: self._keep(self.servo, m), qos(C.Qos(100)))
        self.node.create_subscription(grip_type, grip_topic, lambda m: self._keep(self.grips, m), qos(C.Qos(10)))
        self.start()

    @staticmethod
    def _diag_type():
        from diagnostic_msgs.msg import DiagnosticArray

        return DiagnosticArray()

    def _on_diag(self, msg):
        from robot_rl import codec

        values = codec.diagnostics_values(msg, "command_adapter")
        if values is not None:
            self._keep(self.diags, (msg.status[0].message, values))

    def _keep(self, box, msg):
        with self.lock:
            box.append((time.monotonic(), time.time(), msg))

    def send(self, twist, t=None):
        from robot_rl import codec, contract as C

        # the actor stamps with its observation's (old) stamp: Servo must not see that one
        self.twist.publish(codec.twist_msg(np.asarray(twist, float), 1.0 if t is None else t, C.BASE_FRAME))

    def since(self, box, t0):
        with self.lock:
            return [x for x in box if x[0] >= t0]

    def wait(self, box, pred, t0, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for x in self.since(box, t0):
                if pred(x[2]):
                    return x
            time.sleep(0.005)
        return None


def vec(msg):
    from robot_rl import codec

    return codec.twist_from_msg(msg)


def wait_up(world, log, timeout=30.0):
    """Zero twists flow from the start (nothing commanded yet): the node is up and matched."""
    got = world.wait(world.servo, lambda m: True, 0.0, timeout)
    assert got is not None, log.read_text()[-3000:]
    deadline = time.monotonic() + 5
    while world.node.count_subscribers("command/twist") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)


def test_servo_unitless_frame_fresh_stamps_watchdog_and_float64_gripper(tmp_path):
    from std_msgs.msg import Float64MultiArray

    world = ActorAndArm("/servo_a/delta_twist_cmds", Float64MultiArray, "/hand_a/commands")
    log = tmp_path / "adapter_a.log"
    proc = spawn_node("robot_rl.nodes.command_adapter", log, {
        "servo.topic": "/servo_a/delta_twist_cmds", "servo.command_frame": "fr3_link0",
        "servo.command_in_type": "unitless", "gripper.interface": "float64_array",
        "gripper.topic": "/hand_a/commands", "gripper.joints": "fr3_finger_joint1,fr3_finger_joint2"})
    try:
        wait_up(world, log)
        # the actor at 10 Hz for 1 s
        t0 = time.monotonic()
        wall_t0 = time.time()
        for _ in range(10):
            world.send(TWIST)
            time.sleep(0.1)
        live = world.since(world.servo, t0 + 0.05)
        quiet_at = time.monotonic()
        assert len(live) >= 30, f"re-sent at the watchdog rate between actor ticks: {len(live)}"
        expected = [0.25, -0.5, 1.0, 0.5, -1.0, 0.0]
        moving = [x for x in live if np.allclose(vec(x[2]), expected)]
        assert len(moving) >= 0.9 * len(live)
        from robot_rl import codec

        # stamped when sent, not with the actor's 1.0: each stamp lies between the start of the
        # burst and its arrival (delivery under load can take 100+ ms, so no tighter bound)
        stamps = []
        for _, wall, m in live:
            assert m.header.frame_id == "fr3_link0"
            stamps.append(codec.from_stamp(m.header.stamp))
            assert wall_t0 - 0.2 <= stamps[-1] <= wall + 0.01
        assert np.all(np.diff(stamps) > 0), "re-sent twists carry fresh stamps"
        # the actor goes quiet: zeros within 0.5 s, and they keep coming
        first_zero = world.wait(world.servo, lambda m: not np.any(vec(m)), quiet_at, 2.0)
        assert first_zero is not None and first_zero[0] - quiet_at < 0.5
        time.sleep(0.5)
        after = world.since(world.servo, first_zero[0])
        assert len(after) >= 15 and all(not np.any(vec(m)) for _, _, m in after)
        d0 = time.monotonic()
        got = world.wait(world.diags, lambda d: d[0] == "actor quiet: sending zero twists", d0, 3)
        assert got is not None
        values = got[2][1]
        assert values["watchdog_timeouts"] == "1" and int(values["zero_twists_sent"]) >= 25
        assert values["commands_received"] == "10" and values["command_frame"] == "fr3_link0"
        # gripper: open then close, as Float64MultiArray finger targets
        g0 = time.monotonic()
        world.grip.publish(codec.gripper_msg(-1.0, 1.0))
        got = world.wait(world.grips, lambda m: True, g0, 5)
        assert got is not None and list(got[2].data) == [0.04, 0.04]
        g1 = time.monotonic()
        world.grip.publish(codec.gripper_msg(1.0, 1.1))
        got = world.wait(world.grips, lambda m: True, g1, 5)
        assert got is not None and list(got[2].data) == [0.0, 0.0]
        # a NaN gripper command is dropped with an error
        from sensor_msgs.msg import JointState

        g2 = time.monotonic()
        world.grip.publish(JointState(name=["gripper"], position=[float("nan")]))
        time.sleep(0.5)
        assert world.since(world.grips, g2) == []
        assert "gripper command dropped" in log.read_text()
    finally:
        stop_process(proc)
        world.close()


def test_servo_speed_units_estop_and_joint_state_gripper(tmp_path):
    from sensor_msgs.msg import JointState

    world = ActorAndArm("/servo_b/delta_twist_cmds", JointState, "/hand_b/target")
    log = tmp_path / "adapter_b.log"
    proc = spawn_node("robot_rl.nodes.command_adapter", log, {
        "servo.topic": "/servo_b/delta_twist_cmds", "servo.command_in_type": "speed_units",
        "gripper.interface": "joint_state", "gripper.topic": "/hand_b/target",
        "gripper.joints": "left,right", "gripper.open_width": 0.1})
    try:
        wait_up(world, log)
        stop_evt = threading.Event()

        def actor():  # an actor that keeps commanding through the e-stop
            while not stop_evt.is_set():
                world.send(TWIST)
                time.sleep(0.1)

        th = threading.Thread(target=actor, daemon=True)
        th.start()
        try:
            t0 = time.monotonic()
            got = world.wait(world.servo, lambda m: np.any(vec(m)), t0, 5)
            assert got is not None
            np.testing.assert_allclose(vec(got[2]), TWIST)  # speed units: passed through
            assert got[2].header.frame_id == "base_link"
            world.estop.publish(world.Bool(data=True))
            e_at = time.monotonic()
            first_zero = world.wait(world.servo, lambda m: not np.any(vec(m)), e_at, 2)
            assert first_zero is not None and first_zero[0] - e_at < 0.5
            time.sleep(0.6)
            held = world.since(world.servo, first_zero[0])
            assert len(held) >= 20 and all(not np.any(vec(m)) for _, _, m in held)
            world.estop.publish(world.Bool(data=False))
            r_at = time.monotonic()
            assert world.wait(world.servo, lambda m: np.any(vec(m)), r_at, 2) is not None
        finally:
            stop_evt.set()
            th.join()
        from robot_rl import codec

        g0 = time.monotonic()
        world.grip.publish(codec.gripper_msg(-1.0, 1.0))
        got = world.wait(world.grips, lambda m: True, g0, 5)
        assert got is not None
        assert list(got[2].name) == ["left", "right"]
        np.testing.assert_allclose(got[2].position, [0.05, 0.05])
    finally:
        stop_process(proc)
        world.close()


def test_command_twist_is_taken_only_once_servo_listens(tmp_path):
    """The actor acts only while command/twist has a taker; the adapter becomes that taker only
    once its Servo topic has a subscriber, so no step is logged as executed into the void."""
    from geometry_msgs.msg import TwistStamped
    from sensor_msgs.msg import JointState

    from robot_rl import contract as C
    from robot_rl.nodes.ros import qos

    world = ActorAndArm("/servo_c/unused", JointState, "/hand_c/unused")  # not the adapter's topics
    log = tmp_path / "adapter_c.log"
    proc = spawn_node("robot_rl.nodes.command_adapter", log, {"servo.topic": "/servo_c/delta_twist_cmds"})
    try:
        deadline = time.monotonic() + 20
        while world.node.count_publishers("/servo_c/delta_twist_cmds") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert world.node.count_publishers("/servo_c/delta_twist_cmds") == 1, log.read_text()[-2000:]
        time.sleep(1.0)  # up, matched to us on its other topics, and still no Servo
        assert world.node.count_subscribers("command/twist") == 0
        servo = []
        world.node.create_subscription(TwistStamped, "/servo_c/delta_twist_cmds", servo.append, qos(C.Qos(10)))
        deadline = time.monotonic() + 10
        while world.node.count_subscribers("command/twist") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert world.node.count_subscribers("command/twist") == 1, log.read_text()[-2000:]
        assert "taking command/twist" in log.read_text()
    finally:
        assert stop_process(proc) == 0
        world.close()
