"""The CLI's eye on a running graph: listens to /diagnostics, nothing else."""
from __future__ import annotations

import os
import time

import rclpy
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import subscription
from robot_rl.ros_domain import participants


class Monitor:
    def __init__(self):
        rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node("robot_rl_monitor")
        self.status: dict[str, dict] = {}
        subscription(self.node, C.DIAGNOSTICS, self._on_diag)

    def _on_diag(self, msg) -> None:
        for name in ("actor", "learner", "twin"):
            values = codec.diagnostics_values(msg, name)
            if values is not None:
                self.status[name] = values
                st = [s for s in msg.status if s.name == name][0]
                if st.message:
                    self.status[name]["message"] = st.message

    def nodes_present(self, names, settle_s: float = 10.0, leave_s: float = 5.0) -> list[str]:
        """Which of these node names another live graph runs on this ROS domain.

        On localhost discovery, the domain's bound UDP ports say how many other participants
        are alive here (robot_rl.ros_domain): none, and the answer is known at once. Otherwise
        wait (at most settle_s; discovery is slow on a loaded machine) until a node of each has
        been seen; on a wider discovery range, 2 s. A graph that is shutting down gets leave_s
        to go (a killed one is gone at once: its ports are closed, though discovery lists it ~20 s)."""
        names = set(names)
        domain = int(os.environ.get("ROS_DOMAIN_ID", "0"))
        local = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "") == "LOCALHOST"

        def others_alive() -> int:  # our own participant has the monitor node
            return participants(domain) - 1 if local else 1

        deadline = time.monotonic() + (settle_s if local else min(settle_s, 2.0))
        while time.monotonic() < deadline:
            if len(self.node.get_node_names()) - 1 >= others_alive():
                break
            self.spin(0.1)
        deadline = time.monotonic() + leave_s
        while True:
            present = sorted(names & set(self.node.get_node_names()))
            if others_alive() <= 0:
                return []  # what discovery still lists belongs to processes that are gone
            if not present or time.monotonic() > deadline:
                return present
            self.spin(0.5)

    def spin(self, seconds: float) -> None:
        rclpy.spin_once(self.node, timeout_sec=seconds)

    def close(self) -> None:
        self.node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
