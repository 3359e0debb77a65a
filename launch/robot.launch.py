"""ros2 launch robot_rl robot.launch.py [cameras:=front,wrist] [use_twin:=false] [teleop:=spacemouse]
[namespace:=cell_a] [params_file:=...] [cell:=my_cell.yaml] [policy:=actor.onnx]

The robot graph from robot_rl.graph.robot_graph and config/robot.yaml (+ config/robot_twin.yaml
with use_twin): the nodes `robot-rl robot` brings up without ros2 launch. The lab's own drivers
(franka_ros2 / ur_robot_driver, MoveIt Servo, realsense2_camera if preferred) run beside it.
The learner runs on a GPU box: learner.launch.py params_file:=<share>/config/robot.yaml.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

import tempfile

from robot_rl.graph import namespaced_params, robot_graph

ARGS = {
    "cameras": ("front", "camera nodes, e.g. front,wrist (sections camera_<name> in the params)"),
    "use_twin": ("false", "the twin poses as the cell's drivers (no hardware)"),
    "teleop": ("spacemouse", "teleop driver: spacemouse|gamepad|keyboard|spacemouse+keyboard|none"),
    "namespace": ("cell", "the cell's namespace: the contract's relative topics (joint_states, ...) must not "
                          "land on the driver's /joint_states; cell_a, cell_b for two cells on one domain"),
    "params_file": ("", "a params file on top of config/robot.yaml"),
    "cell": ("", "the cell's calibration YAML for the camera nodes ('' = the params file's)"),
    "policy": ("", "an ONNX actor to run from the start"),
    "reward": ("operator", "who says success: operator (task_status) | classifier (reward_classifier)"),
}


def _nodes(context):
    arg = {k: LaunchConfiguration(k).perform(context) for k in ARGS}
    cameras = [c for c in arg["cameras"].split(",") if c]
    use_twin = arg["use_twin"].lower() in ("1", "true", "yes")
    nodes, params = robot_graph(cameras, use_twin=use_twin, teleop=arg["teleop"] != "none", reward=arg["reward"])
    params = params + ([arg["params_file"]] if arg["params_file"] else [])
    # sections keyed /<namespace>/<node>: rcl matches the fully qualified node name
    params = namespaced_params(params, arg["namespace"], tempfile.mkdtemp(prefix="robot_rl_params_"))
    extra = {"teleop": {"driver": arg["teleop"]}}
    if arg["policy"]:
        extra["actor"] = {"policy_file": arg["policy"]}
    if arg["cell"]:
        extra.update({spec.name: {"cell": arg["cell"]} for spec in nodes if spec.name.startswith("camera_")})
    return [Node(package="robot_rl", executable=spec.executable, name=spec.name, namespace=arg["namespace"],
                 parameters=params + [extra.get(spec.name, {})], output="screen", emulate_tty=True,
                 respawn=spec.name == "learner")
            for spec in nodes]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
        + [OpaqueFunction(function=_nodes)])
