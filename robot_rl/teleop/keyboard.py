"""The keyboard of the terminal the teleop runs in: no X, no root, works over ssh.

The terminal is put in cbreak mode (no line buffering, no echo; Ctrl-C still interrupts) and read
without blocking. A terminal sends characters and escape sequences, never key-up events: holding
a key gives one character, a pause (the auto-repeat delay, 250-600 ms locally, whatever the ssh
client's is), then repeats every ~30-40 ms. So a key counts as held from its first character for
`initial_hold_s` (longer than the repeat delay) and for `repeat_hold_s` after each repeat; once
repeats stop it is released and its axis decays to zero over `decay_s`. Letters are case-blind
(Shift or Caps Lock must not change what a key does).

Key names: the character itself ("w", "1", "+"), or up down left right pageup pagedown home end
insert delete space enter tab backspace esc. The axes of a keyboard are its keys: in the YAML
`axes: {vx: [w, -s]}` means w pushes +vx and s pushes -vx.
"""
from __future__ import annotations

import os
import select
import string
import sys
import termios
import time
import tty
from dataclasses import dataclass, field

from robot_rl.teleop.device import DeviceError, DeviceLost, Shaping, TeleopDevice, merged_config

NAMED = {
    " ": "space", "\r": "enter", "\n": "enter", "\t": "tab", "\x7f": "backspace", "\x08": "backspace",
}
CSI = {  # ESC [ ... and ESC O ... (application cursor mode) sequences
    "A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end",
    "2~": "insert", "3~": "delete", "5~": "pageup", "6~": "pagedown", "1~": "home", "4~": "end",
}
KEY_NAMES = (
    set(string.ascii_lowercase) | set(string.digits) | set(string.punctuation)
    | set(NAMED.values()) | set(CSI.values()) | {"esc"}
)


class KeyParser:
    """Bytes from a terminal -> key names. An escape sequence split across reads is kept until
    its rest arrives; a lone ESC becomes "esc" once `esc_timeout_s` passes with nothing after it."""

    def __init__(self, esc_timeout_s: float = 0.05):
        self.buf = ""
        self.esc_since: float | None = None
        self.esc_timeout_s = esc_timeout_s
        self.unknown = 0

    def feed(self, data: bytes, now: float) -> list[str]:
        self.buf += data.decode("utf-8", errors="ignore")
        keys = []
        while self.buf:
            c = self.buf[0]
            if c != "\x1b":
                self.buf = self.buf[1:]
                if c in NAMED:
                    keys.append(NAMED[c])
                elif c.isprintable() and len(c) == 1 and c.isascii():
                    keys.append(c.lower())
                else:
                    self.unknown += 1  # other control characters and non-ASCII: no binding
                continue
            if len(self.buf) == 1:  # ESC alone so far: a key, or the start of a sequence
                if self.esc_since is None:
                    self.esc_since = now
                if now - self.esc_since >= self.esc_timeout_s:
                    keys.append("esc")
                    self.buf, self.esc_since = "", None
                break
            self.esc_since = None
            if self.buf[1] not in "[O":
                keys.append("esc")  # ESC then a key (Alt+key): take it as esc, then the key
                self.buf = self.buf[1:]
                continue
            # CSI: parameters (digits ;) then a final byte in @..~
            j = 2
            while j < len(self.buf) and (self.buf[j].isdigit() or self.buf[j] == ";"):
                j += 1
            if j >= len(self.buf):
                if len(self.buf) > 16:  # garbage, not a sequence: drop it
                    self.buf, self.unknown = "", self.unknown + 1
                break  # incomplete: wait for the rest
            seq = self.buf[2:j + 1]
            self.buf = self.buf[j + 1:]
            # modified keys (Ctrl/Shift+arrow: ESC [1;5A) end in the plain key's final letter
            name = CSI.get(seq) or (CSI.get(seq[-1]) if seq[-1].isalpha() else None)
            if name:
                keys.append(name)
            else:
                self.unknown += 1
        return keys


def open_terminal(path: str | None = None):
    """-> (fd, saved termios attributes, whether we opened the fd). cbreak, non-blocking.

    Default: stdin if it is a terminal, else /dev/tty (the controlling terminal, which a node
    started from a shell has even when its stdin is redirected)."""
    owned = False
    if path is None and sys.stdin is not None and sys.stdin.isatty():
        fd = sys.stdin.fileno()
    else:
        p = path or "/dev/tty"
        try:
            fd = os.open(p, os.O_RDWR | os.O_NOCTTY)
            owned = True
        except OSError as e:
            stdin = "a terminal" if (sys.stdin and sys.stdin.isatty()) else "not a terminal"
            raise DeviceError(
                f"keyboard teleop needs a terminal: could not open {p} ({e.strerror}); stdin is "
                f"{stdin}. Run the teleop in a terminal (robot-rl teleop ..., or ssh -t) rather "
                "than under a launcher without one (docs/teleop.md)"
            ) from e
    if not os.isatty(fd):
        if owned:
            os.close(fd)
        raise DeviceError(f"keyboard teleop: {path or 'stdin'} is not a terminal")
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)  # ICANON and ECHO off, ISIG kept: Ctrl-C still stops the node
    return fd, saved, owned


