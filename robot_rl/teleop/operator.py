"""Takeover as a person does it, and the operator's keys: a plain state machine over DeviceState.

  take over   the device moves past `takeover_threshold` (a fraction of full deflection, so a
              resting hand on a SpaceMouse does not count), a held `takeover` button, or a
              gripper press (the person wants the gripper: they are driving now)
  release     a `release` press; or no motion and no held takeover button for `idle_release_s`
              (the person let go). After a release by button the device must come back to rest
              before it can take over again, else a still-deflected stick re-takes at once.
  device lost released at once, `hold` requested while it is gone (nobody can intervene or stop
              the robot from that device), `reason` says what happened, `lost_now` on the tick
              it happened. Lost is final: reopening a device is a restart of the teleop.
  keys        success | failure | reset | estop presses become events, once per press (the devices
              give press edges) and at most once per `debounce_s` per kind (contact bounce, a
              double hit, a terminal's key repeat). An outcome or reset also ends a takeover.
Events, in order, are the strings of teleop/event: takeover release success failure reset estop.
ROS-free: the teleop node feeds it one DeviceState per tick with the tick's time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_rl.configs import from_mapping
from robot_rl.teleop.device import OPERATOR_EVENTS, DeviceState


@dataclass
class OperatorConfig:
    takeover_threshold: float = 0.15  # fraction of full deflection (after deadband) that takes over
    idle_release_s: float = 1.5       # released after this long without motion or held button
    debounce_s: float = 0.3           # one event of a kind per this long at most
    gripper_takes_over: bool = True   # a gripper press while the policy drives takes over
    hold_on_loss: bool = True         # device gone -> ask the actor to hold

    @classmethod
    def from_dict(cls, d: dict | None) -> "OperatorConfig":
        return from_mapping(cls, d, "operator")


@dataclass
class OperatorOutput:
    engaged: bool
    twist: np.ndarray                 # the person's twist while engaged, zeros otherwise
    gripper: float | None             # the person's gripper command while engaged, else None
    events: list = field(default_factory=list)
    hold: bool = False
    reason: str = ""
    lost_now: bool = False


class Operator:
    def __init__(self, cfg: OperatorConfig | None = None):
        self.cfg = cfg or OperatorConfig()
        self.engaged = False
        self.last_active = -np.inf
        self.need_rest = False
        self.last_event: dict[str, float] = {}
        self.lost = False

    def update(self, s: DeviceState, now: float) -> OperatorOutput:
        cfg = self.cfg
        events: list[str] = []
        if not s.connected:
            lost_now = not self.lost
            self.lost = True
            if self.engaged:
                self.engaged = False
                events.append("release")
            return OperatorOutput(False, np.zeros(6), None, events, hold=cfg.hold_on_loss,
                                  reason=s.reason or "teleop device lost", lost_now=lost_now)

        # operator keys first: an outcome pressed while driving ends the takeover below
        for kind in OPERATOR_EVENTS:
            if kind in s.pressed and now - self.last_event.get(kind, -np.inf) >= cfg.debounce_s:
                self.last_event[kind] = now
                events.append(kind)

        strength = float(np.max(np.abs(s.motion))) if len(s.motion) else 0.0
        moving = strength > 0.0  # anything past the deadband keeps a takeover alive
        grip_press = bool(s.pressed & {"gripper_close", "gripper_open", "gripper_toggle"})
        wants = (strength >= cfg.takeover_threshold or "takeover" in s.held
                 or (cfg.gripper_takes_over and grip_press))
        if self.need_rest and not moving and "takeover" not in s.held:
            self.need_rest = False

        if self.engaged:
            if moving or "takeover" in s.held or grip_press:
                self.last_active = now
            ended = [e for e in events if e in ("success", "failure", "reset", "estop")]
            if "release" in s.pressed or ended:
                self._release(events, need_rest=True)
            elif now - self.last_active >= cfg.idle_release_s:
                self._release(events, need_rest=False)
        elif wants and not self.need_rest and "release" not in s.pressed:
            self.engaged = True
            self.last_active = now
            events.append("takeover")

        if self.engaged:
            return OperatorOutput(True, np.asarray(s.twist, np.float64).copy(), s.gripper, events)
        return OperatorOutput(False, np.zeros(6), None, events)

    def _release(self, events: list, need_rest: bool) -> None:
        self.engaged = False
        self.need_rest = need_rest
        events.append("release")
