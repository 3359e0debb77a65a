"""The twin posing as a real cell's drivers (robot_rl.twin.driver_cell, robot_rl.twin.mjpeg):
Servo's stale-command rule, its two command types, the gripper interface, episodes with a reset
pause, and camera frames served as MJPEG and read by the camera node's own OpenCV driver."""
import numpy as np
import pytest

from robot_rl.spec import object_vector, proprio_vector
from robot_rl.twin.driver_cell import DriverCell, DriverCellSettings

DT = 0.02  # 50 Hz physics


def ee(cell):
    return np.asarray(cell.sim.robot_state()["ee_pos"], float)


def test_servo_rules():
    cell = DriverCell(DriverCellSettings(seed=0))
    start = ee(cell)
    cell.servo([0.1, 0, 0, 0, 0, 0], stamp=0.0, frame_id="fr3_link0")
    for i in range(10):  # the command is 0.1 s old after 5 steps: Servo stops there
        cell.step(now=(i + 1) * DT)
    moved = ee(cell)[0] - start[0]
    assert 0.003 < moved < 0.014, moved  # about 0.1 m/s for 0.1 s, not 0.2 s
    assert cell.stale_steps >= 5
    assert not cell.servo([0.1, 0, 0, 0, 0, 0], 0.3, "tool0"), "another frame than the configured one is refused"
    assert not cell.servo([np.nan, 0, 0, 0, 0, 0], 0.3, "fr3_link0")
    unitless = DriverCell(DriverCellSettings(seed=0, servo_command_in_type="unitless"))
    unitless.servo([2.0, 0, 0, 0, 0, -0.5], 0.0, "fr3_link0")
    assert unitless.twist.tolist() == pytest.approx([0.4, 0, 0, 0, 0, -0.4])  # clipped, scaled 0.4 / 0.8
    with pytest.raises(ValueError, match="servo_command_in_type"):
        DriverCellSettings(servo_command_in_type="velocity")


def test_expert_through_the_driver_interfaces_picks_with_resets():
    """The scripted expert driving through Servo twists and finger-position targets, at 10 Hz
    against 50 Hz physics: episodes succeed, and each terminal status holds through the reset."""
    from robot_rl.twin.experts import make_expert

    s = DriverCellSettings(seed=1, reset_s=0.5)
    cell = DriverCell(s)
    expert = make_expert("pick_cube", seed=1)
    t, episode, outcomes, terminal_ticks = 0.0, -1, [], 0
    for i in range(900):  # 18 s
        t = round(t + DT, 6)
        status = cell.status()
        if i % 5 == 0:  # the policy rate
            if status["terminated"] or status["truncated"]:
                terminal_ticks += 1
                if not outcomes or outcomes[-1][0] != status["episode"]:
                    outcomes.append((status["episode"], status["success"]))
            else:
                if cell.episode != episode:
                    expert.reset()
                    episode = cell.episode
                st = cell.sim.robot_state()
                obs = {"proprio": proprio_vector(st["ee_pos"], st["ee_quat"], cell.sim.gripper_width()),
                       "object": object_vector(cell.object_poses())}
                twist, grip = s.action.to_command(expert.act(obs))
                cell.servo(twist, t, "fr3_link0")
                cell.gripper([0.0, 0.0] if grip > 0 else [0.04, 0.04])
        cell.step(t)
    assert len(outcomes) >= 3 and all(ok for _, ok in outcomes), outcomes
    assert terminal_ticks >= 4 * len(outcomes) - 1, "the terminal status stays up through the reset"
    names, pos, _ = cell.joint_state()
    assert names[0] == "fr3_joint1" and names[-1] == "fr3_finger_joint2" and len(pos) == 9


def test_estop_stops_the_twin():
    cell = DriverCell(DriverCellSettings(seed=0))
    cell.estop = True
    start = ee(cell)
    for i in range(5):
        cell.servo([0.2, 0, 0, 0, 0, 0], i * DT, "fr3_link0")
        cell.step(i * DT + 0.001)
    assert np.linalg.norm(ee(cell) - start) < 1e-3


def test_frames_served_as_mjpeg_reach_the_opencv_driver():
    pytest.importorskip("cv2")
    from robot_rl.sensors.opencv_camera import OpenCVCamera
    from robot_rl.twin.mjpeg import MjpegServer

    cell = DriverCell(DriverCellSettings(seed=0, image_size=(48, 64)))
    server = MjpegServer(port=0)
    try:
        frame = cell.render("front")
        server.publish("front", frame)
        cam = OpenCVCamera(source=server.url("front"))
        info = cam.open()
        assert (info.width, info.height) == (64, 48)
        got = cam.read(timeout_s=5.0).rgb
        assert got.shape == frame.shape
        assert np.abs(got.astype(int) - frame.astype(int)).mean() < 4.0  # JPEG at quality 95
        cam.close()
    finally:
        server.close()
