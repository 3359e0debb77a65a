"""robot_rl: a ROS 2 real-robot learning stack (twin, actor, learner, zarr store)."""

__version__ = "0.1.0"
