"""Camera drivers as plain code (no ROS): RealSense (pyrealsense2) and any OpenCV VideoCapture
source, behind one small interface (base.Camera). nodes/camera.py wraps them."""
from robot_rl.sensors.base import Camera, CameraError, Frame, StreamInfo, open_camera  # noqa: F401
from robot_rl.sensors.clock import DeviceClock, FrameStats  # noqa: F401
from robot_rl.sensors.intrinsics import resolve_intrinsics  # noqa: F401
