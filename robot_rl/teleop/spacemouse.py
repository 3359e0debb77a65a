"""3Dconnexion SpaceMouse over HID, parsed by pyspacemouse's own device specs and report code.

pyspacemouse knows the models (devices.toml: vendor/product ids, which report channel and bytes
carry each axis, which bit each button) and parses a report in `SpaceMouseDevice._process`.
We feed it raw reports: from hidapi (through easyhid, as pyspacemouse does) on a robot, or from a
recording in tests and replays. Two things we add around it:
  * drain every queued report each tick. The device sends one report per channel every ~8 ms
    while deflected; reading one per 100 ms tick (what `pyspacemouse.read()` does) serves ever
    older motion, seconds behind after a while.
  * check each report's length against the spec before parsing: pyspacemouse indexes button
    bytes unchecked (a short report raises IndexError) and would apply half an axis report.
Axes come out in pyspacemouse's ROS convention (x away from the person, y left, z up, rotations
about those), then the YAML `axes` map takes them into the robot base frame.
"""
from __future__ import annotations

import glob
import time
from dataclasses import dataclass, field

from robot_rl.teleop.device import DeviceError, DeviceLost, Shaping, TeleopDevice, merged_config

AXES = ("x", "y", "z", "roll", "pitch", "yaw")


def known_models() -> dict:
    import pyspacemouse

    return pyspacemouse.get_device_specs()


def all_button_names() -> set:
    return {n for spec in known_models().values() for n in spec.button_names}


class ReportParser:
    """One model's spec, with pyspacemouse's parser behind a length check."""

    def __init__(self, spec):
        import pyspacemouse

        # the ROS convention: the library's own remap from HID axes; LEGACY (its default) has
        # roll/pitch swapped and yaw flipped, which nobody should learn from
        self.spec = pyspacemouse.apply_axis_convention(spec, pyspacemouse.AxisConvention.ROS)
        self.dev = pyspacemouse.SpaceMouseDevice(info=self.spec, device=None)
        need: dict[int, int] = {}
        for a in self.spec.mappings.values():
            need[a.channel] = max(need.get(a.channel, 0), a.byte1 + 1, a.byte2 + 1)
        for b in self.spec.button_specs:
            need[b.channel] = max(need.get(b.channel, 0), b.byte + 1)
        self.need = need  # channel (report id) -> bytes a report on it must have
        self.size = max([64, *need.values()])

    def feed(self, data: bytes) -> str:
        """Parse one report into the state; '' if used, else why it was not (never raises)."""
        if not data:
            return "empty report"
        ch = data[0]
        if ch not in self.need:
            return ""  # other report ids (battery level on wireless models): not ours, harmless
        if len(data) < self.need[ch]:
            return (f"short report on channel {ch}: {len(data)} bytes, "
                    f"the {self.spec.name} spec needs {self.need[ch]}")
        self.dev._process(bytes(data))  # pyspacemouse's own parsing of the spec's bytes and bits
        return ""

    def rest(self) -> None:
        """Axes to zero (buttons stay: a held button does not repeat its report)."""
        for a in AXES:
            setattr(self.dev._state, a, 0.0)

    def axes(self) -> dict:
        s = self.dev._state
        return {a: float(getattr(s, a)) for a in AXES}

    def buttons(self) -> set:
        s = self.dev._state
        return {n for n, v in zip(self.spec.button_names, s.buttons) if v}

    def describe(self, data: bytes) -> str:
        err = self.feed(data)
        if err:
            return err
        ax = self.axes()
        return " ".join(f"{a}={ax[a]:+.2f}" for a in AXES) + f" buttons={sorted(self.buttons())}"


def _find_spec(model: str | None, vendor_id=None, product_id=None):
    models = known_models()
    if model is not None:
        if model not in models:
            raise DeviceError(f"unknown SpaceMouse model {model!r}; pyspacemouse knows {sorted(models)}")
        return models[model]
    for spec in models.values():
        if (spec.vendor_id, spec.product_id) == (vendor_id, product_id):
            return spec
    return None


def open_hid(model: str | None = None, path: str | None = None):
    """Find and open a SpaceMouse through hidapi -> (easyhid device, pyspacemouse spec).

    No device -> DeviceError naming the ids looked for and every HID device that is there."""
    try:
        from easyhid import Enumeration
        hid = Enumeration()
    except Exception as e:  # noqa: BLE001  cffi raises AttributeError/OSError without libhidapi
        raise DeviceError(f"hidapi is not usable ({e}); install libhidapi-hidraw0 (apt) and easyhid") from e
    models = known_models()
    if model and model not in models:
        raise DeviceError(f"unknown SpaceMouse model {model!r}; pyspacemouse knows {sorted(models)}")
    wanted = [models[model]] if model else list(models.values())
    found = hid.find()
    matches = []
    for d in found:
        if path is not None and d.path != path:
            continue
        for spec in wanted:
            if (d.vendor_id, d.product_id) == (spec.vendor_id, spec.product_id):
                matches.append((d, spec))
    if not matches:
        looked = ", ".join(f"{s.name} {s.vendor_id:04x}:{s.product_id:04x}" for s in wanted)
        there = ", ".join(
            f"{d.vendor_id:04x}:{d.product_id:04x} {d.product_string or '?'!r} at {d.path}" for d in found
        ) or "none"
        raw = ", ".join(sorted(glob.glob("/dev/hidraw*"))) or "none"
        raise DeviceError(
            "no SpaceMouse found"
            + (f" at {path}" if path else "")
            + f". Looked for (vendor:product): {looked}. HID devices seen by hidapi: {there}. "
            f"/dev/hidraw*: {raw}. Plugged in? Readable by this user (udev rule for "
            "3Dconnexion, see docs/teleop.md)? Held by spacenavd?"
        )
    # a device may show several HID interfaces; the 6-DoF one is Generic Desktop (usage page 1)
    # / Multi-axis Controller (usage 8). Opening another one reads nothing but zeros.
    matches.sort(key=lambda m: (m[0].usage_page, m[0].usage) != (1, 8))
    d, spec = matches[0]
    try:
        d.open()
    except Exception as e:  # noqa: BLE001
        raise DeviceError(
            f"{spec.name} found at {d.path} but could not be opened ({e}): permissions on "
            "/dev/hidraw* (udev rule, docs/teleop.md) or another program holds it"
        ) from e
    d.set_nonblocking(True)
    return d, spec


