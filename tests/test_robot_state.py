"""Robot-state adapter: FK against the twin's own end-effector pose, the name mapping, stale and
bad driver input (plain code), and the node over real DDS with franka-style driver topics."""
import threading
import time

import numpy as np
import pytest

from robot_rl.robot.kinematics import Kinematics
from robot_rl.robot.state_adapter import RobotStateCore, RobotStateSettings, StateError

FR3_ARM = [f"fr3_joint{i}" for i in range(1, 8)]
FR3_FINGERS = ["fr3_finger_joint1", "fr3_finger_joint2"]
MODEL_ARM = [f"joint{i}" for i in range(1, 8)]
HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


def quat_angle_deg(a, b) -> float:
    d = abs(float(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b))))
    return float(np.degrees(2 * np.arccos(min(1.0, d))))


@pytest.fixture(scope="module")
def kin():
    return Kinematics()


# ---------------------------------------------------------------------------- kinematics
def test_fk_matches_the_twins_own_ee_pose_over_100_random_configurations(kin):
    import mujoco

    from robot_rl.twin import make_env

    sim = make_env("pick_cube").unwrapped
    rng = np.random.default_rng(0)
    worst_mm, worst_deg = 0.0, 0.0
    for _ in range(100):
        q = kin.random_configuration(rng)
        fingers = rng.uniform(0.0, 0.04, 2)
        sim.data.qpos[sim.arm_qpos] = q
        sim.data.qpos[sim.grip_qpos] = fingers
        mujoco.mj_forward(sim.model, sim.data)  # the twin's own forward, in the full scene
        state = sim.robot_state()
        pos, quat = kin.fk(q)
        worst_mm = max(worst_mm, 1000 * float(np.linalg.norm(pos - state["ee_pos"])))
        worst_deg = max(worst_deg, quat_angle_deg(quat, state["ee_quat"]))
        assert kin.gripper_width(fingers) == pytest.approx(state["gripper_width"], abs=1e-9)
    assert worst_mm < 1.0 and worst_deg < 0.1, (worst_mm, worst_deg)
    # and the configurations did move the TCP around: not a constant pose
    spread = np.ptp([kin.fk(kin.random_configuration(rng))[0] for _ in range(20)], axis=0)
    assert spread.min() > 0.2


def test_fk_honours_the_base_pose(kin):
    half = np.sqrt(0.5)
    moved = Kinematics(base_pos=(0.1, -0.2, 0.3), base_quat=(half, 0.0, 0.0, half))  # +90 deg about z
    p0, q0 = kin.fk(HOME)
    p1, q1 = moved.fk(HOME)
    np.testing.assert_allclose(p1, [0.1 - p0[1], -0.2 + p0[0], 0.3 + p0[2]], atol=1e-9)
    assert quat_angle_deg(q1, q0) == pytest.approx(90.0, abs=1e-6)


def test_fk_on_a_urdf_with_a_tool_link(tmp_path):
    """A URDF MuJoCo loads: two revolute joints (planar arm of 0.4 + 0.3 m) and a fixed tool link
    0.1 m further; the TCP is the tool link's origin."""
    urdf = tmp_path / "arm.urdf"
    urdf.write_text("""<robot name="planar">
  <link name="base"/>
  <link name="l1"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="l2"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="tool"><inertial><mass value="0.1"/><inertia ixx="0.001" iyy="0.001" izz="0.001" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <link name="finger"><inertial><mass value="0.1"/><inertia ixx="0.001" iyy="0.001" izz="0.001" ixy="0" ixz="0" iyz="0"/></inertial></link>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/><axis xyz="0 0 1"/>
    <limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <joint name="j2" type="revolute"><parent link="l1"/><child link="l2"/><origin xyz="0.4 0 0"/><axis xyz="0 0 1"/>
    <limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <joint name="tcp" type="fixed"><parent link="l2"/><child link="tool"/><origin xyz="0.4 0 0"/></joint>
  <joint name="f1" type="prismatic"><parent link="tool"/><child link="finger"/><axis xyz="0 1 0"/>
    <limit lower="0" upper="0.04" effort="1" velocity="1"/></joint>
</robot>""")
    k = Kinematics(urdf, ee_site="tool", arm_joints=("j1", "j2"), finger_joints=("f1",), gripper_width_scale=2.0)
    for a, b in [(0.0, 0.0), (0.5, -1.0), (2.0, 1.5)]:
        pos, quat = k.fk([a, b])
        expect = [0.4 * np.cos(a) + 0.4 * np.cos(a + b), 0.4 * np.sin(a) + 0.4 * np.sin(a + b), 0.0]
        np.testing.assert_allclose(pos, expect, atol=1e-9)
        assert quat_angle_deg(quat, [np.cos((a + b) / 2), 0, 0, np.sin((a + b) / 2)]) < 1e-6
    assert k.gripper_width([0.03]) == pytest.approx(0.06)


