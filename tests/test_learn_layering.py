"""robot_rl/learn/ is the learning core: models, updates, export. It reads plain batches and
writes plain files; it must not reach up into the replay/store (data/), the simulator (twin/) or
the training loops that drive it (training/). Checked on the source, statically, so an import
hidden in a function body counts too."""
import ast
from pathlib import Path

import robot_rl

LEARN = Path(robot_rl.__file__).parent / "learn"
FORBIDDEN = ("robot_rl.data", "robot_rl.twin", "robot_rl.training")


def imported_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against robot_rl.learn
                base = "robot_rl.learn".rsplit(".", node.level - 1)[0] if node.level > 1 else "robot_rl.learn"
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)  # `from robot_rl import twin`
    return out


def test_learn_imports_neither_data_twin_nor_training():
    files = sorted(LEARN.glob("*.py"))
    assert len(files) >= 5  # the scan sees the package
    bad = {f.name: sorted(m for m in imported_modules(f) if m.startswith(FORBIDDEN))
           for f in files}
    assert not {k: v for k, v in bad.items() if v}, bad


def test_the_scan_sees_imports_in_function_bodies(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from robot_rl import twin\n    from ..data.replay import MixedReplay\n")
    assert {"robot_rl.twin", "robot_rl.data.replay"} <= imported_modules(src)
