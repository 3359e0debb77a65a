"""One description of each ROS graph, used by launch/*.launch.py and by `robot-rl sim`.

A graph is a list of nodes (name, console script, module) and the parameter files they read.
ROS-free: launch files turn it into launch_ros Node actions, the CLI into processes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    # The robot half: what runs beside a lab's own drivers.
    "robot_state": NodeSpec("robot_state", "robot_state_node", "robot_rl.nodes.robot_state"),
    "command_adapter": NodeSpec("command_adapter", "command_adapter_node", "robot_rl.nodes.command_adapter"),
    "task_status": NodeSpec("task_status", "task_status_node", "robot_rl.nodes.task_status"),
    "twin_driver": NodeSpec("twin_driver", "twin_driver_node", "robot_rl.nodes.twin_driver"),
    "reward_classifier": NodeSpec("reward_classifier", "reward_classifier_node", "robot_rl.nodes.reward_classifier"),
}

GRAPHS = {
    # The twin stands in for the robot's drivers; everything else is what runs on the robot.
    "sim": (["learner", "actor", "teleop", "twin"], "sim.yaml"),
    "learner": (["learner"], "sim.yaml"),
    # The learner for a robot (a GPU box on the robot's ROS domain): wall time, robot.yaml.
    "robot_learner": (["learner"], "robot.yaml"),
    # Recording demonstrations through the graph: the teleop drives every step, no learner.
    "record": (["actor", "teleop", "twin"], "sim.yaml"),
}


def camera_node(camera: str) -> NodeSpec:
    """One camera node per camera, named camera_<camera> (its section in the params file)."""
    return NodeSpec(f"camera_{camera}", "camera_node", "robot_rl.nodes.camera")


def robot_graph(cameras=(), use_twin: bool = False, teleop: bool = True, learner: bool = False,
                reward: str = "operator") -> tuple[list[NodeSpec], list[str]]:
    """The robot graph -> (nodes in start order, params files in order, later ones winning).

    On the robot: a camera node per camera, the state adapter and the command adapters beside
    the lab's drivers, the actor on its wall-clock timer, the person's teleop device and the
    operator's episode status (task_status). The learner usually runs on a GPU box
    (`robot-rl learner`). use_twin: the twin poses as the cell's drivers (config/robot_twin.yaml
    on top of config/robot.yaml) and, as the cell's reward source, replaces task_status.
    reward: who says an episode succeeded: `operator` (task_status, the person's keys) or
    `classifier` (reward_classifier on a camera; the person's keys still override it). One
    source only: two would publish two episode counts on task/status.
    """
    if reward not in ("operator", "classifier"):
        raise ValueError(f"reward must be operator or classifier, not {reward!r}")
    names = (["twin_driver"] if use_twin else []) + ["robot_state", "command_adapter"]
    names += (["learner"] if learner else []) + ["actor"]
    source = "task_status" if reward == "operator" else "reward_classifier"
    names += (["teleop"] if teleop else []) + ([] if use_twin else [source])
    nodes = [camera_node(c) for c in cameras] + [NODES[n] for n in names]
    if use_twin:  # the drivers first: the rest of the graph reads them
        nodes.insert(0, nodes.pop(len(cameras)))
    params = [str(share_file("config", "robot.yaml"))]
    if use_twin:
        params.append(str(share_file("config", "robot_twin.yaml")))
    return nodes, params


def sim_graph(reward: str = "twin", params: str | None = None) -> tuple[list[NodeSpec], list[str]]:
    """The sim graph -> (nodes in start order, params files in order, later ones winning).

    reward: who says an episode succeeded: `twin` (its own success check, the default) or
    `classifier` (the reward classifier on a policy camera, as on a robot; the twin then only
    resets the scene when told and publishes its check as ground truth: config/sim_classifier.yaml).
    params: a params file in place of config/sim.yaml.
    """
    if reward not in ("twin", "classifier"):
        raise ValueError(f"reward must be twin or classifier, not {reward!r}")
    nodes, default = graph("sim")
    files = [params or default]
    if reward == "classifier":
        nodes.insert([n.name for n in nodes].index("twin"), NODES["reward_classifier"])
        files.append(str(share_file("config", "sim_classifier.yaml")))
    return nodes, files


def node_key(name: str, namespace: str = "") -> str:
    """A node's section name in a params file: rcl matches sections against the fully qualified
    name, so a node in a namespace needs /<ns>/<name> (a plain `actor:` matches /actor only)."""
    ns = namespace.strip("/")
    return f"/{ns}/{name}" if ns else name


def namespaced_params(files, namespace: str, out_dir) -> list[str]:
    """The params files with their node sections keyed for `namespace` (written to out_dir), so
    one config file serves every cell; unchanged without a namespace."""
    if not namespace.strip("/"):
        return [str(f) for f in files]
    import yaml

    out = []
    for i, f in enumerate(files):
        cfg = yaml.safe_load(Path(f).read_text()) or {}
        keyed = {(k if k.startswith("/") else node_key(k, namespace)): v for k, v in cfg.items()}
        path = Path(out_dir) / f"params_{i}_{Path(f).name}"
        path.write_text(yaml.safe_dump(keyed, sort_keys=False))
        out.append(str(path))
    return out


def graph(name: str) -> tuple[list[NodeSpec], str]:
    """-> (nodes in start order, absolute path of the params file)."""
    if name not in GRAPHS:
        raise ValueError(f"unknown graph {name!r}; known: {sorted(GRAPHS)}")
    nodes, params = GRAPHS[name]
    return [NODES[n] for n in nodes], str(share_file("config", params))
