"""The one interface every camera driver has: open() -> StreamInfo, read() -> Frame, close().

A driver knows nothing about ROS: it hands out RGB arrays with the device's own timestamp and
sequence number; nodes/camera.py maps the device time onto ROS time (clock.DeviceClock) and
publishes. Errors a person can fix (no device, wrong serial, unopenable source) are
CameraError with a message that says what was looked for and what was found.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class CameraError(RuntimeError):
    """A camera that cannot be opened or stopped delivering; the message is for the operator."""


class EndOfStream(CameraError):
    """A finite source (video file, recording) has no more frames."""


@dataclass
class Frame:
    rgb: np.ndarray  # uint8 (H, W, 3)
    device_time_s: float  # the device's own clock (or the host's when the device has none)
    seq: int  # the device's frame counter; gaps mean dropped frames
    host_time_s: float = 0.0  # host clock when the frame was received (set by the driver)
    depth_m: np.ndarray | None = None  # float32 (H, W) metres, aligned to rgb; 0 = no data


@dataclass
class StreamInfo:
    width: int
    height: int
    fps: float
    K: np.ndarray | None = None  # 3x3 from the device itself, None when it does not know
    D: tuple = (0.0, 0.0, 0.0, 0.0, 0.0)
    distortion_model: str = "plumb_bob"
    device: str = ""  # what was opened, for the log ("RealSense D435 serial 123", "video.avi")


class Camera:
    """Base class; drivers override open/read/close."""

    def open(self) -> StreamInfo:
        raise NotImplementedError

    def read(self, timeout_s: float = 1.0) -> Frame:
        """The next frame; blocks at most timeout_s (CameraError on timeout, EndOfStream at the
        end of a finite source)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


def open_camera(driver: str, **kwargs) -> Camera:
    """A driver by name (the camera node's `driver` parameter); the camera is not opened yet."""
    if driver == "opencv":
        from robot_rl.sensors.opencv_camera import OpenCVCamera

        return OpenCVCamera(**kwargs)
    if driver == "realsense":
        from robot_rl.sensors.realsense import RealSenseCamera

        return RealSenseCamera(**kwargs)
    raise CameraError(f"unknown camera driver {driver!r}; expected 'realsense' or 'opencv'")
