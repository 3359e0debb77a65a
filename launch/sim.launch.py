"""ros2 launch robot_rl sim.launch.py [params_file:=...]: the whole graph with the twin as robot.

The node list comes from robot_rl.graph, the parameters from config/sim.yaml: the same
description `robot-rl sim` brings up without ros2 launch.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from robot_rl.graph import graph


def generate_launch_description():
    nodes, default_params = graph("sim")
    params = LaunchConfiguration("params_file")
    actions = [DeclareLaunchArgument("params_file", default_value=default_params)]
    for spec in nodes:
        actions.append(
            # the learner resumes from its checkpoint and the actor's store when respawned
            Node(package="robot_rl", executable=spec.executable, name=spec.name,
                 parameters=[params], output="screen", emulate_tty=True,
                 respawn=spec.name == "learner", respawn_delay=1.0)
        )
    return LaunchDescription(actions)
