"""Brings a graph up as one process per node, the way `ros2 launch` would, without ros2 launch.

Same nodes (robot_rl.graph), same parameter file, same code; each node's output goes to
<run_dir>/logs/<node>.log. Stopping is SIGTERM (nodes own their shutdown), then SIGKILL after a
grace period. The nodes' pids are in <run_dir>/pids.json (kept current across restarts), for
operators and tests.

Restart (`respawn` in ros2 launch terms): a node named in `restartable` (the learner: it resumes
from its checkpoint and the actor's store, robot_rl/nodes/learner.py) is started again by
restart(); the caller decides when (robot_rl.cli.run_graph).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from robot_rl.graph import NodeSpec, namespaced_params, node_key


def ros_arg(value) -> str:
    """A Python value as a YAML scalar, as rcl parses parameter files."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        try:  # "20" from the command line stays a number; anything else is quoted
            float(value)
            return value
        except ValueError:
            return json.dumps(value)
    return str(value)


def node_overrides(overrides: dict, node: str) -> dict:
    """The overrides one node gets: every plain key, plus those spelled `<node>/<key>` for it
    alone (the teleop's `driver` is not the camera nodes' `driver`)."""
    out = {k: v for k, v in overrides.items() if "/" not in k}
    out.update({k.split("/", 1)[1]: v for k, v in overrides.items() if k.startswith(node + "/")})
    return out


def _die_with_parent() -> None:
    """Linux: the node gets SIGTERM if the process that launched it dies, even by SIGKILL, so a
    killed `robot-rl` never leaves a graph running behind it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Graph:
    def __init__(self, nodes: list[NodeSpec], params_file, overrides: dict, run_dir: Path, env: dict | None = None,
                 namespace: str = ""):
        self.nodes = nodes
        # one params file or several, later ones winning (robot.yaml, then robot_twin.yaml)
        self.params_files = [params_file] if isinstance(params_file, (str, Path)) else list(params_file)
        self.namespace = namespace  # a cell of its own on a shared ROS domain (cell_a/...)
        self.overrides = overrides
        self.run_dir = Path(run_dir)
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, object] = {}
        self.restarts: dict[str, int] = {}

    def overrides_file(self) -> Path:
        """The run's overrides as a second params file: a node's own section in the first file
        would win over `-p` (a wildcard rule), while a later file's section wins over both."""
        path = self.run_dir / "overrides.yaml"
        lines = []
        for spec in self.nodes:
            mine = node_overrides(self.overrides, spec.name)
            lines += [f"{node_key(spec.name, self.namespace)}:", "  ros__parameters:"]
            lines += [f"    {k}: {ros_arg(v)}" for k, v in mine.items()] or ["    {}"]
        path.write_text("\n".join(lines) + "\n")
        return path

    def command(self, spec: NodeSpec) -> list[str]:
        files = namespaced_params(self.params_files, self.namespace, self.run_dir) + [str(self.overrides_file())]
        ns = ["-r", f"__ns:=/{self.namespace.strip('/')}"] if self.namespace else []
        return [sys.executable, "-m", spec.module, "--ros-args", "-r", f"__node:={spec.name}", *ns] + \
            [a for f in files for a in ("--params-file", f)]

    def start(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        for spec in self.nodes:
            self._spawn(spec, "w")
        self._write_pids()

    def _spawn(self, spec: NodeSpec, mode: str) -> None:
        log = open(self.run_dir / "logs" / f"{spec.name}.log", mode)
        self._logs[spec.name] = log
        self.procs[spec.name] = subprocess.Popen(
            self.command(spec), stdout=log, stderr=subprocess.STDOUT, env=self.env,
            # SIGINT is ours to forward: a Ctrl-C in the terminal reaches us only.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def restart(self, name: str, why: str = "") -> None:
        """Start a node that exited again, its log continued (both lives stay readable)."""
        spec = next(s for s in self.nodes if s.name == name)
        old = self.procs[name]
        if old.poll() is None:
            raise RuntimeError(f"{name} is still running (pid {old.pid})")
        self._logs[name].close()
        self.restarts[name] = self.restarts.get(name, 0) + 1
        with open(self.run_dir / "logs" / f"{name}.log", "a") as log:
            log.write(f"\n----- restart {self.restarts[name]} of {name} "
                      f"(exit code {old.returncode}{': ' + why if why else ''}) -----\n")
        self._spawn(spec, "a")
        self._write_pids()

    def _write_pids(self) -> None:
        path = self.run_dir / "pids.json"
        tmp = path.with_name(path.name + ".tmp")  # replaced whole: a reader never sees half of it
        tmp.write_text(json.dumps({"supervisor": os.getpid(), "nodes": {n: p.pid for n, p in self.procs.items()},
                                   "restarts": self.restarts}, indent=1))
        os.replace(tmp, path)

    def dead(self) -> dict[str, int]:
        """Nodes that exited, with their exit codes."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def stop(self, names=None, grace_s: float = 20.0) -> dict[str, int]:
        names = list(names or self.procs)
        for n in names:
            p = self.procs[n]
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for n in names:
            p = self.procs[n]
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return {n: self.procs[n].returncode for n in names}

    def close(self) -> None:
        self.stop()
        for log in self._logs.values():
            log.close()

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.run_dir / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
