"""Teleop device drivers on their real parsing code: pyspacemouse's specs and report parser on raw
HID reports, evdev's event codes (and its C reader on real struct input_event bytes), the
keyboard through a real pty; plus the operator's takeover/key state machine. No hardware here
(no /dev/uinput, /dev/uhid): reports and events are recorded or written to the device's layout."""
from __future__ import annotations

import json
import os
import struct
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robot_rl.configs import from_mapping
from robot_rl.teleop.device import DeviceError, DeviceState, make_device, merged_config
from robot_rl.teleop.operator import Operator, OperatorConfig
from robot_rl.teleop.record_device import header, main as record_main, read_recording

DATA = Path(__file__).parent / "data" / "teleop"


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def write_recording(path, driver, device, records):
    with open(path, "w") as f:
        f.write(json.dumps(header(driver, device)) + "\n")
        for r in records:
            f.write(json.dumps(r) + "\n")
    return str(path)


# --- SpaceMouse ----------------------------------------------------------------------------


def test_spacemouse_recording_push_button_release_unplug():
    clock = Clock()
    dev = make_device("spacemouse", {"replay": str(DATA / "spacemouse_navigator.jsonl")}, clock)
    assert dev.poll().connected and np.allclose(dev.poll().twist, 0)
    clock.t += 0.15  # the push away from the person: HID y = -300 of 350
    s = dev.poll()
    assert s.twist[0] > 0 and np.allclose(s.twist[1:], 0)
    expect = (300 / 350 - 0.1) / 0.9 * 0.1  # deadband rescaled, times max_lin_vel
    assert s.twist[0] == pytest.approx(expect)
    assert s.gripper is None
    clock.t += 0.1  # LEFT button down
    s = dev.poll()
    assert s.pressed == {"gripper_close"} and s.gripper == 1.0
    clock.t += 0.01
    assert dev.poll().pressed == frozenset()  # once per press, not while held
    clock.t += 0.3  # button up, back to rest
    s = dev.poll()
    assert s.held == frozenset() and np.allclose(s.twist, 0) and s.gripper == 1.0  # latched
    clock.t += 2.0
    s = dev.poll()
    assert not s.connected and "unplugged" in s.reason and np.allclose(s.twist, 0)
    assert not dev.poll().connected  # lost stays lost


def test_spacemouse_silent_while_deflected_reads_as_rest(tmp_path):
    path = write_recording(tmp_path / "r.jsonl", "spacemouse", {"model": "SpaceNavigator"},
                           [{"t": 0.0, "report": "010000d4fe0000"}, {"t": 5.0, "lost": "end"}])
    clock = Clock()
    dev = make_device("spacemouse", {"replay": path}, clock)
    assert dev.poll().twist[0] > 0
    clock.t += 0.4
    assert dev.poll().twist[0] > 0  # reports may be late: a short gap keeps the push
    clock.t += 0.2  # 0.6 s without the every-8-ms report of a deflected device: not trusted
    assert np.allclose(dev.poll().twist, 0)


def _report_for(parser, axis: str, fraction: float) -> bytes:
    """A report that deflects `axis` (in the parser's ROS convention) by `fraction` of full."""
    a = parser.spec.mappings[axis]
    raw = int(round(fraction * parser.spec.axis_scale)) * a.scale  # scale is +-1: undo its sign
    data = bytearray(parser.need[a.channel])
    data[0] = a.channel
    data[a.byte1:a.byte1 + 1] = struct.pack("<h", raw)[:1]
    data[a.byte2] = struct.pack("<h", raw)[1]
    return bytes(data)


