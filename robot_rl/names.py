"""Topic names, frame ids and name patterns, spelled once for the ROS-free core too
(contract.py re-exports them and adds each topic's message type and QoS)."""

JOINT_STATES = "joint_states"
EE_POSE = "ee_pose"
OBJECT_POSES = "object_poses"
TASK_STATUS = "task/status"
# The twin's own success check while another node (the reward classifier) owns task/status:
# ground truth for measuring, never a reward.
TWIN_GROUND_TRUTH = "twin/ground_truth"
COMMAND_TWIST = "command/twist"
COMMAND_GRIPPER = "command/gripper"
TELEOP_TWIST = "teleop/twist"
TELEOP_GRIPPER = "teleop/gripper"
TELEOP_ENGAGED = "teleop/engaged"
TELEOP_EVENT = "teleop/event"
EVALUATING = "actor/evaluating"
ESTOP = "estop"
TRANSITIONS = "learner/transitions"
POLICY = "learner/policy"
LEARNER_PROGRESS = "learner/progress"
DEPLOY = "learner/deploy"  # the operator's deploy request (robot-rl deploy): a version, rollback, latest
DIAGNOSTICS = "/diagnostics"
CLOCK = "/clock"

BASE_FRAME = "base_link"
GRIPPER_JOINT = "gripper"


def camera_frame(name: str) -> str:
    """Optical frame of a camera (z forward, x right, y down), as in REP 103."""
    return f"{name}_optical_frame"


def camera_topic(name: str) -> str:
    return f"camera/{name}/image_raw"


def camera_info_topic(name: str) -> str:
    return f"camera/{name}/camera_info"
