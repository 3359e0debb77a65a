"""The robot half's plain code: what turns a lab's driver topics into the contract and the
contract's commands into what the lab's controllers take. ROS-free (the nodes in
robot_rl/nodes/robot_state.py and command_adapter.py convert messages and call these)."""