def test_fk_names_what_is_wrong(tmp_path, kin):
    with pytest.raises(ValueError, match="no joint 'fr3_joint1'.*it has"):
        Kinematics(arm_joints=FR3_ARM)
    with pytest.raises(ValueError, match="no site or body 'tcp'"):
        Kinematics(ee_site="tcp")
    with pytest.raises(FileNotFoundError, match="nowhere.urdf"):
        Kinematics(tmp_path / "nowhere.urdf")
    with pytest.raises(ValueError, match="not finite"):
        kin.fk([np.nan] * 7)
    with pytest.raises(ValueError, match="takes 7"):
        kin.fk([0.0] * 6)


# ---------------------------------------------------------------------------- core, no DDS
def fr3_settings(**kw) -> RobotStateSettings:
    return RobotStateSettings(arm_joints=",".join(FR3_ARM), finger_joints=",".join(FR3_FINGERS), **kw)


def test_the_core_maps_driver_names_onto_the_models_and_computes_fk(kin):
    core = RobotStateCore(fr3_settings(), now=0.0, kinematics=kin)
    rng = np.random.default_rng(1)
    q = kin.random_configuration(rng)
    names = list(reversed(FR3_FINGERS + FR3_ARM)) + ["fr3_extra"]  # another order, and a stranger
    pos = list(reversed([0.01, 0.015] + list(q))) + [9.0]
    vel = list(np.arange(len(names), dtype=float))
    out = core.joint_states(names, pos, vel, stamp=12.5, now=1.0)
    assert out.names == MODEL_ARM + ["finger_joint1", "finger_joint2", "gripper"]
    np.testing.assert_allclose(out.position, list(q) + [0.01, 0.015, 0.025])
    np.testing.assert_allclose(out.velocity, [6, 5, 4, 3, 2, 1, 0, 8, 7, 0])  # joint1 sits at index 6
    p, quat = kin.fk(q)
    np.testing.assert_allclose(out.ee_pos, p)
    np.testing.assert_allclose(out.ee_quat, quat)
    assert out.stamp == out.ee_stamp == 12.5 and out.ee_source == "fk"


def test_the_core_drops_nan_missing_and_ragged_messages_whole(kin):
    core = RobotStateCore(fr3_settings(), now=0.0, kinematics=kin)
    names = FR3_ARM + FR3_FINGERS
    good = list(HOME) + [0.02, 0.02]
    assert core.joint_states(names, good, [], 1.0, 1.0) is not None
    with pytest.raises(StateError, match=r"non-finite positions for \['fr3_joint3'\]"):
        core.joint_states(names, good[:2] + [np.nan] + good[3:], [], 1.1, 1.1)
    with pytest.raises(StateError, match=r"lacks joints \['fr3_finger_joint2'\]"):
        core.joint_states(names[:-1], good[:-1], [], 1.2, 1.2)
    with pytest.raises(StateError, match="9 names but 8 positions"):
        core.joint_states(names, good[:-1], [], 1.3, 1.3)
    level, message, values = core.status(1.3)
    assert values["/joint_states.rejected"] == 3 and "9 names" in values["last_error"]
    assert level == 1 and "dropping" in message
    # NaN velocities read as 0: the pose is what matters
    out = core.joint_states(names, good, [np.nan] * 9, 1.4, 1.4)
    assert np.all(out.velocity == 0.0)


