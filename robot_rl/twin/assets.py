"""Where the twin's files live: the repository's sim/ and calibration/ folders, or the
share/robot_rl/ folder an installed package puts them in (setup.py data_files)."""
from __future__ import annotations

import sys
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[2]


def asset_path(folder: str, name: str) -> Path:
    """Path of sim/<name> or calibration/<name>; FileNotFoundError naming the places looked."""
    candidates = [_REPO_ROOT / folder / name, Path(sys.prefix) / "share" / "robot_rl" / folder / name]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{folder}/{name} not found; looked in {[str(c) for c in candidates]}")
