"""ament_python package that also installs with plain pip (no ROS distribution needed)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "robot_rl"
NODES = ["twin", "actor", "learner", "teleop", "camera", "robot_state", "command_adapter", "task_status", "twin_driver", "reward_classifier"]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/sim", glob("sim/*.xml")),
        (f"share/{PACKAGE}/calibration", glob("calibration/*.yaml")),
    ],
    package_data={PACKAGE: ["assets/*"]},
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6",
        "mujoco>=3.1",
        "gymnasium>=1.0",
        "zarr>=3.0",
        "numcodecs>=0.13",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "torch>=2.3",  # the set-up script installs torch==2.13.0 (CPU) first
        "tqdm>=4.60",
        "tensorboard>=2.14",  # event files for `tensorboard --logdir runs/` (pretrain, learner node)
        "matplotlib>=3.7",
        "imageio>=2.30",
        "imageio-ffmpeg>=0.5",  # mp4 export (ships its own ffmpeg binary)
        # Robot-side drivers: real code, run in tests against the twin and recorded streams.
        "opencv-python-headless>=4.8",  # OpenCV cameras, calibration boards (no Qt: headless PCs)
        "pyrealsense2>=2.55",  # Intel RealSense (needs libusb-1.0-0 from apt: setup.sh)
        "pyspacemouse>=1.1",  # 3Dconnexion SpaceMouse over hidapi (libhidapi from apt: setup.sh)
        "evdev>=1.6; sys_platform == 'linux'",  # gamepads through the Linux input layer
    ],
    extras_require={
        # ROS 2 from PyPI wheels, for machines without a ROS distribution.
        "ros-wheels": [
            "ros-rclpy",
            "ros-std-msgs",
            "ros-sensor-msgs",
            "ros-geometry-msgs",
            "ros-diagnostic-msgs",
            "ros-std-srvs",  # the actor's clear_estop service (Trigger)
            "ros-rmw-fastrtps-cpp",
        ],
        "test": ["pytest>=7"],
    },
    entry_points={
        "console_scripts": [f"{n}_node = {PACKAGE}.nodes.{n}:main" for n in NODES]
        + ["robot-rl = robot_rl.cli:main"],
    },
)