def restore_terminal(fd: int, saved, owned: bool) -> None:
    try:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    except (termios.error, OSError):
        pass  # the terminal is gone: nothing left to restore
    if owned:
        try:
            os.close(fd)
        except OSError:
            pass


@dataclass
class KeyboardConfig:
    tty: str | None = None           # a terminal device; None = stdin if a tty, else /dev/tty
    replay: str | None = None
    initial_hold_s: float = 0.6      # a first keypress holds this long (> the repeat delay)
    repeat_hold_s: float = 0.15      # each repeat extends the hold by this (> repeat interval)
    decay_s: float = 0.1             # after release the axis ramps to zero over this
    esc_timeout_s: float = 0.05
    deadband: float = 0.0
    max_lin_vel: float = 0.05
    max_ang_vel: float = 0.3
    axes: dict = field(default_factory=dict)
    buttons: dict = field(default_factory=dict)

    def shaping(self) -> Shaping:
        s = Shaping(axes=dict(self.axes), deadband=self.deadband, max_lin_vel=self.max_lin_vel,
                    max_ang_vel=self.max_ang_vel, buttons=dict(self.buttons))
        s.check(known_sources=KEY_NAMES, known_buttons=KEY_NAMES, where="keyboard")
        return s


class KeyboardDevice(TeleopDevice):
    kind = "keyboard"

    def __init__(self, cfg: KeyboardConfig, source, clock=time.monotonic):
        super().__init__(cfg.shaping(), clock)
        self.cfg = cfg
        self.source = source  # .read() -> bytes (b"" when nothing); raises DeviceLost; .close()
        self.parser = KeyParser(cfg.esc_timeout_s)
        self.hold_until: dict[str, float] = {}
        self.released_at: dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg: dict | None, clock=time.monotonic) -> "KeyboardDevice":
        from robot_rl.configs import from_mapping

        c = from_mapping(KeyboardConfig, merged_config("keyboard", cfg), "keyboard")
        c.shaping()  # a typo in the YAML is named before the terminal is touched
        if c.replay:
            from robot_rl.teleop.record_device import ReplayFeed, read_recording

            _, records = read_recording(c.replay, "keyboard")
            return cls(c, ReplayBytes(ReplayFeed(records, clock)), clock)
        return cls(c, TerminalSource(*open_terminal(c.tty)), clock)

    @classmethod
    def on_fd(cls, fd: int, cfg: dict | None = None, clock=time.monotonic) -> "KeyboardDevice":
        """A terminal fd the caller opened (a pty in tests, a node's own tty); put in cbreak."""
        from robot_rl.configs import from_mapping

        c = from_mapping(KeyboardConfig, merged_config("keyboard", cfg), "keyboard")
        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        return cls(c, TerminalSource(fd, saved, False), clock)

    def _read(self):
        now = self.clock()
        data = self.source.read()
        for k in self.parser.feed(data, now):
            held = self.hold_until.get(k, -1.0) >= now
            # a repeat (key still held) extends a little; a fresh press covers the repeat delay
            self.hold_until[k] = now + (self.cfg.repeat_hold_s if held else self.cfg.initial_hold_s)
        axes, down = {}, set()
        for k, until in self.hold_until.items():
            if until >= now:
                down.add(k)
                axes[k] = 1.0
            elif self.cfg.decay_s > 0 and now - until < self.cfg.decay_s:
                axes[k] = 1.0 - (now - until) / self.cfg.decay_s
        return axes, down

    def _release_source(self) -> None:
        self.source.close()


class TerminalSource:
    def __init__(self, fd: int, saved, owned: bool):
        self.fd, self.saved, self.owned = fd, saved, owned
        self.closed = False

    def read(self) -> bytes:
        if self.closed:
            raise DeviceLost("terminal closed")
        out = b""
        try:
            while select.select([self.fd], [], [], 0)[0]:
                chunk = os.read(self.fd, 4096)
                if not chunk:  # EOF: the terminal hung up
                    raise DeviceLost("terminal closed (EOF)")
                out += chunk
        except OSError as e:  # EIO once the other side of a pty / the ssh session is gone
            raise DeviceLost(f"terminal read failed: {e.strerror or e}") from e
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            restore_terminal(self.fd, self.saved, self.owned)


class ReplayBytes:
    def __init__(self, feed):
        self.feed = feed

    def read(self) -> bytes:
        return b"".join(bytes.fromhex(r["bytes"]) for r in self.feed.due() if "bytes" in r)

    def close(self) -> None:
        pass
