"""Each test run gets its own ROS domain, on localhost only, so parallel runs never hear each other."""
import os
import random

os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little")).randint(1, 100)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")
