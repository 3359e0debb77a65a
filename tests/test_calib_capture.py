"""`robot-rl calibrate capture` from live topics: views and ee poses land in the layout that
`calibrate intrinsics` / `calibrate handeye` read, with the motion advice; no graph -> a clear
error naming the topics."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from conftest import SpunNode  # noqa: E402
from robot_rl import codec, contract as C  # noqa: E402
from robot_rl.calibration.handeye import load_poses  # noqa: E402
from robot_rl.nodes.ros import publisher  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Cell(SpunNode):
    """A camera node and robot_state stand-in in namespace `cell`: images and a turning ee pose."""

    def __init__(self):
        super().__init__("cell_stand_in")
        self.img = publisher(self.node, C.camera_topic("front"), namespace="cell")
        self.pose = publisher(self.node, C.EE_POSE, namespace="cell")
        self.k = 0
        self.node.create_timer(0.05, self._tick)
        self.start()

    def _tick(self):
        t = self.node.get_clock().now().nanoseconds * 1e-9
        self.k += 1
        img = np.full((48, 64, 3), self.k % 255, np.uint8)
        self.img.publish(codec.image_msg(img, t, "front_optical_frame"))
        a = 0.05 * self.k  # the flange turns about z while the views are taken
        self.pose.publish(codec.pose_stamped_msg([0.5, 0.0, 0.3], [np.cos(a / 2), 0, 0, np.sin(a / 2)], t, "base_link"))


def test_capture_writes_views_and_poses(tmp_path):
    cell = Cell()
    try:
        p = subprocess.run([sys.executable, "-m", "robot_rl.cli", "calibrate", "capture", str(tmp_path / "views"),
                            "--camera", "front", "--poses", "--count", "3", "--every", "0.3"],
                           capture_output=True, text=True, timeout=90, cwd=ROOT)
    finally:
        cell.close()
    assert p.returncode == 0, p.stdout + p.stderr
    views = sorted((tmp_path / "views").glob("view_*.png"))
    assert [v.name for v in views] == ["view_000.png", "view_001.png", "view_002.png"]
    poses = load_poses(tmp_path / "views/poses.yaml")
    assert set(poses) == {v.name for v in views}
    assert not np.allclose(poses["view_000.png"], poses["view_002.png"]), "each view has the pose of its moment"
    assert "motion:" in p.stdout, "the person is told what the hand-eye motion still lacks"


def test_capture_without_a_graph_names_the_topics(tmp_path):
    p = subprocess.run([sys.executable, "-m", "robot_rl.cli", "calibrate", "capture", str(tmp_path / "v"),
                        "--camera", "front", "--poses", "--count", "1", "--timeout", "2"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 2
    assert "/cell/camera/front/image_raw" in p.stderr and "Traceback" not in p.stderr
