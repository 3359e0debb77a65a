"""Picking a ROS domain no other process on this machine uses: two graphs on one domain would
answer each other's nodes (two twins' observations mixed in one store). rclpy-free, so it can
run before anything reads ROS_DOMAIN_ID."""
from __future__ import annotations

import os
import random

# Fast DDS binds its UDP ports at 7400 + 250 * domain + [0, 250) (the default port mapping).
_PORT_BASE, _PORT_GAIN = 7400, 250
DOMAINS = range(1, 101)  # above ~101 the ranges meet the kernel's ephemeral ports


def _bound_udp_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:  # not Linux: nothing known to be busy
            continue
        ports.update(int(line.split()[1].rsplit(":", 1)[1], 16) for line in lines)
    return ports


def busy_domains() -> set[int]:
    return {(p - _PORT_BASE) // _PORT_GAIN for p in _bound_udp_ports() if p >= _PORT_BASE}


def free_domain(exclude=()) -> int:
    """A random domain in DOMAINS that no process here has bound ports for right now."""
    exclude, busy = set(exclude), busy_domains()
    candidates = [d for d in DOMAINS if d not in exclude]
    free = [d for d in candidates if d not in busy]
    return random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little")).choice(free or candidates)


def participants(domain: int) -> int:
    """DDS participants on this machine in `domain`: each binds its metatraffic unicast port
    7400 + 250 * domain + 10 + 2 * participant_id (the RTPS default mapping)."""
    base = _PORT_BASE + _PORT_GAIN * int(domain) + 10
    ports = _bound_udp_ports()
    return sum(1 for pid in range(120) if base + 2 * pid in ports)
