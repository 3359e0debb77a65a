"""Calibration results of a robot cell (camera intrinsics and extrinsics) as plain data."""
from robot_rl.calibration.cell import (
    CameraCalibration,
    CellCalibration,
    load_cell,
    look_at,
    optical_to_mujoco_quat,
)

__all__ = ["CameraCalibration", "CellCalibration", "load_cell", "look_at", "optical_to_mujoco_quat"]