@pytest.mark.parametrize("model", sorted(__import__("pyspacemouse").get_device_specs()))
def test_every_known_model_parses_a_push(model, tmp_path):
    from robot_rl.teleop.spacemouse import ReportParser

    import pyspacemouse

    spec = pyspacemouse.get_device_specs()[model]
    rep = _report_for(ReportParser(spec), "z", 0.5)
    path = write_recording(tmp_path / "r.jsonl", "spacemouse",
                           {"model": model, "vendor_id": spec.vendor_id, "product_id": spec.product_id},
                           [{"t": 0.0, "report": rep.hex()}, {"t": 9.0, "lost": "end"}])
    clock = Clock()
    s = make_device("spacemouse", {"replay": path}, clock).poll()
    assert s.twist[2] > 0 and np.allclose(s.twist[[0, 1, 3, 4, 5]], 0), (model, rep.hex(), s.twist)


def test_spacemouse_short_garbage_and_foreign_reports_do_not_crash(tmp_path):
    # Enterprise: buttons on channel 3 up to byte 4; pyspacemouse would IndexError on 2 bytes
    path = write_recording(
        tmp_path / "r.jsonl", "spacemouse", {"model": "SpaceMouseEnterprise"},
        [{"t": 0.0, "report": "01" + "0000" + "d4fe" + "00" * 8},   # push away, 13 bytes
         {"t": 0.01, "report": "0301"},                             # short button report
         {"t": 0.02, "report": ""},                                 # empty
         {"t": 0.03, "report": "17ff"},                             # battery report id 0x17
         {"t": 0.04, "report": "0100"}]                             # short axis report
        + [{"t": 1.0 + i * 0.001, "report": "03"} for i in range(60)],
    )
    clock = Clock()
    dev = make_device("spacemouse", {"replay": path}, clock)
    dev.poll()
    clock.t += 0.1
    s = dev.poll()
    assert s.connected and s.twist[0] > 0 and s.held == frozenset()  # the good push stands
    assert dev.bad_total == 3  # short button, empty, short axis; the battery report is not ours
    assert dev.last_error == "short report on channel 1: 2 bytes, the SpaceMouseEnterprise spec needs 13"
    clock.t += 2.0  # 60 malformed reports in a row: the device is broken, treat as lost
    s = dev.poll()
    assert not s.connected and "malformed" in s.reason and np.allclose(s.twist, 0)


def test_spacemouse_hid_read_error_is_a_disconnect():
    from easyhid import HIDException

    import pyspacemouse
    from robot_rl.teleop.spacemouse import HidReports, SpaceMouseConfig, SpaceMouseDevice

    class Unplugged:  # hidapi's hid_read returns -1 after an unplug; easyhid raises this
        def read(self, size):
            raise HIDException("Failed to read from HID device: -1")

        def close(self):
            self.closed = True

    hid = Unplugged()
    cfg = from_mapping(SpaceMouseConfig, merged_config("spacemouse", {}), "spacemouse")
    dev = SpaceMouseDevice(cfg, HidReports(hid, 64), pyspacemouse.get_device_specs()["SpaceMouseCompact"])
    s = dev.poll()
    assert not s.connected and "HID read failed" in s.reason and hid.closed


def test_no_spacemouse_names_what_was_looked_for(tmp_path):
    with pytest.raises(DeviceError) as e:
        make_device("spacemouse", {})
    msg = str(e.value)
    assert "no SpaceMouse found" in msg and "046d:c626" in msg and "256f:c635" in msg
    assert "/dev/hidraw" in msg and "HID devices seen by hidapi" in msg
    out = tmp_path / "never-written.jsonl"
    assert record_main(["spacemouse", str(out), "--seconds", "1"]) == 2  # the recorder too
    assert not out.exists()
    with pytest.raises(DeviceError, match="unknown SpaceMouse model 'SpaceBall'"):
        make_device("spacemouse", {"model": "SpaceBall"})


# --- gamepad -------------------------------------------------------------------------------


def test_gamepad_recording_stick_button_loss():
    clock = Clock()
    dev = make_device("gamepad", {"replay": str(DATA / "gamepad_xbox.jsonl")}, clock)
    s = dev.poll()
    assert np.allclose(s.twist, 0)  # triggers at rest read 0, not -1 (unipolar)
    clock.t += 0.15
    s = dev.poll()  # left stick up (ABS_Y -30000) -> forward
    assert s.twist[0] > 0.08 and np.allclose(s.twist[1:], 0)
    clock.t += 0.1
    s = dev.poll()
    assert s.pressed == {"gripper_close"} and s.gripper == 1.0
    clock.t += 0.25
    s = dev.poll()
    assert s.held == frozenset() and np.allclose(s.twist, 0)
    clock.t += 3.0
    s = dev.poll()
    assert not s.connected and "No such device" in s.reason


