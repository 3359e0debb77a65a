"""Task status node (robot): the episode outcome on `task/status` from the operator's keys.

On a robot nothing but a person (or later a reward classifier) can say that an episode
succeeded. This node publishes the contract's task/status at the control rate on the wall
clock, stamped with the node clock's now: reward 0 while an episode runs; the person's success /
failure key (teleop/event) ends it as terminal; reset, e-stop or max_episode_steps end it as
truncated; then it waits for the person's reset key before the next episode starts. The logic is
robot_rl/teleop/episode_status.py; this class converts messages. In sim the twin's success check
publishes task/status instead: do not run both on one graph.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from rclpy.clock import Clock, ClockType
from rclpy.node import Node

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import make_node_options, publisher, run, settings, subscription
from robot_rl.teleop.episode_status import EpisodeStatus


@dataclass
class TaskStatusSettings:
    rate_hz: float = 10.0          # the control rate (shared with the actor)
    max_episode_steps: int = 100   # ticks before an episode is truncated; 0 = no limit
    run_dir: str = "runs/sim"      # task_status_summary.json on shutdown

    def __post_init__(self):
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {self.rate_hz}")


class TaskStatusNode(Node):
    def __init__(self):
        super().__init__("task_status", **make_node_options())
        s = settings(self, TaskStatusSettings)
        self.run_dir = Path(s.run_dir)
        self.status = EpisodeStatus(s.max_episode_steps)
        self.pub = publisher(self, C.TASK_STATUS)
        subscription(self, C.TELEOP_EVENT, self._on_event)
        # Wall clock: a person's pace, not sim time; the stamp is the node clock's (wall on a robot).
        self.create_timer(1.0 / s.rate_hz, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"task_status up: operator keys -> {C.TASK_STATUS} at {s.rate_hz} Hz, "
                               f"max_episode_steps={s.max_episode_steps or 'none'}; episode 0 runs")

    def _on_event(self, msg) -> None:
        self._say(self.status.event(str(msg.data)))

    def _say(self, said) -> None:
        if said is None:
            return
        level, text = said
        # one call site per severity: rclpy refuses one site logging at two severities
        if level == "warn":
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def _tick(self) -> None:
        t = self.get_clock().now().nanoseconds * 1e-9
        ended = len(self.status.history)
        values = self.status.tick()
        if len(self.status.history) > ended:
            self._say(("info", f"episode {values['episode']} truncated at max_episode_steps "
                               f"({values['step']}); press reset to start the next one"))
        self.pub.publish(codec.status_msg(t, values))

    def close(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "task_status_summary.json").write_text(json.dumps(
            {"episodes": self.status.history, "current": self.status.episode, "state": self.status.state}, indent=1))


def main(args=None) -> int:
    return run(TaskStatusNode, args)


if __name__ == "__main__":
    sys.exit(main())