@dataclass
class SpaceMouseConfig:
    model: str | None = None    # a pyspacemouse model name; None = the first one plugged in
    path: str | None = None     # a /dev/hidraw* path, when several are plugged in
    replay: str | None = None   # a recording (.jsonl) to feed instead of hardware
    max_bad_reports: int = 50   # consecutive malformed reports before the device counts as lost
    stale_s: float = 0.5        # a deflected device repeats its report every ~8 ms; silence this
                                # long while deflected (wireless out of range) reads as rest
    deadband: float = 0.1
    max_lin_vel: float = 0.1
    max_ang_vel: float = 0.5
    axes: dict = field(default_factory=dict)
    buttons: dict = field(default_factory=dict)

    def shaping(self) -> Shaping:
        s = Shaping(axes=dict(self.axes), deadband=self.deadband, max_lin_vel=self.max_lin_vel,
                    max_ang_vel=self.max_ang_vel, buttons=dict(self.buttons))
        s.check(known_sources=set(AXES), known_buttons=all_button_names(), where="spacemouse")
        return s


class SpaceMouseDevice(TeleopDevice):
    kind = "spacemouse"

    def __init__(self, cfg: SpaceMouseConfig, source, spec, clock=time.monotonic):
        super().__init__(cfg.shaping(), clock)
        self.cfg = cfg
        self.source = source  # .read() -> list of reports; raises DeviceLost; .close()
        self.parser = ReportParser(spec)
        self.bad_in_a_row = 0
        self.bad_total = 0
        self.last_error = ""
        self.last_report = clock()

    @staticmethod
    def parser_for(spec) -> ReportParser:
        return ReportParser(spec)

    @classmethod
    def from_config(cls, cfg: dict | None, clock=time.monotonic) -> "SpaceMouseDevice":
        from robot_rl.configs import from_mapping

        c = from_mapping(SpaceMouseConfig, merged_config("spacemouse", cfg), "spacemouse")
        c.shaping()  # a typo in the YAML is named before any device is opened
        if c.replay:
            from robot_rl.teleop.record_device import ReplayFeed, read_recording

            head, records = read_recording(c.replay, "spacemouse")
            dev = head.get("device", {})
            spec = _find_spec(c.model or dev.get("model"), dev.get("vendor_id"), dev.get("product_id"))
            if spec is None:
                raise DeviceError(f"{c.replay}: recorded device {dev} is not a model pyspacemouse knows")
            return cls(c, ReplayReports(ReplayFeed(records, clock)), spec, clock)
        hid, spec = open_hid(c.model, c.path)
        return cls(c, HidReports(hid, ReportParser(spec).size), spec, clock)

    def _read(self):
        now = self.clock()
        reports = self.source.read()
        if reports:
            self.last_report = now
        elif now - self.last_report > self.cfg.stale_s:
            self.parser.rest()
        for data in reports:
            before = self.parser.buttons()
            err = self.parser.feed(data)
            self._taps |= self.parser.buttons() - before  # a press, even if released before the next poll
            if err:
                self.bad_in_a_row += 1
                self.bad_total += 1
                self.last_error = err
                if self.bad_in_a_row >= self.cfg.max_bad_reports:
                    raise DeviceLost(f"{self.bad_in_a_row} malformed reports in a row, last: {err}")
            else:
                self.bad_in_a_row = 0
        return self.parser.axes(), self.parser.buttons()

    def _release_source(self) -> None:
        try:
            self.source.close()
        except Exception:  # noqa: BLE001  closing a vanished device may fail; it is gone anyway
            pass


class HidReports:
    """Every report hidapi has queued, without blocking (see the module doc: drain, do not lag)."""

    def __init__(self, hid, size: int, max_per_poll: int = 1000):
        self.hid, self.size, self.max_per_poll = hid, size, max_per_poll

    def read(self) -> list[bytes]:
        out = []
        try:
            for _ in range(self.max_per_poll):
                data = self.hid.read(self.size)
                if not data:
                    break
                out.append(bytes(data))
        except Exception as e:  # noqa: BLE001  easyhid.HIDException: unplugged / read error
            raise DeviceLost(f"HID read failed: {e}") from e
        return out

    def close(self) -> None:
        self.hid.close()


class ReplayReports:
    def __init__(self, feed):
        self.feed = feed

    def read(self) -> list[bytes]:
        out = []
        for r in self.feed.due():
            try:
                out.append(bytes.fromhex(r["report"]))
            except (KeyError, ValueError) as e:
                raise ValueError(f"bad SpaceMouse record at t={r['t']}: {r}") from e
        return out

    def close(self) -> None:
        pass
