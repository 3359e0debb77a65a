"""Recordings of teleop devices: the format, a replay feed, and the recorder CLI.

A recording is JSON lines. Line 1 is a header, every further line one raw input, timestamped
in seconds since the recording started:

  {"format": "robot_rl.teleop.recording", "version": 1, "driver": "spacemouse",
   "device": {"model": "SpaceNavigator", "vendor_id": 1133, "product_id": 50726}}
  {"t": 0.008, "report": "01f40000000000"}         SpaceMouse: one raw HID report, hex
  {"t": 0.010, "type": "EV_ABS", "code": "ABS_X", "value": 20000}   gamepad: one evdev event
  {"t": 0.500, "bytes": "77"}                       keyboard: bytes read from the terminal, hex
  {"t": 2.000, "lost": "unplugged"}                 the device went away here (any driver)

A gamepad header carries the axes' calibration, which a replay needs to normalise:
  "device": {"name": "...", "absinfo": {"ABS_X": [value, min, max, fuzz, flat, resolution], ...}}

Replay feeds the records, paced by the clock, into the very parsing code the hardware path uses.
The end of a recording reads as the device going away (a stand-in must not drive forever).

  python -m robot_rl.teleop.record_device spacemouse out.jsonl [--seconds 30] [--path /dev/hidraw3]
  python -m robot_rl.teleop.record_device gamepad out.jsonl [--path /dev/input/event5]
  python -m robot_rl.teleop.record_device keyboard out.jsonl
Each prints what it parses as it records, so a lab sees at once whether its device reads
(a SpaceMouse that answers all zeros shows up here, not in a failed training run).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from robot_rl.teleop.device import DeviceLost

FORMAT = "robot_rl.teleop.recording"
VERSION = 1


def header(driver: str, device: dict) -> dict:
    return {"format": FORMAT, "version": VERSION, "driver": driver, "device": device}


def read_recording(path, driver: str | None = None) -> tuple[dict, list[dict]]:
    """-> (header, records sorted by t). A wrong file says what it is instead of half-replaying."""
    with open(path) as f:
        lines = [ln for ln in f if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: empty recording (expected a header line)")
    try:
        head = json.loads(lines[0])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:1: header is not JSON: {e}") from e
    if head.get("format") != FORMAT or head.get("version") != VERSION:
        raise ValueError(
            f"{path}: not a teleop recording (format {head.get('format')!r} version "
            f"{head.get('version')!r}; expected {FORMAT!r} version {VERSION})"
        )
    if driver is not None and head.get("driver") != driver:
        raise ValueError(f"{path}: a {head.get('driver')!r} recording, not {driver!r}")
    records = []
    for i, ln in enumerate(lines[1:], start=2):
        try:
            r = json.loads(ln)
            t = float(r["t"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}:{i}: bad record ({e}): {ln.strip()[:80]}") from e
        r["t"] = t
        records.append(r)
    records.sort(key=lambda r: r["t"])
    return head, records


class ReplayFeed:
    """Hands out the records that are due: those with t <= (clock - first poll's clock)."""

    def __init__(self, records: list[dict], clock):
        self.records = list(records)
        self.clock = clock
        self.i = 0
        self.t0: float | None = None

    def due(self) -> list[dict]:
        now = self.clock()
        if self.t0 is None:
            self.t0 = now
        if self.i >= len(self.records):
            raise DeviceLost("recording ended")
        out = []
        while self.i < len(self.records) and self.records[self.i]["t"] <= now - self.t0:
            r = self.records[self.i]
            self.i += 1
            if "lost" in r:
                raise DeviceLost(str(r["lost"]))
            out.append(r)
        return out


# --- the recorder -------------------------------------------------------------------------


def _record_spacemouse(args, out, t0) -> None:
    from robot_rl.teleop.spacemouse import SpaceMouseDevice, open_hid

    hid, spec = open_hid(model=args.model, path=args.path)
    out.write(json.dumps(header("spacemouse", {
        "model": spec.name, "vendor_id": spec.vendor_id, "product_id": spec.product_id,
    })) + "\n")
    parser = SpaceMouseDevice.parser_for(spec)
    try:
        while time.monotonic() - t0 < args.seconds:
            try:
                data = hid.read(64, timeout=50)
            except Exception as e:  # noqa: BLE001  easyhid raises HIDException on unplug
                out.write(json.dumps({"t": time.monotonic() - t0, "lost": str(e)}) + "\n")
                print(f"device lost: {e}", file=sys.stderr)
                return
            if data:
                t = time.monotonic() - t0
                out.write(json.dumps({"t": round(t, 6), "report": bytes(data).hex()}) + "\n")
                print(f"{t:8.3f}  {bytes(data).hex():<28} {parser.describe(bytes(data))}",
                      file=sys.stderr)
    finally:
        hid.close()


def _record_gamepad(args, out, t0) -> None:
    import select

    from evdev import ecodes

    from robot_rl.teleop.gamepad import absinfo_table, open_gamepad, event_names

    dev = open_gamepad(path=args.path, name_contains=args.name)
    out.write(json.dumps(header("gamepad", {
        "name": dev.name, "path": dev.path, "absinfo": absinfo_table(dev),
    })) + "\n")
    try:
        while time.monotonic() - t0 < args.seconds:
            select.select([dev.fd], [], [], 0.05)
            try:
                ev = dev.read_one()
                while ev is not None:
                    if ev.type != ecodes.EV_SYN or ev.code == ecodes.SYN_DROPPED:
                        t = round(time.monotonic() - t0, 6)
                        typ, code = event_names(ev.type, ev.code)
                        out.write(json.dumps({"t": t, "type": typ, "code": code, "value": ev.value}) + "\n")
                        print(f"{t:8.3f}  {typ} {code} {ev.value}", file=sys.stderr)
                    ev = dev.read_one()
            except OSError as e:
                out.write(json.dumps({"t": time.monotonic() - t0, "lost": str(e)}) + "\n")
                print(f"device lost: {e}", file=sys.stderr)
                return
    finally:
        dev.close()


def _record_keyboard(args, out, t0) -> None:
    import os
    import select

    from robot_rl.teleop.keyboard import open_terminal, restore_terminal

    fd, saved, owned = open_terminal(args.path)
    out.write(json.dumps(header("keyboard", {"tty": args.path or "stdin or /dev/tty"})) + "\n")
    print("recording keys; Ctrl-C or --seconds to stop", file=sys.stderr)
    try:
        while time.monotonic() - t0 < args.seconds:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                data = os.read(fd, 1024)
                t = round(time.monotonic() - t0, 6)
                if not data:
                    out.write(json.dumps({"t": t, "lost": "terminal closed"}) + "\n")
                    return
                out.write(json.dumps({"t": t, "bytes": data.hex()}) + "\n")
                print(f"{t:8.3f}  {data!r}\r", file=sys.stderr)
    finally:
        restore_terminal(fd, saved, owned)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m robot_rl.teleop.record_device",
        description="Record a teleop device's raw reports/events as JSON lines (docs/teleop.md).",
    )
    p.add_argument("driver", choices=["spacemouse", "gamepad", "keyboard"])
    p.add_argument("out", help="output .jsonl file")
    p.add_argument("--seconds", type=float, default=30.0, help="stop after this long (default 30)")
    p.add_argument("--path", default=None, help="device path: /dev/hidraw*, /dev/input/event*, a tty")
    p.add_argument("--model", default=None, help="SpaceMouse model name from pyspacemouse's list")
    p.add_argument("--name", default=None, help="gamepad: part of the device name to pick")
    args = p.parse_args(argv)
    from pathlib import Path

    from robot_rl.teleop.device import DeviceError

    t0 = time.monotonic()
    with open(args.out, "w") as out:
        try:
            {"spacemouse": _record_spacemouse, "gamepad": _record_gamepad,
             "keyboard": _record_keyboard}[args.driver](args, out, t0)
        except KeyboardInterrupt:
            pass
        except DeviceError as e:  # no device: say what was looked for, leave no empty file
            print(f"error: {e}", file=sys.stderr)
            out.close()
            Path(args.out).unlink(missing_ok=True)
            return 2
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
