"""Gamepads through Linux evdev (/dev/input/event*): Xbox pads (xpad), 8BitDo in X-input mode,
DualShock/DualSense (hid-playstation), anything the kernel exposes as a gamepad.

Events are what the kernel sends: EV_ABS (sticks, triggers, d-pad hat) normalised with the axis's
own absinfo (min/max from the driver: -32768..32767 on xpad sticks, 0..255 on some 8BitDo modes,
0..1023 on triggers), EV_KEY (buttons: 1 down, 2 autorepeat, 0 up), EV_SYN. SYN_DROPPED means the
kernel's buffer overflowed and events were lost: the state is unknown until re-read, so we
re-read it from the device (or zero it on a replay) instead of trusting stale values.
Names come from evdev's ecodes tables; a button has aliases (BTN_A = BTN_SOUTH = BTN_GAMEPAD)
and any of them may be used in the YAML.
"""
from __future__ import annotations

import glob
import time
from dataclasses import dataclass, field

from robot_rl.teleop.device import DeviceError, DeviceLost, Shaping, TeleopDevice, merged_config


def _ecodes():
    from evdev import ecodes

    return ecodes


def _names(table, code) -> tuple:
    n = table.get(code)
    if n is None:
        return ()
    return tuple(n) if isinstance(n, (list, tuple)) else (n,)


def event_names(type_: int, code: int) -> tuple[str, str | int]:
    """(type, code) numbers -> names for a recording; an unnamed code stays a number."""
    e = _ecodes()
    typ = e.EV.get(type_, type_)
    table = {e.EV_ABS: e.ABS, e.EV_KEY: e.keys, e.EV_SYN: e.SYN, e.EV_MSC: e.MSC}.get(type_, {})
    names = _names(table, code)
    return typ, (names[0] if names else code)


def event_numbers(typ, code) -> tuple[int, int]:
    """Names (or numbers) from a recording -> (type, code); an unknown name is a clear error."""
    e = _ecodes()
    t = typ if isinstance(typ, int) else e.ecodes.get(typ)
    c = code if isinstance(code, int) else e.ecodes.get(code)
    if t is None or c is None:
        raise ValueError(f"unknown evdev event {typ!r} {code!r} (not in evdev.ecodes)")
    return int(t), int(c)


def absinfo_table(dev) -> dict:
    """The device's axes' calibration, by name: what a recording header stores."""
    e = _ecodes()
    out = {}
    for code, info in dev.capabilities().get(e.EV_ABS, []):
        for n in _names(e.ABS, code)[:1]:
            out[n] = [info.value, info.min, info.max, info.fuzz, info.flat, info.resolution]
    return out


def _is_gamepad(dev) -> bool:
    e = _ecodes()
    caps = dev.capabilities()
    keys = set(caps.get(e.EV_KEY, []))
    return bool(caps.get(e.EV_ABS)) and bool(keys & {e.BTN_GAMEPAD, e.BTN_JOYSTICK, e.BTN_SOUTH})


def open_gamepad(path: str | None = None, name_contains: str | None = None):
    """-> an evdev.InputDevice; none -> DeviceError naming the candidates and what they are."""
    try:
        import evdev
    except ImportError as e:
        raise DeviceError(f"the gamepad driver needs python-evdev (Linux): {e}") from e
    paths = [path] if path else sorted(evdev.list_devices())
    seen, denied = [], []
    for p in paths:
        try:
            dev = evdev.InputDevice(p)
        except PermissionError:
            denied.append(p)
            continue
        except OSError as e:
            seen.append(f"{p} ({e.strerror})")
            continue
        ok = _is_gamepad(dev) and (name_contains is None or name_contains.lower() in dev.name.lower())
        if ok:
            return dev
        seen.append(f"{p} {dev.name!r}" + ("" if _is_gamepad(dev) else " (not a gamepad)"))
        dev.close()
    nodes = sorted(glob.glob("/dev/input/event*"))
    raise DeviceError(
        "no gamepad found"
        + (f" at {path}" if path else "")
        + (f" with {name_contains!r} in its name" if name_contains else "")
        + ". Looked for an evdev device with EV_ABS axes and BTN_GAMEPAD/BTN_SOUTH buttons among "
        + (", ".join(paths) if paths else "no readable /dev/input/event* nodes")
        + f". Seen: {', '.join(seen) or 'none'}. Permission denied: {', '.join(denied) or 'none'} "
        f"(add the user to the 'input' group). /dev/input/event*: {', '.join(nodes) or 'none'}."
    )


@dataclass
class GamepadConfig:
    path: str | None = None          # /dev/input/eventN; None = the first gamepad found
    name_contains: str | None = None  # pick by name ("Xbox", "8BitDo") when several are plugged
    replay: str | None = None
    unipolar: tuple = ("ABS_Z", "ABS_RZ", "ABS_GAS", "ABS_BRAKE")  # triggers: rest at min -> 0..1
    deadband: float = 0.12
    max_lin_vel: float = 0.1
    max_ang_vel: float = 0.5
    axes: dict = field(default_factory=dict)
    buttons: dict = field(default_factory=dict)

    def shaping(self) -> Shaping:
        e = _ecodes()
        s = Shaping(axes=dict(self.axes), deadband=self.deadband, max_lin_vel=self.max_lin_vel,
                    max_ang_vel=self.max_ang_vel, buttons=dict(self.buttons))
        s.check(known_sources={n for c in e.ABS for n in _names(e.ABS, c)},
                known_buttons={n for c in e.keys for n in _names(e.keys, c)}, where="gamepad")
        return s


