"""The CLI's eye on a running graph: listens to /diagnostics, nothing else."""
from __future__ import annotations

import time

import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import qos


class Monitor:
    def __init__(self):
        rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("robot_rl_monitor")
        self.status: dict[str, dict] = {}
        self.node.create_subscription(C.TYPES[C.DIAGNOSTICS], C.DIAGNOSTICS, self._on_diag, qos(C.DIAGNOSTICS_QOS))

    def _on_diag(self, msg) -> None:
        for name in ("actor", "learner", "twin"):
            values = codec.diagnostics_values(msg, name)
            if values is not None:
                self.status[name] = values
                st = [s for s in msg.status if s.name == name][0]
                if st.message:
                    self.status[name]["message"] = st.message

    def nodes_present(self, names, settle_s: float = 1.5, leave_s: float = 25.0) -> list[str]:
        """Which of these node names another graph already runs on this ROS domain. Discovery
        needs a moment (settle_s); nodes of a graph still leaving (a killed node lingers ~20 s)
        get leave_s to go."""
        names = set(names)
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            self.spin(0.1)
        deadline = time.monotonic() + leave_s
        while True:
            present = sorted(names & set(self.node.get_node_names()))
            if not present or time.monotonic() > deadline:
                return present
            self.spin(0.5)

    def spin(self, seconds: float) -> None:
        rclpy.spin_once(self.node, timeout_sec=seconds)

    def close(self) -> None:
        self.node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