def _evdev_pipe(events):
    """A real evdev InputDevice reading real `struct input_event`s (kernel layout) from a pipe:
    evdev's own C reader parses them. Only the ioctl-based constructor is skipped."""
    from evdev import InputDevice

    r, w = os.pipe()
    os.set_blocking(r, False)
    for ev in events:
        os.write(w, struct.pack("llHHi", 0, 0, *ev))
    dev = InputDevice.__new__(InputDevice)
    dev.fd, dev.path = r, "/dev/input/event-pipe"
    return dev, w


def test_gamepad_binary_events_through_evdev_and_device_loss():
    from evdev import ecodes as e

    from robot_rl.teleop.gamepad import EvdevEvents, GamepadConfig, GamepadDevice

    dev, w = _evdev_pipe([
        (e.EV_ABS, e.ABS_RZ, 255), (e.EV_ABS, e.ABS_X, 32767),  # RT full: up; stick right
        (e.EV_KEY, e.BTN_TL, 1), (e.EV_MSC, e.MSC_SCAN, 9001), (e.EV_KEY, 0x2ff, 1),  # unnamed key
        (e.EV_SYN, e.SYN_REPORT, 0),
    ])
    cfg = from_mapping(GamepadConfig, merged_config("gamepad", {}), "gamepad")
    absinfo = {"ABS_X": [0, -32768, 32767, 16, 128, 0], "ABS_RZ": [0, 0, 255, 0, 0, 0],
               "ABS_Z": [0, 0, 255, 0, 0, 0]}
    pad = GamepadDevice(cfg, EvdevEvents(dev), absinfo)
    s = pad.poll()
    assert s.twist[2] == pytest.approx(0.1) and s.twist[1] < -0.09  # right = -y
    assert "takeover" in s.held and pad.unknown_events == 1
    os.write(w, struct.pack("llHHi", 0, 0, e.EV_SYN, e.SYN_DROPPED, 0))
    s = pad.poll()  # events were lost in the kernel: no stale push survives
    assert np.allclose(s.twist, 0) and s.held == frozenset()
    # unplugged: the kernel fails reads (ENODEV); here a directory fd fails them (EISDIR)
    bad = os.open("/", os.O_RDONLY)
    os.dup2(bad, dev.fd)
    os.close(bad)
    s = pad.poll()
    assert not s.connected and "event-pipe" in s.reason
    os.close(w)


def test_gamepad_aliases_and_bad_names(tmp_path):
    rec = str(DATA / "gamepad_xbox.jsonl")
    with pytest.raises(ValueError, match="unknown button 'BTN_NOPE'"):
        make_device("gamepad", {"buttons": {"success": ["BTN_NOPE"]}, "replay": rec})
    with pytest.raises(ValueError, match="unknown source 'ABS_NOPE'"):
        make_device("gamepad", {"axes": {"vx": ["ABS_NOPE"]}, "replay": rec})
    clock = Clock()  # BTN_A is an alias of BTN_SOUTH: either name maps
    dev = make_device("gamepad", {"replay": str(DATA / "gamepad_xbox.jsonl"),
                                  "buttons": {"gripper_close": [], "success": ["BTN_A"]}}, clock)
    dev.poll()
    clock.t += 0.25
    assert dev.poll().held == {"success"}
    bad = write_recording(tmp_path / "b.jsonl", "gamepad", {"absinfo": {}},
                          [{"t": 0, "type": "EV_ABS", "code": "ABS_NOPE", "value": 1}])
    with pytest.raises(ValueError, match="unknown evdev event"):
        make_device("gamepad", {"replay": bad}).poll()


