"""Any OpenCV VideoCapture source: a device index (USB/UVC camera), a video file, a URL.

Frames come out RGB (OpenCV decodes BGR). Timestamps: a file's own media time (frame index /
file fps), a live device's buffer timestamp where the backend gives one (V4L2 does), else the
host clock at grab. A file is played at its own frame rate (as a camera would deliver it),
optionally looping with time running on, so it can stand in for a live camera.
"""
from __future__ import annotations

import os
import time

import numpy as np

from robot_rl.sensors.base import Camera, CameraError, EndOfStream, Frame, StreamInfo


def _parse_source(source):
    """"0" / 0 -> device index 0; anything else is a path or URL for VideoCapture."""
    if isinstance(source, int):
        return source
    s = str(source).strip()
    if not s:
        raise CameraError("the opencv driver needs a `source`: a device index, a video file or a URL")
    return int(s) if s.isdigit() else s


class OpenCVCamera(Camera):
    def __init__(self, source="0", width: int = 0, height: int = 0, fps: float = 0.0,
                 loop: bool = False, realtime: bool = True, **_ignored):
        self.source = _parse_source(source)
        self.width, self.height, self.fps = int(width or 0), int(height or 0), float(fps or 0.0)
        self.loop, self.realtime = bool(loop), bool(realtime)
        self.is_file = isinstance(self.source, str) and os.path.exists(self.source)
        self._cap = None
        self._seq = 0
        self._file_frames = 0
        self._t0 = 0.0  # host monotonic time of frame 0 (file pacing)
        self._last_dev = -1.0

    def open(self) -> StreamInfo:
        import cv2

        if isinstance(self.source, str) and "://" not in self.source and not self.is_file:
            raise CameraError(f"opencv source {self.source!r}: no such file (and not a device index or URL)")
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            what = f"device index {self.source}" if isinstance(self.source, int) else repr(self.source)
            raise CameraError(f"OpenCV cannot open {what}: no such device, or no backend can decode it")
        if not self.is_file:  # a live device takes a requested mode; a file has its own
            if self.width and self.height:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        ok, bgr = cap.read()  # the true size is what the first frame has
        if not ok or bgr is None:
            cap.release()
            raise CameraError(f"OpenCV opened {self.source!r} but it delivers no frames")
        file_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.nominal_fps = (self.fps or file_fps or 30.0) if self.is_file else (file_fps or self.fps or 30.0)
        self._cap = cap
        self._pending = bgr
        self._t0 = time.monotonic()
        h, w = bgr.shape[:2]
        # A source that ignores the requested size is resampled to it in read(); the node
        # scales K to the published size, so image and camera_info always agree.
        return StreamInfo(width=self.width or w, height=self.height or h, fps=self.nominal_fps,
                          device=f"OpenCV {self.source!r}")

    def read(self, timeout_s: float = 1.0) -> Frame:
        import cv2

        if self._cap is None:
            raise CameraError("camera is not open")
        if self._pending is not None:
            bgr, self._pending = self._pending, None
        else:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                if not self.is_file:
                    raise CameraError(f"OpenCV source {self.source!r} stopped delivering frames")
                if not self.loop or self._seq == 0:
                    raise EndOfStream(f"end of {self.source!r} after {self._seq} frames")
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._cap.read()
                if not ok:
                    raise EndOfStream(f"cannot rewind {self.source!r}")
        seq = self._seq
        self._seq += 1
        if self.is_file:
            device_t = seq / self.nominal_fps  # media time; keeps running when the file loops
            if self.realtime:
                wait = self._t0 + device_t - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        else:
            ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            device_t = ms / 1e3 if ms and ms / 1e3 > self._last_dev else time.time()
        self._last_dev = device_t
        if self.width and self.height and bgr.shape[:2] != (self.height, self.width):
            bgr = cv2.resize(bgr, (self.width, self.height), interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        return Frame(rgb=rgb, device_time_s=device_t, seq=seq, host_time_s=time.time())

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
