"""The camera node as its own process over real DDS, on a video file of twin-rendered frames
(the OpenCV path): images, camera_info, frame ids, stamps and /diagnostics as an outside
subscriber sees them; a camera that is not there ends the process with one clear line.
(The RealSense path is tested at the driver level in test_sensors.py: a software device lives
in the process that feeds it, so a node in another process cannot read it.)"""
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")

from conftest import SpunNode  # noqa: E402
from robot_rl import codec, contract as C  # noqa: E402
from robot_rl.calibration.cell import load_cell  # noqa: E402
from robot_rl.nodes.ros import subscription  # noqa: E402
from test_sensors import H, W, decoded, write_video  # noqa: E402

CELL = "calibration/default_cell.yaml"


class Listener(SpunNode):
    def __init__(self, camera):
        super().__init__("camera_test_listener")
        self.images, self.infos, self.diags = [], [], []
        self.lock = threading.Lock()
        subscription(self.node, C.camera_topic(camera), lambda m: self._add(self.images, m))
        subscription(self.node, C.camera_info_topic(camera), lambda m: self._add(self.infos, m))
        subscription(self.node, C.DIAGNOSTICS, lambda m: self._add(self.diags, m))
        self.start()

    def _add(self, bucket, msg):
        with self.lock:
            bucket.append(msg)


def node_cmd(*params):
    args = [sys.executable, "-m", "robot_rl.nodes.camera", "--ros-args", "-r", "__node:=camera_front"]
    for p in params:
        args += ["-p", p]
    return args


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from robot_rl.twin import make_env

    env = make_env("pick_cube", cameras=("front",), image_size=(H, W), seed=0)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(10):
        env.step(rng.uniform(-1, 1, env.action_space.shape))
        frames.append(env.unwrapped.render("front").copy())
    env.close()
    path = write_video(tmp_path_factory.mktemp("cam") / "front.avi", frames)
    listener = Listener("front")
    proc = subprocess.Popen(node_cmd("driver:=opencv", f"source:={path}", "camera:=front", "loop:=true",
                                     f"cell:={CELL}", f"width:={W}", f"height:={H}"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            with listener.lock:
                if len(listener.images) >= 45 and len(listener.diags) >= 2:
                    break
            time.sleep(0.1)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
        listener.close()
    return listener, decoded(path), out, proc.returncode


def test_images_are_the_video_frames_in_rgb8(run):
    listener, ref, out, rc = run
    assert rc == 0 and "Traceback" not in out, out
    assert len(listener.images) >= 45, out
    for m in listener.images:
        assert (m.encoding, m.height, m.width, m.header.frame_id) == ("rgb8", H, W, C.camera_frame("front"))
        img = codec.image_from_msg(m)
        assert min(np.abs(img.astype(int) - r).max() for r in ref) == 0  # one of the file's frames, exactly
    # in the file's order, looping
    idx = [int(np.argmin([np.abs(codec.image_from_msg(m).astype(int) - r).sum() for r in ref])) for m in listener.images[:20]]
    steps = np.diff(idx) % len(ref)
    assert np.all(steps == 1)


def test_stamps_increase_at_the_file_rate_on_host_time(run):
    listener = run[0]
    t = np.array([codec.from_stamp(m.header.stamp) for m in listener.images])
    assert np.all(np.diff(t) > 0)
    assert np.median(np.diff(t)) == pytest.approx(1 / 30, abs=0.003)
    assert abs(t[-1] - time.time()) < 30  # mapped onto the host clock, not the file's media time


def test_camera_info_carries_the_cell_calibration_scaled(run):
    listener = run[0]
    assert len(listener.infos) >= 45
    K = load_cell(CELL).camera("front").scaled_K(W, H)
    img_stamps = {codec.stamp_key(m.header.stamp) for m in listener.images}
    for m in listener.infos:
        assert (m.width, m.height, m.header.frame_id) == (W, H, C.camera_frame("front"))
        np.testing.assert_allclose(np.reshape(m.k, (3, 3)), K)
    assert {codec.stamp_key(m.header.stamp) for m in listener.infos} & img_stamps  # same stamps as images
    assert "from calibration/default_cell.yaml" in run[2]


def test_diagnostics_report_fps_and_drops(run):
    listener = run[0]
    values = [v for m in listener.diags if (v := codec.diagnostics_values(m, "camera_front"))]
    assert values, "no /diagnostics from camera_front"
    last = values[-1]
    # rel 0.35: the window can hold a catch-up burst on a starved CPU; a wrong rate (15, 60) still fails
    assert float(last["fps"]) == pytest.approx(30, rel=0.35)
    assert int(last["drops"]) == 0 and int(last["frames"]) > 0 and last["camera"] == "front"
    assert "latency_ms_p50" in last and float(last["latency_ms_p50"]) >= 0


@pytest.mark.parametrize("params, says", [
    (("driver:=realsense", "serial:=233722070318"), "233722070318"),
    (("driver:=opencv", "source:=/nonexistent/front.avi"), "/nonexistent/front.avi"),
])
def test_a_missing_camera_exits_nonzero_with_one_clear_line(params, says):
    p = subprocess.run(node_cmd(*params, "open_timeout_s:=1.0"), capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert says in p.stderr and "CameraError" in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
