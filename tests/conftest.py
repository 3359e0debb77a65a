"""Each test run gets its own ROS domain, on localhost only, so parallel runs never hear each other."""
import os

from robot_rl.ros_domain import free_domain

os.environ.setdefault("ROS_DOMAIN_ID", str(free_domain()))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def own_domain_env() -> dict:
    """The environment for a whole-graph run that needs no listener in this test process: a ROS
    domain of its own, so nodes of an earlier graph still leaving can never answer its nodes."""
    return dict(os.environ, ROS_DOMAIN_ID=str(free_domain(exclude=[int(os.environ["ROS_DOMAIN_ID"])])))
