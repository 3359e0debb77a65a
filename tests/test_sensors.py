"""Camera drivers as plain code, on real OpenCV and real pyrealsense2 (no ROS): frames rendered
by the twin go through a video file (OpenCV) or a pyrealsense2 software device and a recording
of it (RealSense) and must come out unchanged, with their intrinsics; the clock mapping and the
drop counting run on synthetic timestamps with known truth."""
import numpy as np
import pytest

from robot_rl.calibration.cell import load_cell
from robot_rl.sensors import CameraError, DeviceClock, FrameStats, StreamInfo, resolve_intrinsics
from robot_rl.sensors.base import EndOfStream, open_camera
from robot_rl.sensors.opencv_camera import OpenCVCamera

H, W = 96, 128
CELL = "calibration/default_cell.yaml"


@pytest.fixture(scope="module")
def twin_frames():
    """A few frames of the front camera as the twin renders them, with depth of the same camera
    (depth from MuJoCo's renderer; what a RealSense's aligned depth would show)."""
    import mujoco

    from robot_rl.twin import make_env

    env = make_env("pick_cube", cameras=("front",), image_size=(H, W), seed=0)
    sim = env.unwrapped
    frames = []
    rng = np.random.default_rng(0)
    for _ in range(8):
        env.step(rng.uniform(-1, 1, env.action_space.shape))
        frames.append(sim.render("front").copy())
    r = mujoco.Renderer(sim.model, H, W)
    r.enable_depth_rendering()
    r.update_scene(sim.data, camera="front")
    depth = r.render().astype(np.float32)
    r.close()
    depth[depth > 20.0] = 0.0  # the far plane: a RealSense reports 0 (no data) beyond its range
    env.close()
    return frames, depth


def shifted(depth, i):
    """Depth of frame i: a different value per frame (0 = no data stays 0)."""
    return np.where(depth > 0, depth + 0.01 * i, 0.0).astype(np.float32)


def write_video(path, frames, fps=30):
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert w.isOpened()
    for f in frames:
        w.write(np.ascontiguousarray(f[..., ::-1]))  # VideoWriter takes BGR
    w.release()
    return path


