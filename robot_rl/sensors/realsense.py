"""Intel RealSense through pyrealsense2: a live device by serial number, a recording played back,
or a software device whose frames the caller injects (the twin posing as the camera, tests).

All three deliver pyrealsense2 frames that go through the same conversion (`_to_frame`): colour
as RGB, depth in metres aligned to colour, the device's timestamp and frame counter, and the
stream's own intrinsics. How frames are fetched differs where pyrealsense2 makes it:
- live and playback: an `rs.pipeline` (it syncs colour and depth into framesets, and
  `rs.align` re-projects depth into the colour camera);
- software device: pyrealsense2 2.59 can neither hand a software device to a pipeline
  (`software_device.add_to(context)` registers it by weak reference: `query_devices` never lists
  it) nor pair its colour and depth in an `rs.syncer` (each frame comes out alone), so its sensors
  stream into one frame queue each and colour is paired with the depth frame of the same frame
  number here. Injected depth is rendered from the colour camera itself, so it is aligned already
  and `rs.align` (which needs a frameset) is not applied.
Recordings: pyrealsense2 2.59 reads and writes rosbag2 `.db3` files; a ROS 1 `.bag` from an older
SDK is converted once with the SDK's own converter (next to it, `<name>.db3`).
"""
from __future__ import annotations

import os
import time
from collections import deque

import numpy as np

from robot_rl.sensors.base import Camera, CameraError, EndOfStream, Frame, StreamInfo

_READ_WAIT_S = 5.0  # the first frames of a live device can take seconds (auto exposure)


def _rs():
    try:
        import pyrealsense2 as rs
    except ImportError as e:  # pip: pyrealsense2; it also needs libusb-1.0-0 from apt
        raise CameraError(f"the realsense driver needs pyrealsense2 (and libusb-1.0-0): {e}") from None
    return rs


def _distortion_model(rs, model) -> str:
    # Brown-Conrady is OpenCV's plumb_bob; RealSense colour streams report it (or none).
    if model in (rs.distortion.brown_conrady, rs.distortion.modified_brown_conrady, rs.distortion.none):
        return "plumb_bob"
    return str(model).split(".")[-1]


def _intrinsics_K(intr) -> np.ndarray:
    return np.array([[intr.fx, 0.0, intr.ppx], [0.0, intr.fy, intr.ppy], [0.0, 0.0, 1.0]])


def list_serials(ctx=None) -> list[str]:
    rs = _rs()
    ctx = ctx or rs.context()
    return [d.get_info(rs.camera_info.serial_number) for d in ctx.query_devices()]


