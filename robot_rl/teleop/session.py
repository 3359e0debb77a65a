"""A person's device as the teleop node's control tick: device -> Operator -> what to publish.

The node (robot_rl/nodes/teleop.py) calls `tick()` once per control period on the wall clock and
turns the answer into messages; everything that is not message conversion is here, ROS-free:

  * where device settings come from: ONE source per setting, the devices file. The shipped
    config/teleop_devices.yaml holds every default; a lab points the node's `devices_file`
    parameter at its own YAML with the same sections (spacemouse, gamepad, keyboard, operator),
    which is merged over the shipped one per key (axes/buttons per entry). Nothing about devices
    is a ROS parameter: ROS parameters cannot hold an empty list ([] unbinds a role) and two
    places for one setting drift apart.
  * the gripper during a takeover. A device latches its own gripper command, which knows
    nothing of the robot: taking over a robot that holds a cube must not open the gripper
    because the device last said "open". So while released the command follows what the actor
    last sent (command/gripper), a takeover starts from it, and only a gripper press during the
    takeover changes it.
  * a device that fails in a way its driver did not foresee (a bad record in a replay, a bug)
    counts as lost: released, reported, never a crash of the node.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_rl.teleop.device import DeviceState, load_defaults, make_device
from robot_rl.teleop.operator import Operator, OperatorConfig

SECTIONS = ("spacemouse", "gamepad", "keyboard", "operator")
GRIP_ROLES = frozenset({"gripper_close", "gripper_open", "gripper_toggle"})
OPEN = -1.0  # the gripper command before the actor has said anything: ActionSpec's open


def load_devices_file(path: str | None) -> dict:
    """A lab's devices file -> its sections ({} for "" / None: the shipped defaults only).

    A relative `replay:` path is read relative to the file, so a config and its recordings
    move together."""
    if not path:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"teleop devices file {p} does not exist (parameter devices_file)")
    with open(p) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected sections {list(SECTIONS)}, got a {type(data).__name__}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{p}: unknown sections {unknown}; valid: {list(SECTIONS)}")
    out = {}
    for name, section in data.items():
        section = dict(section or {})
        if section.get("replay") and not Path(section["replay"]).is_absolute():
            section["replay"] = str((p.parent / section["replay"]).resolve())
        out[name] = section
    return out


def device_config(driver: str, sections: dict) -> dict:
    """What make_device takes: the driver's section, or one per driver for 'a+b'."""
    names = driver.split("+")
    if len(names) == 1:
        return dict(sections.get(driver) or {})
    return {n: dict(sections.get(n) or {}) for n in names}


def operator_config(sections: dict) -> OperatorConfig:
    return OperatorConfig.from_dict({**load_defaults("operator"), **dict(sections.get("operator") or {})})


@dataclass
class TeleopTick:
    engaged: bool
    changed: bool                  # engaged differs from the previous tick
    twist: np.ndarray              # m/s, rad/s, base frame; zeros while released
    gripper: float                 # [-1, 1], +1 closes: the person's while engaged, else the actor's last
    events: list = field(default_factory=list)  # teleop/event strings, in order
    connected: bool = True
    lost_now: bool = False         # the tick the device went away
    reason: str = ""


class DeviceTeleop:
    def __init__(self, device, driver: str, cfg: OperatorConfig | None = None, clock=time.monotonic):
        self.device = device
        self.driver = driver
        self.operator = Operator(cfg)
        self.clock = clock
        self.robot_grip: float | None = None  # the actor's last gripper command
        self.grip = OPEN
        self.engaged = False
        self.connected = True
        self.reason = ""
        self.counts: dict[str, int] = {}
        self.last_event = ""

    @classmethod
    def open(cls, driver: str, devices_file: str | None = None, clock=time.monotonic) -> "DeviceTeleop":
        """Open the device(s) named by `driver`; DeviceError (naming what was looked for) if none."""
        sections = load_devices_file(devices_file)
        cfg = operator_config(sections)  # a typo here is named before a device is opened
        return cls(make_device(driver, device_config(driver, sections), clock), driver, cfg, clock)

    def robot_gripper(self, grip: float) -> None:
        """The actor's gripper command as it was sent (command/gripper)."""
        if np.isfinite(grip):
            self.robot_grip = float(np.clip(grip, -1.0, 1.0))

    def tick(self) -> TeleopTick:
        now = self.clock()
        if not self.connected:  # lost is final (operator.py): the handle is closed, not polled
            state = DeviceState(connected=False, reason=self.reason)
        else:
            try:
                state = self.device.poll()
            except Exception as e:  # noqa: BLE001  whatever broke, the person can no longer drive
                state = DeviceState(connected=False, reason=f"{self.driver} failed: {type(e).__name__}: {e}")
                self._close_quietly()
        out = self.operator.update(state, now)
        was = self.engaged
        self.engaged = out.engaged
        if not out.engaged and self.robot_grip is not None:
            self.grip = self.robot_grip  # released: follow the robot, so a takeover starts there
        elif out.engaged:
            self._apply_gripper_presses(state.pressed)
        for e in out.events:
            self.counts[e] = self.counts.get(e, 0) + 1
            self.last_event = e
        if out.lost_now:
            self.connected, self.reason = False, out.reason
        return TeleopTick(
            engaged=out.engaged, changed=out.engaged != was,
            twist=np.asarray(out.twist, np.float64) if out.engaged else np.zeros(6),
            gripper=float(self.grip), events=list(out.events), connected=self.connected,
            lost_now=out.lost_now, reason=out.reason if not state.connected else "",
        )

    def _apply_gripper_presses(self, pressed) -> None:
        # GripperLatch's order (toggle, then close, then open) but relative to the robot's state
        if "gripper_toggle" in pressed:
            self.grip = OPEN if self.grip > 0 else 1.0
        if "gripper_close" in pressed:
            self.grip = 1.0
        if "gripper_open" in pressed:
            self.grip = OPEN

    def diagnostics(self) -> tuple[int, str, dict]:
        """-> (level 0 OK / 2 ERROR, message, values) for /diagnostics (name `teleop`)."""
        values = {"driver": self.driver, "connected": self.connected, "engaged": self.engaged,
                  "takeovers": self.counts.get("takeover", 0), "releases": self.counts.get("release", 0),
                  "last_event": self.last_event}
        values.update({f"events_{k}": v for k, v in sorted(self.counts.items())
                       if k not in ("takeover", "release")})
        if not self.connected:
            return 2, f"device lost: {self.reason}; no intervention possible, restart the teleop", values
        return 0, "", values

    def summary(self) -> dict:
        return {"driver": self.driver, "connected": self.connected, "reason": self.reason,
                "takeovers": self.counts.get("takeover", 0), "releases": self.counts.get("release", 0),
                "events": dict(self.counts)}

    def _close_quietly(self) -> None:
        try:
            self.device.close()
        except Exception:  # noqa: BLE001  a broken device may fail to close too; it is gone
            pass

    def close(self) -> None:
        """Restores the terminal of a keyboard, closes HID/evdev handles."""
        self._close_quietly()
