"""One description of the graph: the launch files and the CLI read the same nodes and config."""
import ast
import importlib
from pathlib import Path

import yaml

from robot_rl.bringup import Graph
from robot_rl.graph import GRAPHS, graph

ROOT = Path(__file__).resolve().parents[1]


def test_every_graph_resolves_to_real_modules_and_config():
    for name in GRAPHS:
        nodes, params = graph(name)
        assert Path(params).exists()
        cfg = yaml.safe_load(Path(params).read_text())
        for spec in nodes:
            assert spec.name in cfg, f"{params} has no section for node {spec.name}"
            mod = importlib.import_module(spec.module)
            assert callable(mod.main)


def test_console_scripts_match_the_graph():
    text = (ROOT / "setup.py").read_text()
    for name, (nodes, _) in GRAPHS.items():
        for n in nodes:
            assert f'"{n}"' in text  # NODES list in setup.py makes <n>_node scripts


def test_launch_files_use_the_graph_description():
    for path in (ROOT / "launch").glob("*.launch.py"):
        tree = ast.parse(path.read_text())
        calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        assert {"graph", "robot_graph"} & set(calls), f"{path.name} does not read robot_rl.graph"


def test_cli_overrides_win_over_node_sections(tmp_path):
    nodes, params = graph("sim")
    g = Graph(nodes, params, {"max_steps": 7, "policy_cameras": "", "run_dir": "/tmp/x y"}, tmp_path)
    cmd = g.command(nodes[0])
    assert cmd.index("--params-file") < len(cmd) - 2  # two files: the config, then the overrides
    over = yaml.safe_load(g.overrides_file().read_text())
    for spec in nodes:
        assert over[spec.name]["ros__parameters"] == {"max_steps": 7, "policy_cameras": "", "run_dir": "/tmp/x y"}


def test_cli_param_values_are_typed_like_ros2_run():
    from robot_rl.cli import _parse_params

    got = _parse_params(["publish_every:=15", "agent.conv_channels:=[8, 8]", "wait_for_learner:=false",
                         "policy_cameras:=front,wrist", "policy_cameras_none:=", "run_dir:=/tmp/x y",
                         "agent.lr:=0.001"])
    assert got == {"publish_every": 15, "agent.conv_channels": [8, 8], "wait_for_learner": False,
                   "policy_cameras": "front,wrist", "policy_cameras_none": "", "run_dir": "/tmp/x y",
                   "agent.lr": 0.001}


def test_robot_graph_resolves_and_its_params_are_settings():
    """Every node of the robot graph (twin or not) has a section in its params files, every key
    there is a setting of that node (a typo fails here, not on the robot), and the launch file
    names only real executables (setup.py console scripts) and its arguments."""
    import dataclasses

    from robot_rl.graph import robot_graph

    text = (ROOT / "setup.py").read_text()
    for use_twin, extra, reward in ((False, [], "operator"), (True, [], "operator"),
                                    (False, [str(ROOT / "config/robot_ur.yaml")], "classifier")):
        nodes, params = robot_graph(["front", "wrist"], use_twin=use_twin, teleop=True, learner=True, reward=reward)
        params = params + extra
        merged: dict = {}
        for path in params:
            assert Path(path).exists(), path
            for section, body in yaml.safe_load(Path(path).read_text()).items():
                merged.setdefault(section, {}).update(body["ros__parameters"])
        for spec in nodes:
            assert spec.name in merged or spec.name in ("teleop", "task_status"), f"no section for {spec.name}"
            assert f"{spec.executable} = {spec.module}:main" in text or f'"{spec.executable.removesuffix("_node")}"' in text, \
                f"setup.py has no console script {spec.executable}"
            mod = importlib.import_module(spec.module)
            assert callable(mod.main)
            cls = _settings_class(mod)
            if cls is None:
                continue
            names = {f.name for f in dataclasses.fields(cls)} | {"use_sim_time"}
            keys = set(merged.get(spec.name, {})) | set(merged["/**"])
            own = set(merged.get(spec.name, {}))
            assert not own - names, f"{spec.name}: {sorted(own - names)} are no settings of {cls.__name__}"
            assert keys  # the shared section reaches it too


def _settings_class(module):
    import dataclasses

    found = [v for k, v in vars(module).items() if dataclasses.is_dataclass(v) and k.endswith("Settings")
             and getattr(v, "__module__", "").startswith("robot_rl")]
    return found[0] if len(found) == 1 else None


def test_per_node_overrides(tmp_path):
    from robot_rl.graph import robot_graph

    nodes, params = robot_graph(["front"], use_twin=True, teleop=True)
    g = Graph(nodes, params, {"max_steps": 5, "teleop/driver": "keyboard"}, tmp_path, namespace="cell_a")
    over = yaml.safe_load(g.overrides_file().read_text())
    assert over["/cell_a/teleop"]["ros__parameters"] == {"max_steps": 5, "driver": "keyboard"}
    assert over["/cell_a/camera_front"]["ros__parameters"] == {"max_steps": 5}
    cmd = g.command(nodes[0])
    assert "__ns:=/cell_a" in cmd and cmd.count("--params-file") == len(params) + 1


def test_the_robot_graph_has_one_reward_source():
    from robot_rl.graph import robot_graph

    names = lambda **kw: [n.name for n in robot_graph([], **kw)[0]]  # noqa: E731
    assert "task_status" in names() and "reward_classifier" not in names()
    assert "reward_classifier" in names(reward="classifier") and "task_status" not in names(reward="classifier")
    assert not {"task_status", "reward_classifier"} & set(names(use_twin=True)), "the twin is the source there"
