"""Recovery times after a node is killed (SIGKILL, pid from the run's pids.json), medians over
repeats:

- learner, in the sim graph (`robot-rl sim`): kill -> the supervisor's restart -> the restarted
  learner's first published policy (its log) and first gradient update (its /diagnostics
  `updates` passing the count it resumed at).
- actor, in the robot graph beside the twin (`robot-rl robot --twin --policy`, as
  tests/test_actor_restart.py): kill -> the command adapter's first zero twist at Servo (the
  watchdog) -> the restarted actor's first command on cell/command/twist and the first non-zero
  twist at Servo.

    python bench/bench_recovery.py [--repeats 3] [--what learner,actor] [--out bench/out/recovery.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import SpunNode  # noqa: E402  the tests' listener node: its own context, spun on a thread


class Ear(SpunNode):
    """Arrival times on a few topics of the run's domain (its own rclpy context)."""

    def __init__(self, subs):
        super().__init__("recovery_ear")
        self.got: dict[str, list] = {}
        for name, (msg_type, topic, qos, value) in subs.items():
            self.got[name] = []
            self.node.create_subscription(msg_type, topic, lambda m, n=name, v=value: self.got[n].append((time.monotonic(), v(m))), qos)
        self.start()


def _domain():
    from robot_rl.ros_domain import free_domain

    os.environ["ROS_DOMAIN_ID"] = str(free_domain())
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@contextlib.contextmanager
def _running(cli_args, ear):
    """`robot-rl <cli_args>` as a process for the with-block; killed if still running after it,
    and the listener closed."""
    proc = subprocess.Popen([sys.executable, "-m", "robot_rl.cli", *cli_args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        ear.close()


def learner_once(work: Path, steps: int = 500, kill_at: int = 200) -> dict:
    from robot_rl import codec, contract as C
    from robot_rl.data.store import EpisodeStore
    from robot_rl.nodes.ros import qos

    _domain()
    t = C.topic(C.DIAGNOSTICS)
    ear = Ear({"diag": (t.type, C.DIAGNOSTICS, qos(t.qos), lambda m: codec.diagnostics_values(m, "learner"))})
    run_dir = work / "run"
    with _running(["sim", "--steps", str(steps), "--run-dir", str(run_dir), "-p", "eval_every:=0",
                   "-p", "checkpoint_every:=40"], ear) as proc:
        store, ck = run_dir / "store.zarr", run_dir / "learner_checkpoint.pt"
        _wait(lambda: EpisodeStore.exists(store) and ck.exists() and EpisodeStore.open(store, "r").n_steps >= kill_at,
              300, "the kill point")
        pid = json.loads((run_dir / "pids.json").read_text())["nodes"]["learner"]
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        log = run_dir / "logs" / "learner.log"

        def second_life():
            text = log.read_text(errors="replace")
            return text.split("----- restart 1", 1)[1] if "----- restart 1" in text else ""
        t_restart = _wait(lambda: second_life() != "", 120, "the supervisor's restart")
        t_policy = _wait(lambda: "published policy version" in second_life(), 300, "a policy from the new learner")
        # /diagnostics: the first report after the restart is the resumed count; training is
        # back once a report passes it
        first = {}

        def trained():
            for at, v in ear.got["diag"]:
                if at > t_restart and v is not None:
                    first.setdefault("u", int(v["updates"]))
                    if int(v["updates"]) > first["u"]:
                        return True
            return False
        t_update = _wait(trained, 300, "an update after the restart")
        proc.communicate(timeout=600)
    return {"restart_s": t_restart - t_kill, "first_policy_s": t_policy - t_kill, "first_update_s": t_update - t_kill,
            "rc": proc.returncode}


def actor_once(work: Path) -> dict:
    from geometry_msgs.msg import TwistStamped

    from robot_rl import contract as C
    from robot_rl.nodes.ros import qos
    from test_actor_core import onnx_policy

    _domain()
    policy = work / "plus_x.onnx"
    policy.write_bytes(onnx_policy([0.5] * 4))
    q = qos(C.Qos(depth=10))
    ear = Ear({"servo": (TwistStamped, "/servo_node/delta_twist_cmds", q, lambda m: m.twist.linear.x),
               "actor": (TwistStamped, "/cell/" + C.COMMAND_TWIST, q, lambda m: m.twist.linear.x)})
    run_dir = work / "run"
    with _running(["robot", "--twin", "--policy", str(policy), "--steps", "60", "--run-dir", str(run_dir)], ear) as proc:
        _wait(lambda: sum(vx > 0.05 for _, vx in ear.got["servo"]) > 50, 180, "the policy's twists at Servo")
        pid = json.loads((run_dir / "pids.json").read_text())["nodes"]["actor"]
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        t_zero = _wait(lambda: any(at > t_kill and vx == 0.0 for at, vx in ear.got["servo"]), 10, "the watchdog's zeros")
        # the dead actor's last commands may still be in flight for a moment: the new life's
        # first command comes after the watchdog has taken over
        t_cmd = _wait(lambda: any(at > t_zero for at, _ in ear.got["actor"]), 180, "a command from the new actor")
        t_move = _wait(lambda: any(at > t_zero and vx > 0.0 for at, vx in ear.got["servo"]), 180, "motion again")
        proc.communicate(timeout=300)
    return {"watchdog_zero_s": t_zero - t_kill, "first_command_s": t_cmd - t_kill, "first_motion_s": t_move - t_kill,
            "rc": proc.returncode}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--what", default="learner,actor")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "recovery.json"))
    args = ap.parse_args(argv)
    results: dict[str, list] = {}
    for what in args.what.split(","):
        once = {"learner": learner_once, "actor": actor_once}[what]
        for i in range(args.repeats):
            with tempfile.TemporaryDirectory() as d:
                r = once(Path(d))
            print(f"{what} kill {i + 1}/{args.repeats}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items() if k != "rc"),
                  flush=True)
            results.setdefault(what, []).append(r)
    summary = {}
    for what, rs in results.items():
        keys = [k for k in rs[0] if k != "rc"]
        summary[what] = {k: {"median": float(np.median([r[k] for r in rs])), "all": [round(r[k], 2) for r in rs]} for k in keys}
        print(f"{what}: medians over {len(rs)}: " + ", ".join(f"{k} {summary[what][k]['median']:.2f} s" for k in keys))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "medians": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
