"""Camera node: one camera (RealSense or any OpenCV source) onto the contract's
camera/<camera>/image_raw (rgb8) + camera_info, with /diagnostics (fps, drops, latency).

Thin: the drivers are plain code in robot_rl/sensors. A reader thread blocks on the device at
its own rate and publishes each frame as it arrives (rclpy publishers are thread-safe), so the
executor is never blocked and no timer adds up to a period of latency. Stamps are the device's
clock mapped onto this node's clock (sensors/clock.py). A camera that cannot be opened is
reported in one line on stderr and the process exits 1.
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from rclpy.node import Node

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import make_node_options, publisher, run, settings
from robot_rl.sensors import CameraError, DeviceClock, FrameStats, open_camera, resolve_intrinsics
from robot_rl.sensors.base import EndOfStream


@dataclass
class CameraSettings:
    """The camera node's parameters (config/robot.yaml, one section per camera node)."""

    driver: str = "realsense"  # realsense | opencv
    camera: str = "front"  # contract camera name: camera/<camera>/image_raw + camera_info
    serial: str = ""  # RealSense serial ("" = the only one connected)
    source: str = ""  # realsense: "" live or a recording (.db3/.bag); opencv: index, file or URL
    width: int = 640
    height: int = 480
    fps: float = 30.0
    depth: bool = False  # RealSense: depth aligned to colour (read, not published yet)
    loop: bool = False  # a video file / recording restarts at its end
    cell: str = ""  # calibration YAML; "" = the device's own intrinsics
    frame_id: str = ""  # "" = the contract's optical frame
    clock_window: int = 100  # frames over which device time is mapped onto host time
    open_timeout_s: float = 10.0  # keep trying this long (a stream or a device that comes up late)


class CameraNode(Node):
    def __init__(self):
        super().__init__("camera", **make_node_options())
        s = settings(self, CameraSettings)
        self.camera = s.camera
        self.frame_id = s.frame_id or C.camera_frame(self.camera)
        self.cam = open_camera(s.driver, serial=s.serial, source=s.source, width=s.width, height=s.height,
                               fps=s.fps, depth=s.depth, loop=s.loop)
        self.stream = _open_within(self.cam, s.open_timeout_s)  # CameraError -> main() says why, exit 1
        self.info, said = resolve_intrinsics(self.camera, self.stream, s.cell)
        self.info["frame_id"] = self.frame_id
        self.get_logger().info(f"{self.stream.device}: {self.stream.width}x{self.stream.height} "
                               f"@ {self.stream.fps:g} fps -> {C.camera_topic(self.camera)}; {said}")
        self.pub_image = publisher(self, C.camera_topic(self.camera))
        self.pub_info = publisher(self, C.camera_info_topic(self.camera))
        self.pub_diag = publisher(self, C.DIAGNOSTICS)
        self.clock_map = DeviceClock(window=s.clock_window)
        self.stats = FrameStats(nominal_fps=self.stream.fps)
        self._lock = threading.Lock()
        self.error: str | None = None
        self.done = False
        self._stop = threading.Event()
        self.create_timer(1.0, self._publish_diagnostics)
        self._thread = threading.Thread(target=self._read_loop, name="camera_reader", daemon=True)
        self._thread.start()

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.cam.read()
            except EndOfStream as e:
                self.get_logger().info(str(e))
                self.done = True
                return
            except CameraError as e:
                self.error = str(e)
                self.get_logger().error(self.error)
                self.done = True
                return
            recv = self._now()
            t = self.clock_map.to_host(frame.device_time_s, recv)
            self.pub_image.publish(codec.image_msg(frame.rgb, t, self.frame_id))
            self.pub_info.publish(codec.camera_info_msg(self.info, t))
            with self._lock:
                self.stats.add(frame.seq, frame.device_time_s, recv, latency_s=self._now() - t)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            values = self.stats.summary()
        values.update(camera=self.camera, device=self.stream.device, clock_resets=self.clock_map.resets)
        level, message = 0, "ok"
        if self.error:
            level, message = 2, self.error
        elif values["fps"] < 0.5 * self.stream.fps:
            level, message = 1, f"{values['fps']} fps, expected {self.stream.fps:g}"
        self.pub_diag.publish(codec.diagnostics_msg(self._now(), self.get_name(), values, level, message))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=6.0)  # a read returns within its timeout
        self.cam.close()


def _open_within(cam, timeout_s: float):
    """Open, retrying until timeout_s: the last error names what was looked for."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return cam.open()
        except CameraError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main(args=None) -> int:
    holder = {}

    def make():
        holder["node"] = CameraNode()
        return holder["node"]

    try:
        run(make, args)
    except (CameraError, ValueError):
        # run() printed "fatal: CameraError: <why>" (or a bad parameter's ValueError): a
        # traceback would add nothing an operator can act on.
        return 1
    node = holder.get("node")
    return 1 if node is not None and node.error else 0


if __name__ == "__main__":
    sys.exit(main())
