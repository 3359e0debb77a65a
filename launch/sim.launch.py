"""ros2 launch robot_rl sim.launch.py [params_file:=...] [reward:=twin|classifier] [classifier:=model.onnx]

The whole graph with the twin as robot. The node list comes from robot_rl.graph.sim_graph, the
parameters from config/sim.yaml (+ config/sim_classifier.yaml with reward:=classifier): the same
description `robot-rl sim` brings up without ros2 launch.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from robot_rl.graph import graph, sim_graph

ARGS = {
    "params_file": (graph("sim")[1], "the sim graph's params (default config/sim.yaml)"),
    "reward": ("twin", "who says success: twin (its own check) | classifier (the reward classifier; "
                       "the twin's check becomes ground truth on twin/ground_truth)"),
    "classifier": ("", "with reward:=classifier: the classifier.onnx (robot-rl classifier train)"),
}


def _nodes(context):
    arg = {k: LaunchConfiguration(k).perform(context) for k in ARGS}
    nodes, params = sim_graph(arg["reward"], arg["params_file"])
    extra = {"reward_classifier": {"model": arg["classifier"]}} if arg["classifier"] else {}
    # the learner resumes from its checkpoint and the actor's store when respawned
    return [Node(package="robot_rl", executable=spec.executable, name=spec.name,
                 parameters=params + [extra.get(spec.name, {})], output="screen", emulate_tty=True,
                 respawn=spec.name == "learner", respawn_delay=1.0)
            for spec in nodes]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
        + [OpaqueFunction(function=_nodes)])