class SoftwareRealSense:
    """A RealSense that is not there: a `pyrealsense2.software_device` with a colour stream (and a
    depth stream) of the given intrinsics; `inject()` hands it one frame. The camera reading it
    is a RealSenseCamera(software=this)."""

    def __init__(self, width: int, height: int, fps: float, K, depth: bool = False,
                 serial: str = "software-0", name: str = "robot_rl software RealSense",
                 depth_units: float = 0.001):
        rs = _rs()
        self.rs, self.width, self.height, self.fps = rs, int(width), int(height), int(round(fps))
        self.serial, self.depth_units = str(serial), float(depth_units)
        K = np.asarray(K, np.float64)
        self.dev = rs.software_device()
        self.dev.register_info(rs.camera_info.serial_number, self.serial)
        self.dev.register_info(rs.camera_info.name, name)
        intr = rs.intrinsics()
        intr.width, intr.height = self.width, self.height
        intr.fx, intr.fy, intr.ppx, intr.ppy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
        intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
        self.color_sensor = self.dev.add_sensor("Color")
        self.color_profile = self.color_sensor.add_video_stream(
            self._stream(rs.stream.color, 0, 3, rs.format.rgb8, intr)).as_video_stream_profile()
        self.depth_sensor = self.depth_profile = None
        if depth:
            self.depth_sensor = self.dev.add_sensor("Depth")
            self.depth_profile = self.depth_sensor.add_video_stream(
                self._stream(rs.stream.depth, 1, 2, rs.format.z16, intr)).as_video_stream_profile()
            self.depth_sensor.add_read_only_option(rs.option.depth_units, self.depth_units)
        self._n = 0
        # pyrealsense2 reads the pixels when the frame is consumed, not when it is injected:
        # the arrays stay referenced until well after any reader can still hold the frame.
        self._keep: deque = deque(maxlen=64)

    def _stream(self, kind, uid, bpp, fmt, intr):
        vs = self.rs.video_stream()
        vs.type, vs.index, vs.uid = kind, 0, uid
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt, vs.intrinsics = self.width, self.height, self.fps, bpp, fmt, intr
        return vs

    def inject(self, rgb: np.ndarray, depth_m: np.ndarray | None = None, t_s: float | None = None) -> int:
        """One frame (uint8 HxWx3 RGB, optional float depth in metres) stamped t_s on the
        device's clock (default: host time). Returns its frame number."""
        rgb = np.ascontiguousarray(rgb, np.uint8)
        if rgb.shape != (self.height, self.width, 3):
            raise ValueError(f"rgb must be {(self.height, self.width, 3)}, got {rgb.shape}")
        n, self._n = self._n, self._n + 1
        t_ms = (time.time() if t_s is None else float(t_s)) * 1e3
        if depth_m is not None and self.depth_sensor is not None:
            units = np.asarray(depth_m, np.float64) / self.depth_units
            # Out of range (beyond 65535 units, negative, NaN) is 0 = "no data", as a RealSense says.
            ok = np.isfinite(units) & (units >= 0) & (units < 65535.5)
            z = np.ascontiguousarray(np.where(ok, np.rint(np.where(ok, units, 0)), 0).astype(np.uint16))
            if z.shape != (self.height, self.width):
                raise ValueError(f"depth must be {(self.height, self.width)}, got {z.shape}")
            self._keep.append(z)
            self.depth_sensor.on_video_frame(self._frame(z, 2, t_ms, n, self.depth_profile, depth=True))
        self._keep.append(rgb)
        self.color_sensor.on_video_frame(self._frame(rgb, 3, t_ms, n, self.color_profile))
        return n

    def _frame(self, pixels, bpp, t_ms, n, profile, depth=False):
        f = self.rs.software_video_frame()
        f.pixels, f.bpp, f.stride = pixels, bpp, self.width * bpp
        f.timestamp, f.domain, f.frame_number, f.profile = t_ms, self.rs.timestamp_domain.hardware_clock, n, profile
        if depth:
            f.depth_units = self.depth_units
        return f


