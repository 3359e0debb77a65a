"""Frame ids and name patterns that the ROS-free core needs too (contract.py re-exports them)."""

BASE_FRAME = "base_link"
GRIPPER_JOINT = "gripper"


def camera_frame(name: str) -> str:
    """Optical frame of a camera (z forward, x right, y down), as in REP 103."""
    return f"{name}_optical_frame"


def camera_topic(name: str) -> str:
    return f"camera/{name}/image_raw"


def camera_info_topic(name: str) -> str:
    return f"camera/{name}/camera_info"
