"""Where the package's config/, sim/ and calibration/ files are, however it was installed.

A source checkout has them beside the package; `pip install` and `colcon build` put them in
<prefix>/share/robot_rl/ (setup.py's data_files), the ROS way.
"""
from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "robot_rl"


def share_dirs() -> list[Path]:
    dirs = [Path(__file__).resolve().parents[1]]  # source checkout
    dirs.append(Path(sys.prefix) / "share" / PACKAGE)
    try:  # a sourced ROS workspace
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # noqa: BLE001  no ament index: not a ROS install
        pass
    return dirs


def share_file(kind: str, name: str) -> Path:
    """share_file("config", "sim.yaml") -> the first existing copy; a clear error if none."""
    p = Path(name)
    if p.is_absolute() or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"{kind} file {p} does not exist")
        return p.resolve()
    tried = []
    for d in share_dirs():
        candidate = d / kind / name
        tried.append(str(candidate))
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no {kind}/{name}; looked in: " + ", ".join(tried))
