"""The one small interface every human teleop device sits behind, and what they share.

A device is polled once per control tick and answers a `DeviceState`:
  twist      float64 (6,)  vx vy vz (m/s) wx wy wz (rad/s) in the robot base frame, after the
                           device's axis mapping, deadband and speed scaling
  gripper    closing command in [-1, 1] (+1 close, -1 open, as in ActionSpec's grip) latched
             from the last gripper button/key, or None until the person has asked for one
  held       roles whose button/key is down now   (takeover, release, gripper_close, ...)
  pressed    roles whose button/key went down since the previous poll (edge, once per press)
  connected  False once the device is gone (read error, unplugged, recording ended); `reason`
             says why. A gone device answers a zero twist and no held roles: never a stale push.

Roles are the names the operator logic understands; each device's YAML maps its own buttons or
keys onto them (config/teleop_devices.yaml). Plain code: no ROS here, the teleop node wraps it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

TWIST_AXES = ("vx", "vy", "vz", "wx", "wy", "wz")
ROLES = (
    "takeover",       # held: the person drives (a dead-man button); pressed: take over now
    "release",        # pressed: hand control back to the policy
    "gripper_close",
    "gripper_open",
    "gripper_toggle",
    "success",        # operator keys: the episode outcome, and a reset request
    "failure",
    "reset",
    "estop",
)
OPERATOR_EVENTS = ("success", "failure", "reset", "estop")


class DeviceError(RuntimeError):
    """A device could not be found or opened; the message names what was looked for and found."""


class DeviceLost(RuntimeError):
    """Raised by a device source when the device stops answering (unplugged, read error)."""


@dataclass
class DeviceState:
    twist: np.ndarray = field(default_factory=lambda: np.zeros(6))
    gripper: float | None = None
    held: frozenset = frozenset()
    pressed: frozenset = frozenset()
    connected: bool = True
    reason: str = ""
    # the twist as fractions of the device's full deflection in [-1, 1] after deadband: what the
    # takeover threshold compares (a speed threshold would change meaning with max speeds)
    motion: np.ndarray = field(default_factory=lambda: np.zeros(6))


@dataclass
class Shaping:
    """Axis mapping, deadband and scaling shared by every device (one section per device)."""

    # output axis -> list of "[-]source" terms summed (a "-" flips the sign); a source is the
    # device's own axis name (SpaceMouse: x y z roll pitch yaw; gamepad: ABS_* codes; keyboard:
    # the axis named in its bindings). Axes left out stay zero.
    axes: dict = field(default_factory=dict)
    deadband: float = 0.05      # |deflection| below this reads as zero (fraction of full scale)
    max_lin_vel: float = 0.1    # m/s at full deflection
    max_ang_vel: float = 0.5    # rad/s at full deflection
    # role -> list of device button/key names; a role may have several, a name several roles
    buttons: dict = field(default_factory=dict)

    def check(self, known_sources=None, known_buttons=None, where: str = "device") -> None:
        """Name the bad key instead of silently ignoring a typo in the YAML."""
        for out, terms in self.axes.items():
            if out not in TWIST_AXES:
                raise ValueError(f"{where}.axes: unknown output axis {out!r}; valid: {list(TWIST_AXES)}")
            for src in _terms(terms):
                name = src.lstrip("+-")
                if known_sources is not None and name not in known_sources:
                    raise ValueError(
                        f"{where}.axes.{out}: unknown source {name!r}; valid: {sorted(known_sources)}"
                    )
        for role, names in self.buttons.items():
            if role not in ROLES:
                raise ValueError(f"{where}.buttons: unknown role {role!r}; valid: {list(ROLES)}")
            for n in _terms(names):
                if known_buttons is not None and n not in known_buttons:
                    raise ValueError(
                        f"{where}.buttons.{role}: unknown button {n!r}; valid: {sorted(known_buttons)}"
                    )
        if not 0.0 <= self.deadband < 1.0:
            raise ValueError(f"{where}.deadband must be in [0, 1), got {self.deadband}")

    def motion(self, raw: dict) -> np.ndarray:
        """Device axes (fractions of full deflection) -> 6 output fractions after deadband.

        The deadband is rescaled (|v| - db) / (1 - db) so the output starts at zero at the edge
        of the band instead of jumping to db: small pushes give small, smooth speeds."""
        out = np.zeros(6)
        for i, ax in enumerate(TWIST_AXES):
            v = 0.0
            for term in _terms(self.axes.get(ax, ())):
                sign = -1.0 if term.startswith("-") else 1.0
                v += sign * float(raw.get(term.lstrip("+-"), 0.0))
            if not np.isfinite(v):
                v = 0.0  # a corrupt reading must never become a command
            v = float(np.clip(v, -1.0, 1.0))
            mag = max(abs(v) - self.deadband, 0.0) / (1.0 - self.deadband)
            out[i] = np.copysign(mag, v)
        return out

    def twist(self, motion: np.ndarray) -> np.ndarray:
        scale = np.array([self.max_lin_vel] * 3 + [self.max_ang_vel] * 3)
        return motion * scale

    def roles(self, names) -> frozenset:
        """Device button/key names down now -> the roles they stand for."""
        names = set(names)
        return frozenset(r for r, ns in self.buttons.items() if names.intersection(_terms(ns)))


def _terms(v) -> tuple:
    if v is None:
        return ()
    if isinstance(v, str):
        return tuple(v.split())
    return tuple(v)


class GripperLatch:
    """Buttons -> a latched gripper command: the last close/open/toggle press wins."""

    def __init__(self) -> None:
        self.value: float | None = None

    def update(self, pressed: frozenset) -> float | None:
        if "gripper_toggle" in pressed:
            self.value = -1.0 if (self.value or -1.0) > 0 else 1.0
        if "gripper_close" in pressed:
            self.value = 1.0
        if "gripper_open" in pressed:
            self.value = -1.0
        return self.value


class TeleopDevice:
    """Base class: subclasses supply `_read()` -> (axes dict, names held set) or raise DeviceLost.

    The base turns that into a DeviceState: shaping, role mapping, press edges, gripper latch,
    and a safe state once the device is gone (which it never leaves: reopening is a restart)."""

    kind = "device"

    def __init__(self, shaping: Shaping, clock=time.monotonic):
        self.shaping = shaping
        self.clock = clock
        self._held_prev: frozenset = frozenset()
        self._grip = GripperLatch()
        self._lost: str = ""
        # names that went down since the last poll, from the device's own events: a tap shorter
        # than a control period (down and up between two polls) never shows in the held state
        self._taps: set = set()

    def _read(self) -> tuple[dict, set]:
        raise NotImplementedError

    def poll(self) -> DeviceState:
        if self._lost:
            return DeviceState(gripper=self._grip.value, connected=False, reason=self._lost)
        try:
            axes, names = self._read()
        except DeviceLost as e:
            self._lost = f"{self.kind} lost: {e}"
            self._release_source()
            return DeviceState(gripper=self._grip.value, connected=False, reason=self._lost)
        held = self.shaping.roles(names)
        taps, self._taps = self._taps, set()
        pressed = (held - self._held_prev) | self.shaping.roles(taps)
        self._held_prev = held
        motion = self.shaping.motion(axes)
        return DeviceState(
            twist=self.shaping.twist(motion),
            gripper=self._grip.update(pressed),
            held=held,
            pressed=pressed,
            connected=True,
            motion=motion,
        )

    def _release_source(self) -> None:
        """Close the OS handle of a lost device (subclasses); errors here are irrelevant."""

    def close(self) -> None:
        self._release_source()


class CombinedDevice:
    """Several devices as one: the first is the motion device (a SpaceMouse, a pad), the others
    add buttons/keys (a keyboard in the node's terminal for success/failure/reset). Motion comes
    from whichever device moves most; roles are the union; any device lost -> not connected."""

    def __init__(self, devices):
        if not devices:
            raise ValueError("CombinedDevice needs at least one device")
        self.devices = list(devices)

    def poll(self) -> DeviceState:
        states = [d.poll() for d in self.devices]
        lost = [s.reason for s in states if not s.connected]
        best = max(states, key=lambda s: float(np.max(np.abs(s.motion))) if s.connected else -1.0)
        grips = [s.gripper for s in states if s.gripper is not None]
        return DeviceState(
            twist=best.twist if not lost else np.zeros(6),
            motion=best.motion if not lost else np.zeros(6),
            gripper=_last_commanded(states, grips),
            held=frozenset().union(*(s.held for s in states)),
            pressed=frozenset().union(*(s.pressed for s in states)),
            connected=not lost,
            reason="; ".join(lost),
        )

    def close(self) -> None:
        for d in self.devices:
            d.close()


def _last_commanded(states, grips):
    # a gripper press on any device this tick wins; otherwise keep the first latched value
    for s in states:
        if s.pressed & {"gripper_close", "gripper_open", "gripper_toggle"}:
            return s.gripper
    return grips[0] if grips else None


def make_device(driver: str, cfg: dict | None = None, clock=time.monotonic):
    """driver: spacemouse | gamepad | keyboard, or several joined by '+' (e.g.
    'spacemouse+keyboard': motion from the SpaceMouse, operator keys from the terminal).
    cfg: the driver's section of config/teleop_devices.yaml, merged over its defaults; with
    '+', a dict keyed by driver name. `replay: path.jsonl` in a section feeds a recording
    through the same parsing code instead of opening hardware."""
    from robot_rl.teleop.gamepad import GamepadDevice
    from robot_rl.teleop.keyboard import KeyboardDevice
    from robot_rl.teleop.spacemouse import SpaceMouseDevice

    cfg = dict(cfg or {})
    drivers = {"spacemouse": SpaceMouseDevice, "gamepad": GamepadDevice, "keyboard": KeyboardDevice}
    names = driver.split("+")
    for n in names:
        if n not in drivers:
            raise ValueError(f"unknown teleop driver {n!r}; valid: {sorted(drivers)} (or joined by '+')")
    if len(names) == 1:
        return drivers[driver].from_config(cfg, clock=clock)
    devices = []
    try:
        for n in names:
            devices.append(drivers[n].from_config(cfg.get(n), clock=clock))
    except Exception:
        for d in devices:  # do not leave a terminal in cbreak mode when the next one fails
            d.close()
        raise
    return CombinedDevice(devices)


def load_defaults(driver: str) -> dict:
    """The shipped per-device defaults (config/teleop_devices.yaml), one driver's section."""
    import yaml

    from robot_rl.paths import share_file

    with open(share_file("config", "teleop_devices.yaml")) as f:
        return dict((yaml.safe_load(f) or {}).get(driver) or {})


def merged_config(driver: str, cfg: dict | None) -> dict:
    """A lab's section over the shipped defaults; `axes` and `buttons` merge per entry, so
    overriding one role keeps the others (map a role to [] to unbind it)."""
    out = load_defaults(driver)
    for k, v in dict(cfg or {}).items():
        if k in ("axes", "buttons") and isinstance(v, dict):
            out[k] = {**dict(out.get(k) or {}), **v}
        else:
            out[k] = v
    return out