class RealSenseCamera(Camera):
    """serial: which device ("" = the only one); source: "" live, or a .db3/.bag recording;
    software: a SoftwareRealSense to read instead of hardware."""

    def __init__(self, serial: str = "", width: int = 640, height: int = 480, fps: float = 30,
                 depth: bool = False, source: str = "", software: SoftwareRealSense | None = None,
                 loop: bool = False, realtime: bool = True, **_ignored):
        self.serial, self.width, self.height, self.fps = str(serial or ""), int(width), int(height), int(round(fps))
        self.depth, self.source, self.software = bool(depth), str(source or ""), software
        self.loop, self.realtime = bool(loop), bool(realtime)
        self.pipeline = self._align = None
        self._queues = None
        self._last_color = None
        self._stash = None
        self._half_period_ms = 500.0 / max(1, self.fps)
        self._depth_backlog: deque = deque(maxlen=8)

    # ------------------------------------------------------------------ open
    def open(self) -> StreamInfo:
        rs = _rs()
        if self.software is not None:
            return self._open_software(rs)
        cfg = rs.config()
        if self.source:
            what = self._open_recording(rs, cfg)
        else:
            what = self._select_device(rs, cfg)
        self.pipeline = rs.pipeline()
        try:
            profile = self.pipeline.start(cfg)
        except RuntimeError as e:
            self.pipeline = None
            raise CameraError(f"{what}: cannot start colour {self.width}x{self.height}@{self.fps}"
                              f"{' + depth' if self.depth else ''}: {e}") from None
        if self.source:
            pb = profile.get_device().as_playback()
            # Real time by default: as the camera delivered it. Not real time runs as fast as
            # read() asks, but pyrealsense2 2.59 then sometimes skips the first frame.
            pb.set_real_time(self.realtime)
        self._align = rs.align(rs.stream.color) if self.depth else None
        color = profile.get_stream(rs.stream.color).as_video_stream_profile()
        return self._info(rs, color, what)

    def _select_device(self, rs, cfg) -> str:
        serials = list_serials(rs.context())
        looked_for = f"serial {self.serial!r}" if self.serial else "any device"
        if not serials:
            raise CameraError(f"no RealSense device found (looked for {looked_for}; pyrealsense2 sees "
                              "none: check the USB3 cable, the udev rules and that no other process holds it)")
        if self.serial and self.serial not in serials:
            raise CameraError(f"no RealSense with serial {self.serial!r}; found {serials}")
        if not self.serial and len(serials) > 1:
            raise CameraError(f"{len(serials)} RealSense devices found {serials}: set `serial` to pick one")
        serial = self.serial or serials[0]
        cfg.enable_device(serial)
        cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        if self.depth:
            cfg.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.fps)
        return f"RealSense serial {serial}"

    def _open_recording(self, rs, cfg) -> str:
        path = self.source
        if not os.path.exists(path):
            raise CameraError(f"RealSense recording {path!r} does not exist")
        if path.endswith(".bag"):
            out = path[:-4] + ".db3"
            if not os.path.exists(out):
                try:
                    rs.context().convert_bag_to_db3(path, out)
                except Exception as e:  # noqa: BLE001  the SDK's own message says why
                    raise CameraError(f"cannot convert the ROS 1 recording {path!r} to .db3: {e}") from None
            path = out
        try:
            cfg.enable_device_from_file(path, repeat_playback=self.loop)
        except RuntimeError as e:
            raise CameraError(f"cannot open the RealSense recording {path!r}: {e}") from None
        # A recording has the mode it was recorded with: ask for its streams, any size.
        cfg.enable_stream(rs.stream.color)
        if self.depth:
            cfg.enable_stream(rs.stream.depth)
        return f"RealSense recording {path}"

    def _open_software(self, rs) -> StreamInfo:
        sw = self.software
        if self.serial and self.serial != sw.serial:
            raise CameraError(f"no RealSense with serial {self.serial!r}; found {[sw.serial]} (software device)")
        self._queues = {}
        for kind, sensor, profile in (("color", sw.color_sensor, sw.color_profile),
                                      ("depth", sw.depth_sensor, sw.depth_profile)):
            if sensor is None or (kind == "depth" and not self.depth):
                continue
            q = rs.frame_queue(16, keep_frames=True)
            sensor.open(profile)
            sensor.start(q)
            self._queues[kind] = (sensor, q)
        if self.depth and "depth" not in self._queues:
            raise CameraError(f"software RealSense {sw.serial!r} was made without a depth stream")
        return self._info(rs, sw.color_profile, f"software RealSense {sw.serial}")

    def _info(self, rs, color_profile, what) -> StreamInfo:
        intr = color_profile.get_intrinsics()
        self.width, self.height = intr.width, intr.height
        self._half_period_ms = 500.0 / max(1, color_profile.fps())
        return StreamInfo(width=intr.width, height=intr.height, fps=float(color_profile.fps()),
                          K=_intrinsics_K(intr), D=tuple(float(c) for c in intr.coeffs),
                          distortion_model=_distortion_model(rs, intr.model), device=what)

    # ------------------------------------------------------------------ read
    def read(self, timeout_s: float = _READ_WAIT_S) -> Frame:
        deadline = time.monotonic() + timeout_s
        held = None  # a new colour frame whose frameset carried an older depth frame
        while True:
            if self._stash is not None:
                (color, depth), self._stash = self._stash, None
            else:
                try:
                    color, depth = self._next_frames(max(0.001, deadline - time.monotonic()))
                except CameraError:
                    if held is None:
                        raise
                    return self._to_frame(held[0], None)
            key = (color.get_frame_number(), color.get_timestamp())
            if held is not None and key != self._key(held[0]):
                # The next colour came first: its own depth frame was lost. Deliver the held colour
                # without depth (depth from another instant would be wrong, not just missing),
                # and this one next time.
                self._stash = (color, depth)
                self._last_color = self._key(held[0])
                return self._to_frame(held[0], None)
            # A pipeline emits a frameset whenever any stream has a new frame: colour that was
            # already delivered comes again beside the next depth frame. Deliver each colour once,
            # and with the depth frame of its own capture: on playback the syncer may first pair
            # it with the previous depth frame and then again with its own.
            if key != self._last_color:
                if depth is None or abs(depth.get_timestamp() - color.get_timestamp()) <= self._half_period_ms:
                    self._last_color = key
                    return self._to_frame(color, depth)
                held = (color, depth)
            if time.monotonic() > deadline:
                if held is not None:
                    self._last_color = key
                    return self._to_frame(held[0], None)
                raise CameraError(f"no new colour frame within {timeout_s:.1f} s")

    @staticmethod
    def _key(color):
        return (color.get_frame_number(), color.get_timestamp())

    def _next_frames(self, timeout_s: float):
        ms = int(timeout_s * 1e3) + 1
        if self._queues is not None:
            ok, color = self._queues["color"][1].try_wait_for_frame(ms)
            if not ok:
                raise CameraError(f"software RealSense: no frame injected within {timeout_s:.1f} s")
            return color, self._software_depth(color.get_frame_number())
        if self.pipeline is None:
            raise CameraError("camera is not open")
        ok, fs = self.pipeline.try_wait_for_frames(ms)
        if not ok:
            if self.source:
                raise EndOfStream(f"end of the recording {self.source!r}")
            raise CameraError(f"RealSense delivered no frame within {timeout_s:.1f} s (unplugged?)")
        if self._align is not None:
            fs = self._align.process(fs)
        color = fs.get_color_frame()
        if not color:
            return self._next_frames(timeout_s)
        depth = fs.get_depth_frame() if self.depth else None
        return color, (depth if depth else None)

    def _software_depth(self, number: int):
        """The depth frame injected with colour frame `number` (both are injected together,
        depth first, so it is queued already); None if it was lost."""
        if "depth" not in self._queues:
            return None
        q = self._queues["depth"][1]
        while True:
            f = q.poll_for_frame()
            if not f:
                break
            self._depth_backlog.append(f)
        for f in list(self._depth_backlog):
            if f.get_frame_number() < number:
                self._depth_backlog.remove(f)
            elif f.get_frame_number() == number:
                self._depth_backlog.remove(f)
                return f
        return None

    @staticmethod
    def _to_frame(color, depth) -> Frame:
        rgb = np.asanyarray(color.get_data()).copy()  # frame memory returns to the SDK's pool
        depth_m = None
        if depth is not None:
            d = depth.as_depth_frame()
            depth_m = np.asanyarray(d.get_data()).astype(np.float32) * np.float32(d.get_units())
        return Frame(rgb=rgb, device_time_s=color.get_timestamp() / 1e3, seq=int(color.get_frame_number()),
                     host_time_s=time.time(), depth_m=depth_m)

    def close(self) -> None:
        if self.pipeline is not None:
            try:
                self.pipeline.stop()
            except RuntimeError:
                pass
            self.pipeline = None
        if self._queues:
            for sensor, _ in self._queues.values():
                for op in (sensor.stop, sensor.close):
                    try:
                        op()
                    except RuntimeError:
                        pass
            self._queues = None
