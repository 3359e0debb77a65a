"""`robot-rl calibrate capture OUT --camera front [--poses]`: calibration views captured live
from the robot graph, into the folder + poses-file layout that `calibrate intrinsics` and
`calibrate handeye` read.

It listens to the contract's camera/<camera>/image_raw (the camera node) and, with --poses, to
ee_pose (robot_state: the TCP in the base frame, so the hand-eye result's parent is the model's
`ee` site), in the cell's namespace. Each capture writes view_NNN.png and, with --poses, the
pose of that moment into OUT/poses.yaml. After each capture it says how many views there are and
what the hand-eye motion still lacks (robot_rl.calibration.handeye.check_motion), so the person
knows when to stop and which way to turn the arm next.

Interactive: Enter captures, q + Enter ends. Unattended (--every S --count N): N captures S
seconds apart (a scripted robot motion, or a test).
"""
from __future__ import annotations

import select
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
import rclpy.executors
from rclpy.signals import SignalHandlerOptions

from robot_rl import codec, contract as C
from robot_rl.nodes.ros import subscription

MAX_AGE_S = 0.5  # a pose older than this (against the image) is not the pose of that image


def capture(out_dir, camera: str, with_poses: bool, namespace: str = "cell", every_s: float = 0.0,
            count: int = 0, timeout_s: float = 30.0, say=print) -> int:
    """Capture views; returns how many were written."""
    from robot_rl.calibration.board import CalibrationError
    from robot_rl.calibration.cell import quat_to_mat
    from robot_rl.calibration.handeye import check_motion, make_pose, save_poses

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    node = rclpy.create_node("calib_capture", namespace=ns, context=ctx)
    executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    latest: dict = {}
    subscription(node, C.camera_topic(camera), lambda m: latest.update(image=m))
    if with_poses:
        subscription(node, C.EE_POSE, lambda m: latest.update(pose=m))
    poses: dict = {}
    written = 0
    try:
        deadline = time.monotonic() + timeout_s
        while "image" not in latest or (with_poses and "pose" not in latest):
            executor.spin_once(timeout_sec=0.05)
            if time.monotonic() > deadline:
                missing = [n for n in ("image", "pose") if n not in latest and (n == "image" or with_poses)]
                raise CalibrationError(f"nothing heard on {', '.join(_topic(node, camera, n) for n in missing)} "
                                       f"within {timeout_s:g} s: is the robot graph up in namespace {namespace!r}?")
        say(f"capturing {camera} into {out}" + (" with ee poses" if with_poses else "")
            + (": Enter captures, q + Enter ends" if not count else f": {count} views, {every_s:g} s apart"))
        next_at = time.monotonic()
        while not count or written < count:
            executor.spin_once(timeout_sec=0.02)
            if count:
                if time.monotonic() < next_at:
                    continue
                next_at = time.monotonic() + every_s
            else:
                ready, _, _ = select.select([sys.stdin], [], [], 0.0)
                if not ready:
                    continue
                if sys.stdin.readline().strip().lower() == "q":
                    break
            img_msg = latest["image"]
            name = f"view_{written:03d}.png"
            _write_png(out / name, codec.image_from_msg(img_msg))
            if with_poses:
                pose_msg = latest["pose"]
                age = abs(codec.from_stamp(img_msg.header.stamp) - codec.from_stamp(pose_msg.header.stamp))
                if age > MAX_AGE_S:
                    say(f"  {name}: the ee pose is {age:.2f} s off the image: hold the arm still and capture again")
                    (out / name).unlink()
                    continue
                pos, quat = codec.pose_from_msg(pose_msg.pose)
                poses[name] = make_pose(quat_to_mat(quat), pos)
                save_poses(out / "poses.yaml", poses)  # after each view: a crash keeps what was taken
            written += 1
            say(f"  {name} ({written} views)" + (f"; motion: {_motion_advice(check_motion, poses, CalibrationError)}"
                                                if with_poses else ""))
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    return written


def _motion_advice(check_motion, poses: dict, error_type) -> str:
    try:
        check_motion(list(poses.values()))
        return "enough views and rotation for hand-eye"
    except error_type as e:
        return str(e)


def _topic(node, camera: str, what: str) -> str:
    return node.resolve_topic_name(C.camera_topic(camera) if what == "image" else C.EE_POSE)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"cannot write {path}")
