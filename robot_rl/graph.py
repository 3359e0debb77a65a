"""One description of each ROS graph, used by launch/*.launch.py and by `robot-rl sim`.

A graph is a list of nodes (name, console script, module) and the parameter files they read.
ROS-free: launch files turn it into launch_ros Node actions, the CLI into processes.
"""
from __future__ import annotations

from dataclasses import dataclass

from robot_rl.paths import share_file


@dataclass(frozen=True)
class NodeSpec:
    name: str  # ROS node name (and section in the params YAML)
    executable: str  # console script installed by setup.py (for ros2 launch)
    module: str  # python -m target (for the CLI; same code)


NODES = {
    "twin": NodeSpec("twin", "twin_node", "robot_rl.nodes.twin"),
    "teleop": NodeSpec("teleop", "teleop_node", "robot_rl.nodes.teleop"),
    "actor": NodeSpec("actor", "actor_node", "robot_rl.nodes.actor"),
    "learner": NodeSpec("learner", "learner_node", "robot_rl.nodes.learner"),
}

GRAPHS = {
    # The twin stands in for the robot's drivers; everything else is what runs on the robot.
    "sim": (["learner", "actor", "teleop", "twin"], "sim.yaml"),
    "learner": (["learner"], "sim.yaml"),
    # Recording demonstrations through the graph: the teleop drives every step, no learner.
    "record": (["actor", "teleop", "twin"], "sim.yaml"),
}


def graph(name: str) -> tuple[list[NodeSpec], str]:
    """-> (nodes in start order, absolute path of the params file)."""
    if name not in GRAPHS:
        raise ValueError(f"unknown graph {name!r}; known: {sorted(GRAPHS)}")
    nodes, params = GRAPHS[name]
    return [NODES[n] for n in nodes], str(share_file("config", params))