def test_the_core_stops_on_stale_or_missing_inputs_and_says_since_when(kin):
    s = fr3_settings(gripper_state_topic="/franka_gripper/joint_states", ee_pose_topic="/pose",
                     stale_timeout_s=0.5)
    core = RobotStateCore(s, now=100.0, kinematics=kin)
    level, message, _ = core.status(100.2)
    assert level == 2 and "/joint_states missing since 100.000" in message
    assert "/franka_gripper/joint_states missing" in message and "/pose missing" in message
    # joints alone publish nothing while the gripper and the pose are missing
    assert core.joint_states(FR3_ARM, list(HOME), [], 100.3, 100.3) is None
    core.gripper_state(FR3_FINGERS, [0.03, 0.03], [], 100.3, 100.3)
    pose = ([0.4, 0.1, 0.3], [0.0, 1.0, 0.0, 0.0])
    core.ee_pose(*pose, "base_link", 100.35, 100.35)
    out = core.joint_states(FR3_ARM, list(HOME), [], 100.4, 100.4)
    assert out is not None and out.ee_source == "topic"
    np.testing.assert_allclose(out.ee_pos, pose[0])  # the driver's pose is preferred over FK
    assert out.position[-1] == pytest.approx(0.06) and out.ee_stamp == 100.35
    assert core.status(100.4)[0] == 0
    # the pose goes quiet: joints keep coming, nothing is published, the pose topic is named
    for t in (100.6, 100.8, 100.9, 101.0):
        core.gripper_state(FR3_FINGERS, [0.03, 0.03], [], t, t)
    assert core.joint_states(FR3_ARM, list(HOME), [], 100.8, 100.8) is not None  # 0.45 s old: fresh
    assert core.joint_states(FR3_ARM, list(HOME), [], 100.9, 100.9) is None
    level, message, values = core.status(101.0)
    assert level == 2 and message == "not publishing: /pose stale since 100.350 (0.7 s)"
    assert values["/pose.state"] == "stale" and values["/joint_states.state"] == "ok"


def test_zero_driver_stamps_and_stamp_source_receipt_use_the_receipt_time(kin):
    core = RobotStateCore(fr3_settings(), now=0.0, kinematics=kin)
    names, good = FR3_ARM + FR3_FINGERS, list(HOME) + [0.02, 0.02]
    assert core.joint_states(names, good, [], 7.0, 8.0).stamp == 7.0
    assert "driver_stamps" not in core.status(8.0)[2]
    assert core.joint_states(names, good, [], 0.0, 8.5).stamp == 8.5  # unstamped: stale forever otherwise
    assert "zero stamps" in core.status(8.5)[2]["driver_stamps"]
    core = RobotStateCore(fr3_settings(stamp_source="receipt"), now=0.0, kinematics=kin)
    assert core.joint_states(names, good, [], 7.0, 8.0).stamp == 8.0


def test_a_driver_pose_in_another_frame_or_unnormalised_is_dropped(kin):
    core = RobotStateCore(fr3_settings(ee_pose_topic="/pose", ee_pose_frame="fr3_link0"), 0.0, kin)
    with pytest.raises(StateError, match="frame_id 'world', expected 'fr3_link0'"):
        core.ee_pose([0, 0, 0], [1, 0, 0, 0], "world", 1.0, 1.0)
    with pytest.raises(StateError, match="quaternion norm 0.000"):
        core.ee_pose([0, 0, 0], [0, 0, 0, 0], "fr3_link0", 1.0, 1.0)
    core.ee_pose([0, 0, 0], [-1, 0, 0, 0], "fr3_link0", 1.0, 1.0)
    assert core.inputs["/pose"].data["quat"][0] == 1.0


def test_settings_refuse_mismatched_name_lists():
    assert RobotStateSettings().driver_arm_joints == FR3_ARM  # franka_ros2's names by default
    assert RobotStateSettings(arm_joints="", finger_joints="").driver_arm_joints == MODEL_ARM  # "" = the model's
    with pytest.raises(ValueError, match="arm_joints names 2 joints"):
        RobotStateSettings(arm_joints="a,b")
    with pytest.raises(ValueError, match="finger_joints names 1"):
        RobotStateSettings(finger_joints="a")
    with pytest.raises(ValueError, match="best_effort"):
        RobotStateSettings(ee_pose_reliability="sometimes")


# ---------------------------------------------------------------------------- node, real DDS
pytest.importorskip("rclpy")

from conftest import SpunNode, spawn_node, stop_process  # noqa: E402


