"""The lossy relay as a node (fault tests): the plain decisions are robot_rl/tools/lossy_relay.py's
LossyChannel; this only converts messages and publishes what it lets through."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from robot_rl import contract as C
from robot_rl.nodes.ros import make_node_options, qos, run, settings, subscription
from robot_rl.tools.lossy_relay import LossyChannel, label


@dataclass
class LossyRelaySettings:
    topic: str = "learner/transitions"  # a contract topic: its type and QoS are the table's
    out_topic: str = "lossy/learner/transitions"
    drop: float = 0.1
    duplicate: float = 0.1
    reorder: float = 0.1
    seed: int = 0
    hold_s: float = 0.3
    run_dir: str = ""  # "" = no summary file


class LossyRelayNode(Node):
    def __init__(self):
        super().__init__("lossy_relay", **make_node_options())
        s = self.s = settings(self, LossyRelaySettings)
        self.channel = LossyChannel(s.drop, s.duplicate, s.reorder, s.seed, hold_s=s.hold_s)
        t = C.topic(s.topic)
        self.pub = self.create_publisher(t.type, s.out_topic, qos(t.qos))
        self.labels: list = []
        subscription(self, s.topic, self._on_msg)
        self.create_timer(0.05, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"lossy relay {s.topic} -> {s.out_topic}: drop {s.drop}, duplicate "
                               f"{s.duplicate}, reorder {s.reorder}, seed {s.seed}")

    def _on_msg(self, msg) -> None:
        if self.s.topic == C.TRANSITIONS:
            self.labels.append(label(bytes(msg.data)))
        for m in self.channel.push(msg, time.monotonic()):
            self.pub.publish(m)

    def _tick(self) -> None:
        for m in self.channel.due(time.monotonic()):
            self.pub.publish(m)

    def close(self) -> None:
        for m in self.channel.flush():
            self.pub.publish(m)
        if self.s.run_dir:
            Path(self.s.run_dir).mkdir(parents=True, exist_ok=True)
            (Path(self.s.run_dir) / "lossy_relay_summary.json").write_text(json.dumps(
                {"fates": self.channel.fates, "labels": self.labels}))



def main(args=None) -> int:
    return run(LossyRelayNode, args)


if __name__ == "__main__":
    main()
