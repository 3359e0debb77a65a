"""One source per setting: each node's settings dataclass holds config/sim.yaml's values as its
defaults, every key of a node's own YAML section is one of its settings, and robot-side node
modules load no simulator."""
import dataclasses
import subprocess
import sys

import pytest
import yaml

pytest.importorskip("rclpy")

from robot_rl.control.actor_core import ActorSettings  # noqa: E402
from robot_rl.paths import share_file  # noqa: E402

ROS_ONLY = {"use_sim_time"}  # rclpy's own parameter


def _node_settings():
    from robot_rl.nodes.teleop import TeleopSettings
    from robot_rl.nodes.twin import TwinSettings

    return {"actor": ActorSettings, "twin": TwinSettings, "teleop": TeleopSettings}


def _yaml():
    return yaml.safe_load(open(share_file("config", "sim.yaml")))


def _as_plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _as_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_as_plain(v) for v in value]
    return value


def _check(node: str, cls) -> None:
    cfg = _yaml()
    shared = cfg["/**"]["ros__parameters"]
    own = cfg.get(node, {}).get("ros__parameters", {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(own) - names - ROS_ONLY)
    assert not unknown, f"{node}: YAML keys {unknown} are no setting of {cls.__name__}"
    defaults = _as_plain(cls())
    merged = {**shared, **own}
    for key in sorted(names & set(merged)):
        yaml_value, default = merged[key], defaults[key]
        if isinstance(yaml_value, dict):  # a nested section may name a subset of its fields
            default = {k: default[k] for k in yaml_value}
        assert _as_plain(yaml_value) == default or (isinstance(default, float) and yaml_value == pytest.approx(default)), \
            f"{node}.{key}: YAML says {yaml_value!r}, {cls.__name__} defaults to {default!r}"


@pytest.mark.parametrize("node", ["actor", "twin", "teleop"])
def test_node_defaults_are_the_shipped_yaml(node):
    _check(node, _node_settings()[node])


def test_a_changed_default_is_caught():
    @dataclasses.dataclass
    class Drifted(ActorSettings):
        teleop_wait_s: float = 0.5

    with pytest.raises(AssertionError, match="teleop_wait_s"):
        _check("actor", Drifted)


def test_one_control_period():
    """rate_hz is the only control period: the safety filter's acceleration bound follows it."""
    from robot_rl.control.actor_core import ActorCore

    class Quiet:
        def log(self, *a):
            pass

    fast = ActorCore(ActorSettings(rate_hz=20.0, run_dir="/nonexistent-run"), Quiet())
    slow = ActorCore(ActorSettings(rate_hz=10.0, run_dir="/nonexistent-run"), Quiet())
    assert fast.safety.control_dt == pytest.approx(0.05) and slow.safety.control_dt == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown safety keys"):
        from robot_rl.safety import SafetyConfig

        SafetyConfig.from_dict({"control_dt": 0.1})


@pytest.mark.parametrize("module", ["robot_rl.nodes.actor", "robot_rl.nodes.learner", "robot_rl.nodes.teleop"])
def test_robot_side_nodes_load_no_simulator(module):
    code = (f"import sys, {module}; "
            "bad = [m for m in ('mujoco', 'robot_rl.twin.env') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{module} loads {r.stdout.strip()} {r.stderr[-500:]}"


def test_the_wire_loads_no_store():
    r = subprocess.run([sys.executable, "-c", "import sys, robot_rl.codec; "
                        "sys.exit(1 if any(m.startswith('robot_rl.data') for m in sys.modules) else 0)"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-500:]
