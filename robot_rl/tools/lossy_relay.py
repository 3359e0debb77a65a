"""A lossy link for fault tests: sits on one topic of the contract and forwards it to another
name, dropping, duplicating and reordering a fraction of the messages, as a flaky network or a
misbehaving bridge would.

`LossyChannel` decides (plain code, seeded, no rclpy); robot_rl/nodes/lossy_relay.py is the thin
node. Put it between the actor and the learner by remapping the learner's subscription:

    python -m robot_rl.nodes.lossy_relay --ros-args -p topic:=learner/transitions \\
        -p out_topic:=lossy/learner/transitions -p drop:=0.1 -p duplicate:=0.1 -p reorder:=0.1
    python -m robot_rl.nodes.learner --ros-args -r learner/transitions:=lossy/learner/transitions ...

On shutdown the node writes <run_dir>/lossy_relay_summary.json: what it did to which message (for
transitions, the (episode, index) the message carried), so a test can hold the learner's
account against it.
"""
from __future__ import annotations

import random


class LossyChannel:
    """Per message, one fate drawn from a seeded RNG: dropped, duplicated (sent twice), delayed
    (held back until `1..max_delay` later messages have gone, or `hold_s` has passed: a reorder),
    or passed on. `push` and `due` return what to send now, in order."""

    def __init__(self, drop: float = 0.1, duplicate: float = 0.1, reorder: float = 0.1, seed: int = 0,
                 max_delay: int = 3, hold_s: float = 0.3):
        if min(drop, duplicate, reorder) < 0 or drop + duplicate + reorder > 1:
            raise ValueError(f"fractions must be >= 0 and sum to <= 1, got {drop}, {duplicate}, {reorder}")
        self.p = (drop, duplicate, reorder)
        self.rng = random.Random(seed)
        self.max_delay, self.hold_s = max_delay, hold_s
        self.held: list[list] = []  # [item, messages still to let pass, held since]
        self.fates: list[str] = []  # per pushed item, in order

    def push(self, item, now: float) -> list:
        r = self.rng.random()
        drop, dup, reorder = self.p
        out = []
        for h in self.held:  # one more message went by each held one
            h[1] -= 1
        if r < drop:
            fate = "dropped"
        elif r < drop + dup:
            fate, out = "duplicated", [item, item]
        elif r < drop + dup + reorder:
            fate = "delayed"
            self.held.append([item, self.rng.randint(1, self.max_delay), now])
        else:
            fate, out = "passed", [item]
        self.fates.append(fate)
        return out + self.due(now)

    def due(self, now: float) -> list:
        """Held messages whose turn has come (their count ran out, or they waited hold_s)."""
        ready = [h for h in self.held if h[1] <= 0 or now - h[2] >= self.hold_s]
        self.held = [h for h in self.held if h not in ready]
        return [h[0] for h in ready]

    def flush(self) -> list:
        out = [h[0] for h in self.held]
        self.held = []
        return out


def label(raw: bytes) -> list:
    """What a transitions-topic message carries, for the summary: ["step", episode, index] per
    step, ["end", episode], or ["unreadable"]."""
    from robot_rl import codec

    try:
        kind, body = codec.decode_payload(raw)
        meta, arrays = codec.unpack_arrays(body)
    except codec.PayloadError:
        return [["unreadable"]]
    if kind == codec.TRANSITIONS:
        n = len(arrays["action"]) if "action" in arrays else 1
        return [["step", int(meta["episode"]), int(meta["index"]) + i] for i in range(n)]
    if kind == codec.EPISODE_END:
        return [["end", int(meta["episode"])]]
    return [[codec.KIND_NAMES.get(kind, str(kind))]]
