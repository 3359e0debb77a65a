"""What every node shares: QoS conversion, nested parameters, and owning the shutdown.

rclpy's own signal handlers can turn Ctrl-C during spin into an RCLError; each node process
installs its own SIGINT/SIGTERM handlers instead, finishes the callback in flight, lets the
node close its files (`node.close()`), then shuts rclpy down.
"""
from __future__ import annotations

import signal
import sys
import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from robot_rl import contract as C
from robot_rl.contract import Qos


def qos(q: Qos) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=q.depth,
        reliability=ReliabilityPolicy.RELIABLE if q.reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if q.transient_local else DurabilityPolicy.VOLATILE,
    )


def publisher(node: Node, name: str, qos_profile: Qos | None = None, namespace: str = ""):
    """A publisher for a contract topic, by name: type and QoS come from the topic table.
    namespace: another cell's copy of the topic (/<namespace>/<name>), e.g. for one learner."""
    t = C.topic(name)
    return node.create_publisher(t.type, _in(namespace, name), qos(qos_profile or t.qos))


def subscription(node: Node, name: str, callback, qos_profile: Qos | None = None, namespace: str = ""):
    """A subscription to a contract topic, by name (qos_profile: e.g. best-effort sensors)."""
    t = C.topic(name)
    return node.create_subscription(t.type, _in(namespace, name), callback, qos(qos_profile or t.qos))


def _in(namespace: str, name: str) -> str:
    return f"/{namespace.strip('/')}/{name}" if namespace.strip("/") else name


def make_node_options() -> dict:
    # Parameters come from the shared YAML; nodes read what they need with defaults.
    return dict(
        allow_undeclared_parameters=True,
        automatically_declare_parameters_from_overrides=True,
    )


def param(node: Node, name: str, default):
    """A parameter from the YAML / command line, or `default` (also fixes its type)."""
    if node.has_parameter(name):
        value = node.get_parameter(name).value
        if value is None:
            return default
        if isinstance(default, float) and isinstance(value, int):
            return float(value)
        return value
    return default


def params_under(node: Node, prefix: str) -> dict:
    """All parameters below `prefix.` as a nested dict ("safety.max_lin_vel" -> {"max_lin_vel"})."""
    out: dict = {}
    for name, p in node._parameters.items():  # noqa: SLF001  (rclpy has no public listing)
        if not name.startswith(prefix + "."):
            continue
        keys = name[len(prefix) + 1 :].split(".")
        d = out
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = list(p.value) if isinstance(p.value, (list, tuple)) else p.value
    return out


def settings(node: Node, cls):
    """A node's settings dataclass from its parameters (the shared YAML's /** section, the
    node's own section, then -p): each field from the parameter of its name, a nested dataclass
    field from the parameters under `<name>.`; absent ones keep the dataclass default, which is
    the shipped YAML's value (tests/test_settings.py holds the two together)."""
    import dataclasses

    from robot_rl.configs import from_mapping, nested_fields

    nested = nested_fields(cls)
    values: dict = {}
    for f in dataclasses.fields(cls):
        if f.name in nested:
            sub = params_under(node, f.name)
            if sub:
                values[f.name] = sub
        elif node.has_parameter(f.name) and node.get_parameter(f.name).value is not None:
            v = node.get_parameter(f.name).value
            values[f.name] = list(v) if isinstance(v, (list, tuple)) else v
    return from_mapping(cls, values, node.get_name())


def csv_list(value) -> list[str]:
    """ROS parameters cannot hold an empty list; lists of names are spelled "a,b" ("" = none)."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    return [s.strip() for s in str(value or "").split(",") if s.strip()]


def run(node_factory, args=None) -> int:
    """Create the node, spin until SIGINT/SIGTERM or node.done, close it cleanly."""
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node = None
    code = 0
    try:
        node = node_factory()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not stop.is_set() and not getattr(node, "done", False):
            executor.spin_once(timeout_sec=0.05)
    except Exception as e:  # noqa: BLE001  a node that fails says why and exits non-zero
        print(f"[{getattr(node, 'get_name', lambda: 'node')()}] fatal: {type(e).__name__}: {e}", file=sys.stderr)
        code = 1
        raise
    finally:
        if node is not None:
            try:
                if hasattr(node, "close"):
                    node.close()
            finally:
                node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


class OneShotNode:
    """A short-lived node for an operator's command line (robot-rl estop, robot-rl deploy): its
    own rclpy context in `namespace`, spun only while the command waits, until a deadline."""

    def __init__(self, name: str, namespace: str = "", timeout_s: float = 10.0):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, namespace="/" + namespace.strip("/") if namespace else "",
                                      context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.deadline = time.monotonic() + timeout_s

    def spin_until(self, done) -> bool:
        """Spin until done() is true (True) or the deadline passes (False)."""
        while time.monotonic() < self.deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if done():
                return True
        return False

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)