class GamepadDevice(TeleopDevice):
    kind = "gamepad"

    def __init__(self, cfg: GamepadConfig, source, absinfo: dict, clock=time.monotonic):
        """absinfo: ABS name -> (value, min, max, ...) as the device reports it."""
        super().__init__(cfg.shaping(), clock)
        self.cfg = cfg
        self.source = source  # .events() -> InputEvents; raises DeviceLost; .resync(); .close()
        e = _ecodes()
        self.e = e
        self.absinfo = {}
        for name, info in absinfo.items():
            _, code = event_numbers("EV_ABS", name)
            self.absinfo[code] = tuple(info)
        self.axes: dict[str, float] = {}
        self.down: set[str] = set()
        self.unknown_events = 0
        for code, info in self.absinfo.items():
            self._abs(code, info[0])

    @classmethod
    def from_config(cls, cfg: dict | None, clock=time.monotonic) -> "GamepadDevice":
        from robot_rl.configs import from_mapping

        c = from_mapping(GamepadConfig, merged_config("gamepad", cfg), "gamepad")
        c.shaping()  # a typo in the YAML is named before any device is opened
        if c.replay:
            from robot_rl.teleop.record_device import ReplayFeed, read_recording

            head, records = read_recording(c.replay, "gamepad")
            return cls(c, ReplayEvents(ReplayFeed(records, clock)), head["device"].get("absinfo", {}), clock)
        dev = open_gamepad(c.path, c.name_contains)
        return cls(c, EvdevEvents(dev), absinfo_table(dev), clock)

    def _abs(self, code: int, value: int) -> None:
        names = _names(self.e.ABS, code)
        info = self.absinfo.get(code)
        if not names or info is None:
            self.unknown_events += 1  # an axis with no calibration cannot be normalised: skip it
            return
        lo, hi = info[1], info[2]
        if hi <= lo:
            return
        if any(n in self.cfg.unipolar for n in names):
            v = (value - lo) / (hi - lo)            # trigger: released = 0, full = 1
        else:
            v = (2.0 * value - (lo + hi)) / (hi - lo)  # stick/hat: centre = 0, ends = -1/+1
        for n in names:
            self.axes[n] = max(-1.0, min(1.0, v))

    def _handle(self, ev) -> None:
        e = self.e
        if ev.type == e.EV_ABS:
            self._abs(ev.code, ev.value)
        elif ev.type == e.EV_KEY:
            names = _names(e.keys, ev.code)
            if not names:
                self.unknown_events += 1
                return
            if ev.value:  # 1 press, 2 autorepeat: both mean down
                self.down.update(names)
                if ev.value == 1:
                    self._taps.update(names)  # a press, even if released before the next poll
            else:
                self.down.difference_update(names)
        elif ev.type == e.EV_SYN and ev.code == e.SYN_DROPPED:
            self._resync()
        # EV_SYN reports, EV_MSC scan codes, EV_FF: nothing to do

    def _resync(self) -> None:
        state = self.source.resync(list(self.absinfo))
        self.axes.clear()
        self.down.clear()
        if state is None:
            return  # unknown: zero is the safe reading
        absvals, keys = state
        for code, value in absvals.items():
            self._abs(code, value)
        for code in keys:
            self.down.update(_names(self.e.keys, code))

    def _read(self):
        for ev in self.source.events():
            self._handle(ev)
        return dict(self.axes), set(self.down)

    def _release_source(self) -> None:
        try:
            self.source.close()
        except Exception:  # noqa: BLE001
            pass


class EvdevEvents:
    """Events from an evdev.InputDevice, drained each poll; OSError (ENODEV on unplug) = lost."""

    def __init__(self, dev):
        self.dev = dev

    def events(self) -> list:
        out = []
        try:
            ev = self.dev.read_one()
            while ev is not None:
                out.append(ev)
                ev = self.dev.read_one()
        except OSError as e:
            raise DeviceLost(f"{self.dev.path}: {e.strerror or e}") from e
        return out

    def resync(self, abs_codes):
        """The device's current state by ioctl; None (read as all-zero) if it cannot be had: a
        device that is really gone fails its next read anyway and is reported lost there."""
        try:
            return {code: self.dev.absinfo(code).value for code in abs_codes}, self.dev.active_keys()
        except OSError:
            return None

    def close(self) -> None:
        self.dev.close()


class ReplayEvents:
    def __init__(self, feed):
        self.feed = feed

    def events(self) -> list:
        from evdev import InputEvent

        out = []
        for r in self.feed.due():
            t, c = event_numbers(r.get("type"), r.get("code"))
            sec = int(r["t"])
            out.append(InputEvent(sec, int((r["t"] - sec) * 1e6), t, c, int(r["value"])))
        return out

    def resync(self, abs_codes):
        return None  # a recording has no device to ask: zero is the safe reading

    def close(self) -> None:
        pass
