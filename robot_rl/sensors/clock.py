"""Device time -> host (ROS) time, and the frame statistics the camera node reports.

A camera stamps frames with its own clock (RealSense: the sensor's hardware clock in ms;
a video file: the media time). What downstream needs is the host's clock at capture. Each
frame gives one sample of offset = host_receive - device_time = true offset + transport delay
+ jitter; the delay and jitter are never negative, so the smallest sample over a window is the
best estimate of (true offset + minimal transport delay). The window slides, so a slow drift
between the two clocks is followed; a jump (device reset, a looping file) restarts the window.
The minimal transport delay (USB transfer, decoding) cannot be seen from the host and stays in
the stamps: they are a constant few ms late, never jittery.
"""
from __future__ import annotations

from collections import deque

import numpy as np


class DeviceClock:
    def __init__(self, window: int = 100, jump_s: float = 1.0):
        self.window = int(window)
        self.jump_s = float(jump_s)  # an offset sample this far from the estimate = clock jump
        self._samples: deque = deque(maxlen=self.window)
        self._last_out: float | None = None
        self.resets = 0

    @property
    def offset(self) -> float | None:
        return min(self._samples) if self._samples else None

    def to_host(self, device_time_s: float, host_recv_s: float) -> float:
        """Host time of a frame's capture; stamps out are strictly increasing."""
        sample = host_recv_s - device_time_s
        if self._samples and abs(sample - min(self._samples)) > self.jump_s:
            self._samples.clear()
            self.resets += 1
        self._samples.append(sample)
        t = device_time_s + min(self._samples)
        # Never later than the frame's arrival, never earlier than the previous stamp (a new,
        # smaller offset sample may pull the estimate back by the jitter it removes).
        t = min(t, host_recv_s)
        if self._last_out is not None and t <= self._last_out:
            t = self._last_out + 1e-6
        self._last_out = t
        return t


class FrameStats:
    """fps, dropped frames and latency over a sliding window, for /diagnostics.

    Drops are counted from gaps in the device's sequence numbers; a device whose counter does
    not advance (or restarts) is counted from gaps in its timestamps, against the nominal
    period: a gap of more than 1.5 periods is round(gap / period) - 1 lost frames.
    """

    def __init__(self, nominal_fps: float = 0.0, window_s: float = 2.0):
        self.period = 1.0 / nominal_fps if nominal_fps and nominal_fps > 0 else 0.0
        self.window_s = window_s
        self.frames = 0
        self.drops = 0
        self._times: deque = deque()  # host receive times in the window
        self._lat: deque = deque()  # (host time, latency s)
        self._last_seq: int | None = None
        self._last_dev: float | None = None

    def add(self, seq: int, device_time_s: float, host_time_s: float, latency_s: float | None = None) -> int:
        """Record one frame; returns how many frames were lost just before it."""
        lost = 0
        if self._last_seq is not None and seq > self._last_seq:
            lost = seq - self._last_seq - 1
        elif self._last_dev is not None and self.period > 0:
            gap = device_time_s - self._last_dev
            if gap > 1.5 * self.period:
                lost = int(round(gap / self.period)) - 1
        self._last_seq, self._last_dev = seq, device_time_s
        self.frames += 1
        self.drops += lost
        self._times.append(host_time_s)
        if latency_s is not None:
            self._lat.append((host_time_s, latency_s))
        cut = host_time_s - self.window_s
        while self._times and self._times[0] < cut:
            self._times.popleft()
        while self._lat and self._lat[0][0] < cut:
            self._lat.popleft()
        return lost

    def fps(self, now_s: float | None = None) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def summary(self) -> dict:
        lat = np.array([v for _, v in self._lat]) if self._lat else np.zeros(0)
        out = {"frames": self.frames, "fps": round(self.fps(), 2), "drops": self.drops}
        if lat.size:
            out.update(latency_ms_p50=round(float(np.percentile(lat, 50)) * 1e3, 3),
                       latency_ms_max=round(float(lat.max()) * 1e3, 3))
        return out