def test_no_gamepad_names_what_was_looked_for():
    with pytest.raises(DeviceError) as e:
        make_device("gamepad", {})
    assert "no gamepad found" in str(e.value) and "/dev/input/event" in str(e.value)
    assert "BTN_GAMEPAD" in str(e.value)


# --- keyboard through a pty ----------------------------------------------------------------


@pytest.fixture
def pty_keyboard():
    master, slave = os.openpty()
    clock = Clock()
    from robot_rl.teleop.keyboard import KeyboardDevice

    dev = KeyboardDevice.on_fd(slave, {}, clock)
    yield dev, master, slave, clock
    dev.close()
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


def _settle(dev_fd):
    # the pty's line discipline hands bytes across asynchronously: wait until readable
    import select

    select.select([dev_fd], [], [], 1.0)


def test_keyboard_pty_hold_repeat_decay(pty_keyboard):
    dev, master, slave, clock = pty_keyboard
    lflag = termios.tcgetattr(slave)[3]
    assert not lflag & termios.ICANON and not lflag & termios.ECHO and lflag & termios.ISIG
    os.write(master, b"w")
    _settle(slave)
    s = dev.poll()
    assert s.twist[0] == pytest.approx(0.05) and np.allclose(s.twist[1:], 0)
    clock.t += 0.5  # inside the auto-repeat delay: still held with no repeat yet
    assert dev.poll().twist[0] == pytest.approx(0.05)
    for _ in range(5):  # auto-repeats every 40 ms keep it held
        clock.t += 0.04
        os.write(master, b"w")
        _settle(slave)
        assert dev.poll().twist[0] == pytest.approx(0.05)
    clock.t += 0.15 + 0.05  # repeats stopped: released, decaying
    s = dev.poll()
    assert 0 < s.twist[0] < 0.05
    clock.t += 0.2
    assert np.allclose(dev.poll().twist, 0)
    os.write(master, b"S\x1b[A")  # Shift+s is s (back); arrow up is +z
    _settle(slave)
    s = dev.poll()
    assert s.twist[0] < 0 and s.twist[2] > 0


def test_keyboard_split_escape_sequence_and_esc(pty_keyboard):
    dev, master, slave, clock = pty_keyboard
    os.write(master, b"\x1b")
    _settle(slave)
    assert dev.poll().held == frozenset()  # could be the start of an arrow key: wait
    os.write(master, b"[B")
    _settle(slave)
    s = dev.poll()
    assert s.twist[2] < 0 and "estop" not in s.held  # it was arrow down, not esc
    clock.t += 1.0
    os.write(master, b"\x1b")
    _settle(slave)
    dev.poll()
    clock.t += 0.06
    assert dev.poll().pressed == {"estop"}


def test_keyboard_operator_key_once_per_press(pty_keyboard):
    dev, master, slave, clock = pty_keyboard
    op = Operator()
    events = []
    for i in range(10):  # y held: first char then repeats, polled at 10 Hz
        os.write(master, b"y")
        _settle(slave)
        events += op.update(dev.poll(), clock.t).events
        clock.t += 0.1
    assert events == ["success"]
    clock.t += 1.0
    dev.poll()
    os.write(master, b"y")
    _settle(slave)
    assert op.update(dev.poll(), clock.t).events == ["success"]  # a new press counts again


def test_keyboard_terminal_gone_is_lost_and_restored(pty_keyboard):
    dev, master, slave, clock = pty_keyboard
    os.write(master, b"w")
    _settle(slave)
    assert dev.poll().twist[0] > 0
    os.close(master)  # the ssh session / terminal window went away
    s = dev.poll()
    assert not s.connected and "terminal" in s.reason and np.allclose(s.twist, 0)


