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
        assert "graph" in calls, f"{path.name} does not read robot_rl.graph"


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