def decoded(path):
    """The file's frames as OpenCV decodes them (RGB): what an exact reader must return."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            return out
        out.append(bgr[..., ::-1])


# ---------------------------------------------------------------------------- OpenCV
def test_opencv_reads_a_video_file_as_rgb_frames(twin_frames, tmp_path):
    frames, _ = twin_frames
    path = write_video(tmp_path / "front.avi", frames)
    cam = OpenCVCamera(source=str(path), realtime=False)
    info = cam.open()
    assert (info.width, info.height, info.fps) == (W, H, 30.0) and info.K is None
    got = []
    with pytest.raises(EndOfStream):
        while True:
            got.append(cam.read())
    cam.close()
    assert [f.seq for f in got] == list(range(len(frames)))
    np.testing.assert_allclose([f.device_time_s for f in got], np.arange(len(frames)) / 30.0)
    ref = decoded(path)
    for f, r, src in zip(got, ref, frames):
        assert f.rgb.dtype == np.uint8 and f.rgb.shape == (H, W, 3)
        assert np.array_equal(f.rgb, r)  # exactly what OpenCV decodes, in RGB order
        assert np.abs(f.rgb.astype(int) - src).mean() < 6  # and close to the source (MJPG is lossy)
        # RGB, not BGR: the red channel matches the source's red better than its blue
        assert np.abs(f.rgb[..., 0].astype(int) - src[..., 0]).mean() < np.abs(f.rgb[..., 0].astype(int) - src[..., 2]).mean()


def test_opencv_file_loops_with_time_running_on_and_resizes(twin_frames, tmp_path):
    frames, _ = twin_frames
    path = write_video(tmp_path / "front.avi", frames[:3])
    cam = OpenCVCamera(source=str(path), loop=True, realtime=False, width=W // 2, height=H // 2)
    assert (cam.open().width, cam.open().height) == (W // 2, H // 2)
    got = [cam.read() for _ in range(7)]
    cam.close()
    assert all(f.rgb.shape == (H // 2, W // 2, 3) for f in got)
    assert np.all(np.diff([f.device_time_s for f in got]) > 0)
    assert np.array_equal(got[0].rgb, got[3].rgb) and not np.array_equal(got[0].rgb, got[1].rgb)


def test_opencv_file_is_paced_at_its_frame_rate(twin_frames, tmp_path):
    import time

    path = write_video(tmp_path / "front.avi", twin_frames[0][:6], fps=20)
    cam = OpenCVCamera(source=str(path))
    cam.open()
    t0 = time.monotonic()
    for _ in range(6):
        cam.read()
    cam.close()
    assert time.monotonic() - t0 == pytest.approx(5 / 20, abs=0.08)


def test_opencv_sources_that_cannot_open_say_which(tmp_path):
    with pytest.raises(CameraError, match="no_such.avi"):
        OpenCVCamera(source=str(tmp_path / "no_such.avi")).open()
    junk = tmp_path / "notes.avi"
    junk.write_text("not a video")
    with pytest.raises(CameraError, match="notes.avi"):
        OpenCVCamera(source=str(junk)).open()
    with pytest.raises(CameraError, match="device index 97"):
        OpenCVCamera(source="97").open()
    with pytest.raises(CameraError, match="source"):
        OpenCVCamera(source="").open()
    with pytest.raises(CameraError, match="unknown camera driver 'gopro'"):
        open_camera("gopro")


# ---------------------------------------------------------------------------- RealSense
def software_camera(depth=False, serial="twin-front"):
    from robot_rl.sensors.realsense import SoftwareRealSense

    K = load_cell(CELL).camera("front").scaled_K(W, H)
    return SoftwareRealSense(W, H, 30, K, depth=depth, serial=serial), K


def test_realsense_software_device_round_trips_frames_depth_and_intrinsics(twin_frames):
    from robot_rl.sensors.realsense import RealSenseCamera

    frames, depth = twin_frames
    sw, K = software_camera(depth=True)
    cam = RealSenseCamera(software=sw, depth=True, serial="twin-front")
    info = cam.open()
    assert (info.width, info.height, info.fps) == (W, H, 30.0)
    np.testing.assert_allclose(info.K, K, rtol=1e-6)  # float32 inside the SDK
    got = []
    for i, f in enumerate(frames):
        sw.inject(f, shifted(depth, i), t_s=50.0 + i / 30)
        got.append(cam.read(timeout_s=2.0))
    cam.close()
    assert [g.seq for g in got] == list(range(len(frames)))
    np.testing.assert_allclose([g.device_time_s for g in got], 50.0 + np.arange(len(frames)) / 30, atol=1e-6)
    for i, (g, f) in enumerate(zip(got, frames)):
        assert np.array_equal(g.rgb, f)  # lossless, RGB order kept
        assert g.depth_m.shape == (H, W)
        np.testing.assert_allclose(g.depth_m, shifted(depth, i), atol=0.0006)  # 1 mm units

    # the node's choice of intrinsics: the device's own without a cell, the cell's with one
    info_dev, said = resolve_intrinsics("front", info, "")
    assert "device itself" in said and np.allclose(info_dev["K"], K, rtol=1e-6)
    info_cell, said = resolve_intrinsics("side", info, CELL)
    assert "device itself" in said and "has no camera 'side'" in said


def test_realsense_recording_plays_back_through_the_pipeline(twin_frames, tmp_path):
    """A recording (rosbag2 .db3, what pyrealsense2 2.59 writes) made from the software device
    plays back through rs.pipeline + rs.align: the live-device code path, minus the USB."""
    import time

    import pyrealsense2 as rs

    from robot_rl.sensors.realsense import RealSenseCamera

    frames, depth = twin_frames
    sw, K = software_camera(depth=True, serial="rec-1")
    path = str(tmp_path / "front.db3")
    rec = rs.recorder(path, sw.dev)
    sensors = rec.query_sensors()
    q = rs.syncer()  # consumes what the recorder passes on (a full frame_queue stalls the writer)
    for s in sensors:
        s.open(s.get_stream_profiles()[0])
        s.start(q)
    for i, f in enumerate(frames):
        # At the camera's rate, as a live camera would be recorded: playback keeps the
        # recording's timing, and a burst of frames is a burst the pipeline drops from.
        sw.inject(f, shifted(depth, i), t_s=10.0 + i / 30)
        time.sleep(1 / 30)
    for s in sensors:
        s.stop()
        s.close()
    del rec, sensors, q

    cam = RealSenseCamera(source=path, depth=True)  # real time (non-real-time playback can skip frame 0)
    info = cam.open()
    assert (info.width, info.height) == (W, H) and "recording" in info.device
    np.testing.assert_allclose(info.K, K, rtol=1e-5)
    got = []
    with pytest.raises(EndOfStream):
        while True:
            got.append(cam.read(timeout_s=1.0))
    cam.close()
    # Each colour frame at most once, in order. Real-time playback, like a live camera, drops
    # what is not read in time: on a loaded machine the first frame or two go while the
    # pipeline starts (the node's drop counter sees them as a gap in the frame numbers).
    seqs = [g.seq for g in got]
    assert seqs == sorted(set(seqs)) and set(seqs) <= set(range(len(frames))) and len(seqs) >= len(frames) - 3
    assert seqs[-1] == len(frames) - 1
    assert sum(g.depth_m is None for g in got) <= 2
    for g in got:
        i = g.seq
        assert np.array_equal(g.rgb, frames[i])
        assert g.device_time_s == pytest.approx(10.0 + i / 30, abs=1e-5)
        # rs.align re-projects every depth pixel into the colour camera (same intrinsics, no
        # offset here): exact to the mm except along depth edges, where it rounds to a
        # neighbour or leaves a hole (0, as on a real camera).
        if g.depth_m is None:  # its depth frame was lost: no depth rather than another frame's
            continue
        truth = shifted(depth, i)
        seen = g.depth_m > 0
        assert seen.mean() > 0.85 * (depth > 0).mean()
        assert np.mean(np.abs(g.depth_m - truth)[seen] < 0.0006) > 0.95


def test_realsense_without_hardware_names_the_serial_and_what_it_found():
    from robot_rl.sensors.realsense import RealSenseCamera, list_serials

    found = list_serials()
    assert found == []  # this machine has no RealSense; the errors below must say so
    with pytest.raises(CameraError) as e:
        RealSenseCamera(serial="233722070318").open()
    assert "233722070318" in str(e.value) and "none" in str(e.value)
    with pytest.raises(CameraError, match="no RealSense device found"):
        RealSenseCamera().open()
    sw, _ = software_camera(serial="twin-front")
    with pytest.raises(CameraError) as e:
        RealSenseCamera(software=sw, serial="233722070318").open()
    assert "233722070318" in str(e.value) and "twin-front" in str(e.value)
    with pytest.raises(CameraError, match="missing.db3"):
        RealSenseCamera(source="/nonexistent/missing.db3").open()


# ---------------------------------------------------------------------------- intrinsics
def test_cell_intrinsics_are_scaled_to_the_stream():
    cal = load_cell(CELL).camera("front")
    info, said = resolve_intrinsics("front", StreamInfo(width=320, height=240, fps=30), "default_cell.yaml")
    assert "default_cell.yaml" in said and "scaled to 320x240" in said
    K = np.asarray(info["K"])
    assert K[0, 0] == pytest.approx(cal.fx / 2) and K[1, 1] == pytest.approx(cal.fy / 2)
    assert K[0, 2] == pytest.approx((cal.cx + 0.5) / 2 - 0.5)
    with pytest.raises(CameraError, match="aspect ratio"):
        resolve_intrinsics("front", StreamInfo(width=640, height=360, fps=30), CELL)
    with pytest.raises(CameraError, match="cell calibration"):
        resolve_intrinsics("front", StreamInfo(width=64, height=48, fps=30), "/nonexistent/cell.yaml")
    info, said = resolve_intrinsics("front", StreamInfo(width=64, height=48, fps=30), "")
    assert "no intrinsics" in said and not np.any(info["K"])


# ---------------------------------------------------------------------------- clock + stats
def test_device_clock_maps_onto_host_time_despite_jitter():
    rng = np.random.default_rng(1)
    n, period = 300, 1 / 30
    capture = 1000.0 + np.arange(n) * period  # host time of capture (truth)
    device = capture - 1000.0 + 5.0  # the device's clock: another origin
    delay = 0.004 + rng.exponential(0.006, n)  # transport: 4 ms at best, jittery beyond
    recv = capture + delay
    clock = DeviceClock(window=100)
    stamps = np.array([clock.to_host(d, r) for d, r in zip(device, recv)])
    assert np.all(np.diff(stamps) > 0)
    err = stamps[30:] - capture[30:]
    # what is left is the constant minimal delay (invisible to the host), not the jitter
    assert np.abs(err - 0.004).max() < 0.0015
    naive = recv[30:] - capture[30:]
    assert naive.std() > 5 * err.std()
    # a device clock that jumps (reset, a file that restarts) is followed within a frame
    stamps2 = [clock.to_host(d, r) for d, r in zip(device[:20] - 3.0, recv[-1] + 0.1 + np.arange(20) * period)]
    assert clock.resets == 1 and stamps2[-1] == pytest.approx(recv[-1] + 0.1 + 19 * period, abs=0.03)


def test_frame_stats_count_drops_from_sequence_and_timestamp_gaps():
    s = FrameStats(nominal_fps=30)
    seqs = [0, 1, 2, 5, 6, 10]  # 2 + 3 lost
    lost = [s.add(q, q / 30, 100 + q / 30, latency_s=0.002) for q in seqs]
    assert lost == [0, 0, 0, 2, 0, 3] and s.drops == 5 and s.frames == 6
    sm = s.summary()
    assert sm["fps"] == pytest.approx(5 / (10 / 30)) and sm["latency_ms_p50"] == pytest.approx(2.0)
    # a device whose counter does not advance: gaps in time count instead
    t = FrameStats(nominal_fps=10)
    times = [0.0, 0.1, 0.2, 0.5, 0.6]  # 2 lost between 0.2 and 0.5
    assert [t.add(0, x, x) for x in times] == [0, 0, 0, 2, 0] and t.drops == 2