def test_keyboard_in_a_child_on_its_controlling_terminal(tmp_path):
    """pty.fork: the child's stdin is the pty slave, as for a node started in a terminal; the
    default config (stdin if a tty) must find it, and restore the terminal on close."""
    import pty
    import select

    code = (
        "import json,sys,time\n"
        "from robot_rl.teleop.device import make_device\n"
        "d = make_device('keyboard', {})\n"
        "print('READY', flush=True)\n"
        "end = time.monotonic() + 5\n"
        "while time.monotonic() < end:\n"
        "    s = d.poll()\n"
        "    if s.twist[1] > 0 and 'gripper_close' in s.held:\n"
        "        print('GOT', json.dumps(list(s.twist)), flush=True); break\n"
        "    time.sleep(0.01)\n"
        "d.close()\n"
        "import termios; print('ECHO', bool(termios.tcgetattr(0)[3] & termios.ECHO), flush=True)\n"
    )
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.chdir(Path(__file__).parents[1])
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    deadline = time.monotonic() + 20
    sent = False
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if b"READY" in out and not sent:
            os.write(fd, b"ac")
            sent = True
        if b"ECHO" in out and out.rstrip().endswith((b"True", b"False")):
            break
    os.waitpid(pid, 0)
    os.close(fd)
    text = out.decode(errors="replace")
    assert "GOT" in text, text
    assert "ECHO True" in text, text  # cbreak undone: the terminal echoes again


def test_no_terminal_is_a_clear_error():
    with pytest.raises(DeviceError, match="keyboard teleop needs a terminal.*/nonexistent/tty"):
        make_device("keyboard", {"tty": "/nonexistent/tty"})


def test_keyboard_recorder_and_replay(tmp_path):
    """The recorder CLI on a pty, then its file replayed through the same key parsing."""
    master, slave = os.openpty()
    out = tmp_path / "kb.jsonl"
    t = threading.Thread(target=record_main,
                         args=(["keyboard", str(out), "--seconds", "0.6", "--path", os.ttyname(slave)],))
    t.start()
    time.sleep(0.2)
    os.write(master, b"d\x1b[C")
    t.join(5)
    os.close(master)
    os.close(slave)
    head, records = read_recording(out, "keyboard")
    assert head["driver"] == "keyboard" and any(r.get("bytes") for r in records)
    clock = Clock()
    dev = make_device("keyboard", {"replay": str(out)}, clock)
    dev.poll()
    clock.t += 0.5
    s = dev.poll()
    assert s.twist[1] < 0  # d = right = -y


# --- operator state machine ----------------------------------------------------------------


def _state(motion=(0, 0, 0, 0, 0, 0), held=(), pressed=(), gripper=None, connected=True, reason=""):
    m = np.asarray(motion, float)
    return DeviceState(twist=m * 0.1, motion=m, gripper=gripper, held=frozenset(held),
                       pressed=frozenset(pressed), connected=connected, reason=reason)


def test_operator_takeover_by_motion_release_by_idle():
    op = Operator(OperatorConfig(takeover_threshold=0.15, idle_release_s=1.0))
    assert not op.update(_state((0.1, 0, 0, 0, 0, 0)), 0.0).engaged  # a resting hand: no
    out = op.update(_state((0.5, 0, 0, 0, 0, 0)), 0.1)
    assert out.engaged and out.events == ["takeover"] and out.twist[0] == pytest.approx(0.05)
    out = op.update(_state((0.05, 0, 0, 0, 0, 0)), 0.5)  # small motion keeps it
    assert out.engaged and out.events == []
    assert op.update(_state(), 1.4).engaged  # 0.9 s idle
    out = op.update(_state(), 1.6)
    assert not out.engaged and out.events == ["release"] and np.allclose(out.twist, 0)
    assert op.update(_state((0.5, 0, 0, 0, 0, 0)), 1.7).events == ["takeover"]  # can re-take