class Driver(SpunNode):
    """The lab's driver (franka-style names and QoS) and the stack's listener, in one test node."""

    def __init__(self, joints_topic: str, pose_topic: str | None = None):
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import JointState

        from robot_rl import contract as C
        from robot_rl.nodes.ros import qos, subscription

        super().__init__("fake_driver")
        self.pub_joints = self.node.create_publisher(JointState, joints_topic, qos(C.Qos(10)))
        self.pub_pose = None
        if pose_topic:  # franka's current_pose is best-effort
            self.pub_pose = self.node.create_publisher(PoseStamped, pose_topic, qos(C.Qos(10, reliable=False)))
        self.lock = threading.Lock()
        self.joints, self.poses, self.diags = [], [], []
        subscription(self.node, C.JOINT_STATES, lambda m: self._keep(self.joints, m))
        subscription(self.node, C.EE_POSE, lambda m: self._keep(self.poses, m))
        subscription(self.node, C.DIAGNOSTICS, self._on_diag)
        self.start()

    def _keep(self, box, msg):
        with self.lock:
            box.append((time.monotonic(), msg))

    def _on_diag(self, msg):
        from robot_rl import codec

        for st in msg.status:
            if st.name == "robot_state":
                self._keep(self.diags, (st.level[0] if isinstance(st.level, bytes) else st.level, st.message,
                                        codec.diagnostics_values(msg, "robot_state")))

    def send_joints(self, names, pos, t: float):
        from robot_rl import codec

        self.pub_joints.publish(codec.joint_state_msg(names, pos, [0.0] * len(pos), t))

    def send_pose(self, pos, quat, t: float, frame="fr3_link0"):
        from robot_rl import codec

        self.pub_pose.publish(codec.pose_stamped_msg(pos, quat, t, frame))

    def wait_for(self, box, pred, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for at, m in box:
                    if pred(m):
                        return at, m
            time.sleep(0.01)
        return None

    def clear(self):
        with self.lock:
            self.joints.clear(), self.poses.clear(), self.diags.clear()


def stream(driver: Driver, stop_evt: threading.Event, names, pos_fn, hz=50.0, pose_fn=None):
    def loop():
        i = 0
        while not stop_evt.is_set():
            t = time.time()
            driver.send_joints(names, pos_fn(i), t)
            if pose_fn is not None:
                driver.send_pose(*pose_fn(i), t)
            i += 1
            time.sleep(1.0 / hz)

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    return th


def test_node_maps_fr3_joint_states_with_fk_drops_nan_and_stops_when_stale(tmp_path, kin):
    driver = Driver("/drv/joint_states")
    log = tmp_path / "robot_state.log"
    proc = spawn_node("robot_rl.nodes.robot_state", log, {
        "joint_states_topic": "/drv/joint_states", "arm_joints": ",".join(FR3_ARM),
        "finger_joints": ",".join(FR3_FINGERS), "stale_timeout_s": 0.3, "diagnostics_hz": 10.0})
    try:
        # before any driver message: diagnostics name the missing topic
        got = driver.wait_for(driver.diags, lambda d: "/drv/joint_states missing since" in d[1], 30)
        assert got is not None, log.read_text()[-3000:]
        assert got[1][0] == 2
        q = kin.random_configuration(np.random.default_rng(5))
        names = FR3_FINGERS + FR3_ARM  # ros2_control's merge does not keep the model's order
        t0 = time.time()
        driver.send_joints(names, [0.012, 0.012] + list(q), t0)
        got = driver.wait_for(driver.joints, lambda m: True)
        assert got is not None, log.read_text()[-3000:]
        js = got[1]
        assert list(js.name) == MODEL_ARM + ["finger_joint1", "finger_joint2", "gripper"]
        np.testing.assert_allclose(js.position, list(q) + [0.012, 0.012, 0.024], atol=1e-12)
        from robot_rl import codec

        assert codec.from_stamp(js.header.stamp) == pytest.approx(t0, abs=1e-6)  # the driver's stamp
        _, ee = driver.wait_for(driver.poses, lambda m: True)
        p, quat = codec.pose_from_msg(ee.pose)
        fk_p, fk_q = kin.fk(q)
        assert np.linalg.norm(p - fk_p) < 1e-6 and quat_angle_deg(quat, fk_q) < 1e-4
        assert ee.header.frame_id == "base_link" and codec.from_stamp(ee.header.stamp) == pytest.approx(t0, abs=1e-6)

        # NaN joint: the message is dropped, the log and diagnostics say why
        driver.clear()
        bad = [0.012, 0.012] + list(q)
        bad[4] = float("nan")
        driver.send_joints(names, bad, time.time())
        got = driver.wait_for(driver.diags, lambda d: "fr3_joint3" in d[2].get("last_error", ""), 5)
        assert got is not None
        assert driver.joints == []
        assert "non-finite positions for ['fr3_joint3']" in log.read_text()

        # a live stream, then the driver goes quiet: publishing stops, diagnostics name the topic
        evt = threading.Event()
        th = stream(driver, evt, names, lambda i: [0.01, 0.01] + list(q))
        time.sleep(0.5)
        n_live = len(driver.joints)
        evt.set()
        th.join()
        quiet_at = time.monotonic()
        got = driver.wait_for(driver.diags, lambda d: "/drv/joint_states stale since" in d[1], 3)
        assert got is not None
        assert got[0] - quiet_at < 0.3 + 0.25  # timeout + a diagnostics period + slack
        assert n_live > 10
        with driver.lock:
            assert all(at <= quiet_at + 0.1 for at, _ in driver.joints)
    finally:
        stop_process(proc)
        driver.close()


def test_node_prefers_the_driver_pose_best_effort_and_stops_when_it_goes_stale(tmp_path, kin):
    driver = Driver("/drv2/joint_states", "/drv2/current_pose")
    log = tmp_path / "robot_state_pose.log"
    proc = spawn_node("robot_rl.nodes.robot_state", log, {
        "joint_states_topic": "/drv2/joint_states", "arm_joints": ",".join(FR3_ARM),
        "finger_joints": ",".join(FR3_FINGERS), "ee_pose_topic": "/drv2/current_pose",
        "ee_pose_frame": "fr3_link0", "stale_timeout_s": 0.3, "diagnostics_hz": 10.0})
    try:
        assert driver.wait_for(driver.diags, lambda d: True, 30) is not None, log.read_text()[-3000:]
        names = FR3_ARM + FR3_FINGERS
        driver_pose = ([0.45, -0.05, 0.25], [0.0, 1.0, 0.0, 0.0])  # deliberately not the FK pose
        evt = threading.Event()
        th = stream(driver, evt, names, lambda i: list(HOME) + [0.02, 0.02], pose_fn=lambda i: driver_pose)
        got = driver.wait_for(driver.poses, lambda m: True)
        assert got is not None, log.read_text()[-3000:]
        from robot_rl import codec

        p, quat = codec.pose_from_msg(got[1].pose)
        np.testing.assert_allclose(p, driver_pose[0], atol=1e-12)
        got = driver.wait_for(driver.diags, lambda d: d[2].get("ee_source") == "topic" and "fk_vs_driver_mm" in d[2])
        fk_mm = 1000 * np.linalg.norm(kin.fk(HOME)[0] - driver_pose[0])
        assert float(got[1][2]["fk_vs_driver_mm"]) == pytest.approx(fk_mm, abs=0.01)
        evt.set()
        th.join()
        # joints keep coming, the pose stops: nothing published, the pose topic named
        evt2 = threading.Event()
        th2 = stream(driver, evt2, names, lambda i: list(HOME) + [0.02, 0.02])
        try:
            time.sleep(0.5)  # past the timeout
            driver.clear()
            got = driver.wait_for(driver.diags, lambda d: "/drv2/current_pose stale since" in d[1], 3)
            assert got is not None and "/drv2/joint_states" not in got[1][1]
            time.sleep(0.3)
            assert driver.joints == [] and driver.poses == []
        finally:
            evt2.set()
            th2.join()
    finally:
        stop_process(proc)
        driver.close()


def test_node_refuses_a_driver_topic_that_is_the_contracts_own(tmp_path):
    """No namespace: /joint_states would be both the driver's and the contract's topic."""
    log = tmp_path / "collision.log"
    proc = spawn_node("robot_rl.nodes.robot_state", log, {"joint_states_topic": "/joint_states"})
    assert proc.wait(60) != 0
    assert "run robot_state in a namespace" in log.read_text()
