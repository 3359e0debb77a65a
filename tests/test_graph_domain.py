"""Two graphs on one ROS domain would answer each other's nodes (two twins' observations mixed in
one store, a stranger's evaluation flag silencing this run's teleop). Test runs pick a domain no
process here uses, and `robot-rl sim` refuses a domain where its node names are already taken."""
import subprocess
import sys
import time

import pytest

pytest.importorskip("rclpy")

from conftest import SpunNode  # noqa: E402
from robot_rl.ros_domain import busy_domains, free_domain  # noqa: E402


@pytest.fixture
def stranger_twin():
    s = SpunNode("twin")  # a node of someone else's graph, on this run's domain
    yield s
    s.close()


def test_participants_are_counted_from_bound_ports(stranger_twin):
    import os

    from robot_rl.ros_domain import participants

    mine = int(os.environ["ROS_DOMAIN_ID"])
    assert participants(mine) >= 1 and participants(free_domain(exclude=[mine])) == 0


def test_a_domain_in_use_is_never_picked(stranger_twin):
    import os

    mine = int(os.environ["ROS_DOMAIN_ID"])
    assert mine in busy_domains()
    assert all(free_domain() != mine for _ in range(300))


def test_monitor_sees_a_live_graph_and_not_a_gone_one():
    from robot_rl.nodes.monitor import Monitor

    s = SpunNode("twin")
    mon = Monitor()
    try:
        assert mon.nodes_present(["twin", "actor"], leave_s=0) == ["twin"]
        s.close()  # its ports close with it: known gone at once, though discovery still lists it
        t0 = time.monotonic()
        assert mon.nodes_present(["twin", "actor"], leave_s=20) == [] and time.monotonic() - t0 < 5
    finally:
        mon.close()


def test_sim_refuses_a_domain_another_graph_runs_on(stranger_twin, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "robot_rl.cli", "sim", "--task", "pick_cube", "--steps", "5", "--demos", "0",
         "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "another graph already runs node(s) ['twin']" in proc.stdout
    assert not (run_dir / "store.zarr").exists() and not (run_dir / "logs").exists()
