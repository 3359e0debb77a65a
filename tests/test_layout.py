"""Architecture rules that code review alone would let slip."""
import pkgutil
import subprocess
import sys

import robot_rl


def _core_modules():
    for m in pkgutil.walk_packages(robot_rl.__path__, "robot_rl."):
        if not m.name.startswith("robot_rl.nodes") and m.name != "robot_rl.cli":
            yield m.name


def test_core_imports_no_rclpy():
    mods = list(_core_modules())
    assert "robot_rl.codec" in mods and "robot_rl.safety" in mods
    code = "import sys\n" + "".join(f"import {m}\n" for m in mods) + \
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'rclpy')\nprint(bad)\nsys.exit(1 if bad else 0)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_topic_names_are_spelled_only_in_the_contract():
    import pathlib
    root = pathlib.Path(robot_rl.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name in ("contract.py", "names.py"):
            continue
        text = path.read_text()
        for name in ('"command/twist"', '"learner/policy"', '"joint_states"', '"teleop/engaged"', '"task/status"'):
            if name in text:
                offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders
