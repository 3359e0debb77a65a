"""ros2 launch robot_rl learner.launch.py [params_file:=...]: the learner alone, e.g. on a GPU box
on the robot's ROS domain. Same node and parameters as in the sim graph."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from robot_rl.graph import graph


def generate_launch_description():
    nodes, default_params = graph("learner")
    params = LaunchConfiguration("params_file")
    actions = [DeclareLaunchArgument("params_file", default_value=default_params)]
    for spec in nodes:
        # respawned if it dies: it resumes from its checkpoint (and the actor's store, if here)
        actions.append(Node(package="robot_rl", executable=spec.executable, name=spec.name,
                            parameters=[params], output="screen", emulate_tty=True,
                            respawn=spec.name == "learner", respawn_delay=1.0))
    return LaunchDescription(actions)
