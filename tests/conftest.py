"""Each test run gets its own ROS domain, on localhost only, so parallel runs never hear each other."""
import os

from robot_rl.ros_domain import free_domain

os.environ.setdefault("ROS_DOMAIN_ID", str(free_domain()))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def own_domain_env() -> dict:
    """The environment for a whole-graph run that needs no listener in this test process: a ROS
    domain of its own, so nodes of an earlier graph still leaving can never answer its nodes."""
    return dict(os.environ, ROS_DOMAIN_ID=str(free_domain(exclude=[int(os.environ["ROS_DOMAIN_ID"])])))


class SpunNode:
    """A test's own ROS node, as an outside tool would run one: its own rclpy context on this
    run's domain, spun on a background thread from start() until close(). Subclasses create
    their publishers and subscriptions on self.node, then call start()."""

    def __init__(self, name: str):
        import threading

        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self._rclpy = rclpy
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _spin(self):
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.02)

    def close(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.node.destroy_node()
        self._rclpy.shutdown(context=self.ctx)


def spawn_node(module: str, log_path, params: dict | None = None, namespace: str = ""):
    """A node as its own process, as ros2 run would start it: `-p name:=value` per parameter,
    output to log_path."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", module, "--ros-args"] + (["-r", f"__ns:={namespace}"] if namespace else [])
    for k, v in (params or {}).items():
        cmd += ["-p", f"{k}:={v}"]
    return subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def stop_process(proc, timeout: float = 20.0) -> int:
    """SIGTERM (nodes own their shutdown), then SIGKILL; the exit code."""
    import subprocess

    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def wait_for(cond, timeout: float, what: str = "a condition") -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