def test_operator_held_button_release_button_needs_rest():
    op = Operator(OperatorConfig(idle_release_s=1.0))
    assert op.update(_state(held={"takeover"}, pressed={"takeover"}), 0.0).events == ["takeover"]
    assert op.update(_state(held={"takeover"}), 5.0).engaged  # held dead-man: never idle
    out = op.update(_state((0.9, 0, 0, 0, 0, 0), pressed={"release"}), 5.1)
    assert not out.engaged and out.events == ["release"]
    assert not op.update(_state((0.9, 0, 0, 0, 0, 0)), 5.2).engaged  # still pushed: stays released
    op.update(_state(), 5.3)
    assert op.update(_state((0.9, 0, 0, 0, 0, 0)), 5.4).engaged
    op2 = Operator()
    out = op2.update(_state(pressed={"gripper_close"}, gripper=1.0), 0.0)
    assert out.engaged and out.gripper == 1.0


def test_operator_device_loss_releases_holds_and_reports():
    op = Operator()
    op.update(_state((0.9, 0, 0, 0, 0, 0)), 0.0)
    out = op.update(_state(connected=False, reason="spacemouse lost: HID read failed"), 0.1)
    assert out.events == ["release"] and not out.engaged and out.hold and out.lost_now
    assert "HID read failed" in out.reason and np.allclose(out.twist, 0)
    out = op.update(_state(connected=False, reason="spacemouse lost"), 0.2)
    assert out.hold and not out.lost_now and out.events == []


def test_operator_keys_edge_debounce_and_end_takeover():
    op = Operator(OperatorConfig(debounce_s=0.3))
    op.update(_state((0.9, 0, 0, 0, 0, 0)), 0.0)
    out = op.update(_state((0.9, 0, 0, 0, 0, 0), pressed={"success"}, held={"success"}), 0.1)
    assert out.events == ["success", "release"] and not out.engaged
    assert op.update(_state(held={"success"}), 0.2).events == []  # held: no repeat
    assert op.update(_state(pressed={"success"}), 0.3).events == []  # bounce within 0.3 s
    assert op.update(_state(pressed={"success"}), 0.5).events == ["success"]
    assert op.update(_state(pressed={"failure", "reset"}), 0.6).events == ["failure", "reset"]
    assert op.update(_state(pressed={"estop"}), 0.7).events == ["estop"]


# --- config --------------------------------------------------------------------------------


def test_shipped_defaults_load_and_bad_keys_are_named():
    for driver in ("spacemouse", "gamepad", "keyboard"):
        cfg = merged_config(driver, {})
        assert cfg["axes"] and cfg["buttons"], driver
    with pytest.raises(ValueError, match="unknown keyboard keys \\['speed'\\]"):
        make_device("keyboard", {"speed": 2, "tty": "/nonexistent/tty"})
    with pytest.raises(ValueError, match="unknown role 'sucess'"):
        make_device("keyboard", {"buttons": {"sucess": ["y"]}, "tty": "/nonexistent/tty"})
    with pytest.raises(ValueError, match="unknown output axis 'vq'"):
        make_device("spacemouse", {"axes": {"vq": ["x"]}, "replay": str(DATA / "spacemouse_navigator.jsonl")})
    with pytest.raises(ValueError, match="unknown teleop driver 'joystick'"):
        make_device("joystick", {})


def test_combined_spacemouse_and_keyboard(tmp_path):
    """Motion from the SpaceMouse, the operator's keys from the terminal, one DeviceState."""
    master, slave = os.openpty()
    clock = Clock()
    from robot_rl.teleop.device import CombinedDevice
    from robot_rl.teleop.keyboard import KeyboardDevice

    sm = make_device("spacemouse", {"replay": str(DATA / "spacemouse_navigator.jsonl")}, clock)
    kb = KeyboardDevice.on_fd(slave, {}, clock)
    dev = CombinedDevice([sm, kb])
    dev.poll()
    clock.t += 0.15
    os.write(master, b"n")
    _settle(slave)
    s = dev.poll()
    assert s.twist[0] > 0.08 and s.pressed == {"failure"} and s.connected
    clock.t += 5.0  # the SpaceMouse recording has ended (unplugged): the whole device is lost
    s = dev.poll()
    assert not s.connected and "unplugged" in s.reason
    dev.close()
    os.close(master)
    os.close(slave)
