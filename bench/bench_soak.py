"""Soak: the sim graph (`robot-rl sim`: twin, scripted human, actor, learner, four processes over
DDS) for a long stretch of simulated robot time, watched from outside.

Every `--sample-s` wall seconds: each node's RSS from /proc (pids from the run's pids.json).
Every step, from an outside listener on the run's ROS domain: the actor's latency, from the
moment its tick's inputs were all there (the observation's topics, the teleop's answer, the
learner's progress when the actor waits for it) to its command's arrival, as a ROS tool sees it.
At the end: the steps the twin executed (observations it published after stepping), the rows
in the actor's store, and the steps the learner ingested, which must all agree.

    python bench/bench_soak.py --sim-hours 1 [--wall-minutes 15] [--out bench/out/soak]

The control period is config/sim.yaml's rate_hz (10 Hz: one hour of robot time is 36000 steps).
`--wall-minutes` ends the run early (Ctrl-C to the graph: every node closes cleanly) and the
figures say how much simulated time was covered. Writes <out>.json, <out>.png (RSS per node and
actor latency against simulated time) and, with --doc-plot, a small figure for the docs.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import SpunNode  # noqa: E402  the tests' listener node: its own context, spun on a thread
RATE_HZ = 10.0  # config/sim.yaml rate_hz: one step is 0.1 s of robot time


def rss_mb(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Ear(SpunNode):
    """An outside listener on the graph's domain: observation, teleop and progress arrivals,
    command arrivals, and the task status of every observation the twin published."""

    def __init__(self, progress: bool = True):
        from robot_rl import codec, contract as C
        from robot_rl.nodes.ros import subscription

        super().__init__("soak_ear")
        self.codec = codec
        self.lock = threading.Lock()
        self.inputs: dict[int, float] = {}  # stamp -> latest arrival of an input of that tick
        self.progress_at = 0.0
        self.progress = progress  # the actor waits for the learner's progress (learner_sync_lag > 0)
        self.latency: list[tuple[int, float]] = []  # (stamp, seconds)
        self.status: dict[int, int] = {}  # stamp -> the status' step in its episode
        obs_topics = (C.JOINT_STATES, C.EE_POSE, C.OBJECT_POSES, C.TASK_STATUS)
        for t in obs_topics + (C.TELEOP_TWIST, C.TELEOP_GRIPPER):
            subscription(self.node, t, lambda m, t=t: self._input(t, m))
        subscription(self.node, C.LEARNER_PROGRESS, lambda m: setattr(self, "progress_at", time.monotonic()))
        subscription(self.node, C.COMMAND_TWIST, self._command)
        self.start()

    def _input(self, topic, msg):
        now = time.monotonic()
        key = self.codec.stamp_key(msg.header.stamp)
        with self.lock:
            self.inputs[key] = now
            if topic == "task/status":
                try:
                    self.status[key] = self.codec.status_from_msg(msg)["step"]
                except self.codec.CodecError:
                    pass

    def _command(self, msg):
        now = time.monotonic()
        key = self.codec.stamp_key(msg.header.stamp)
        with self.lock:
            start = self.inputs.pop(key, None)
            if start is not None:
                if self.progress:
                    start = max(start, min(self.progress_at, now))
                self.latency.append((key, now - start))
            for k in [k for k in self.inputs if k < key]:  # never answered (terminal observations)
                del self.inputs[k]

    def twin_steps(self) -> set[int]:
        """Stamps of the observations the twin stepped from: those followed one period later by
        an observation inside the same episode (step >= 1; a reset's first is step 0)."""
        dt = int(round(1e9 / RATE_HZ))
        with self.lock:
            st = dict(self.status)
        return {k - dt for k, step in st.items() if step >= 1 and (k - dt) in st}


def soak(run_dir: Path, steps: int, wall_s: float, sample_s: float = 10.0, extra=(), log=print) -> dict:
    """Run `robot-rl sim` for `steps` steps (or until wall_s), measure; returns the figures."""
    from robot_rl.ros_domain import free_domain

    os.environ["ROS_DOMAIN_ID"] = str(free_domain())  # the ear listens where the graph runs
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    ear = Ear(progress="learner_sync_lag:=0" not in " ".join(extra))
    cmd = [sys.executable, "-m", "robot_rl.cli", "sim", "--task", "pick_cube", "--steps", str(steps),
           "--run-dir", str(run_dir), *extra]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            start_new_session=True)
    out_lines: list[str] = []
    threading.Thread(target=lambda: out_lines.extend(proc.stdout), daemon=True).start()
    samples = []  # (wall s, sim s of the last command, {node: rss MB})
    stopped_early = False
    try:
        next_sample = 0.0
        while proc.poll() is None:
            now = time.monotonic() - t0
            if now >= next_sample:
                next_sample = now + sample_s
                try:
                    pids = json.loads((run_dir / "pids.json").read_text())["nodes"]
                except (OSError, ValueError):
                    pids = {}
                with ear.lock:
                    last = ear.latency[-1][0] * 1e-9 if ear.latency else 0.0
                rss = {n: rss_mb(p) for n, p in pids.items()}
                if rss and all(v is not None for v in rss.values()):
                    samples.append((now, last, rss))
                    log(f"  wall {now:6.0f} s  sim {last:7.0f} s  rss " + " ".join(f"{n} {v:.0f}" for n, v in rss.items()))
            if now > wall_s and not stopped_early:
                stopped_early = True
                log(f"  wall limit {wall_s:.0f} s: stopping the graph (SIGINT)")
                proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        time.sleep(1.0)
        ear.close()
    wall = time.monotonic() - t0
    text = "".join(out_lines)
    from robot_rl.data.store import EpisodeStore

    with EpisodeStore.open(run_dir / "store.zarr", "r") as store:
        stamps = store.read("timestamp")
        rows = store.n_steps
    learner = json.loads((run_dir / "learner_summary.json").read_text())
    stored = {int(round(t * 1e9)) for t in stamps}
    executed = ear.twin_steps()
    lo, hi = min(stored), max(stored)
    executed_in_range = {k for k in executed if lo <= k <= hi}
    lat = np.array([s for _, s in ear.latency]) * 1e3
    lat_t = np.array([k for k, _ in ear.latency]) * 1e-9
    return {
        "returncode": proc.returncode, "stopped_early": stopped_early, "wall_s": round(wall, 1),
        "steps": rows, "sim_s": round(rows / RATE_HZ, 1), "sim_factor": round(rows / RATE_HZ / wall, 2),
        "store_rows": rows, "twin_steps_in_store_range": len(executed_in_range),
        "store_rows_the_twin_did_not_execute": len(stored - executed), "twin_steps_not_in_store": len(executed_in_range - stored),
        # the listener's own misses show here too (a reliable reader that fell behind): the stamps
        "unconfirmed_stamps_s": [k * 1e-9 for k in sorted(stored - executed)[:20]],
        "commands_heard": len(ear.latency),
        "learner_ingested": len(learner["received"]), "learner_replay_steps": learner["replay_steps"],
        "learner_updates": learner["updates"], "lost_steps": learner.get("lost_steps"),
        "rss": [{"wall_s": round(w, 1), "sim_s": round(s, 1), "mb": {n: round(v, 1) for n, v in r.items()}}
                for w, s, r in samples],
        "latency_ms": {"t_sim_s": lat_t.round(2).tolist(), "ms": lat.round(3).tolist()},
        "stdout_tail": text[-2000:],
    }


def window_stats(fig: dict, first: bool, span_s: float) -> dict:
    """Actor latency p50/p99 over the first or last `span_s` seconds of simulated time."""
    t, ms = np.array(fig["latency_ms"]["t_sim_s"]), np.array(fig["latency_ms"]["ms"])
    sel = t <= t.min() + span_s if first else t >= t.max() - span_s
    return {"n": int(sel.sum()), "p50": float(np.percentile(ms[sel], 50)), "p99": float(np.percentile(ms[sel], 99))}


def plot(fig: dict, path: Path, small: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, (a, b) = plt.subplots(1, 2, figsize=(7, 2.6) if small else (12, 4.5))
    for node in fig["rss"][0]["mb"]:
        a.plot([s["sim_s"] / 60 for s in fig["rss"]], [s["mb"][node] for s in fig["rss"]], label=node)
    a.set_xlabel("simulated time (min)")
    a.set_ylabel("RSS (MB)")
    a.legend(fontsize=7)
    a.set_title("memory per node")
    t, ms = np.array(fig["latency_ms"]["t_sim_s"]), np.array(fig["latency_ms"]["ms"])
    edges = np.linspace(t.min(), t.max(), 31)
    mids, p50, p99 = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (t >= lo) & (t < hi)
        if sel.sum() >= 10:
            mids.append((lo + hi) / 2 / 60)
            p50.append(np.percentile(ms[sel], 50))
            p99.append(np.percentile(ms[sel], 99))
    b.plot(mids, p50, label="p50")
    b.plot(mids, p99, label="p99")
    b.set_xlabel("simulated time (min)")
    b.set_ylabel("ms")
    b.set_yscale("log")
    b.legend(fontsize=7)
    b.set_title("actor: inputs complete -> command")
    f.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    f.savefig(path, dpi=80 if small else 100)
    plt.close(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sim-hours", type=float, default=1.0)
    ap.add_argument("--wall-minutes", type=float, default=15.0, help="stop early after this much wall time")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "soak"))
    ap.add_argument("--doc-plot", default="", help="also a small figure here (docs/img/soak.png)")
    ap.add_argument("--run-dir", default="")
    args, extra = ap.parse_known_args(argv)
    out = Path(args.out)
    run_dir = Path(args.run_dir or f"{out}_run").resolve()
    steps = int(round(args.sim_hours * 3600 * RATE_HZ))
    print(f"soak: {steps} steps ({args.sim_hours} h of robot time at {RATE_HZ:g} Hz), wall limit "
          f"{args.wall_minutes} min -> {run_dir}")
    fig = soak(run_dir, steps, args.wall_minutes * 60, args.sample_s, extra=extra)
    span = min(600.0, fig["sim_s"] / 3)
    fig["latency_first"], fig["latency_last"] = window_stats(fig, True, span), window_stats(fig, False, span)
    fig["latency_window_sim_s"] = span
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(fig))
    plot(fig, Path(f"{out}.png"))
    if args.doc_plot:
        plot(fig, Path(args.doc_plot), small=True)
    r0, r1 = fig["rss"][min(1, len(fig["rss"]) - 1)]["mb"], fig["rss"][-1]["mb"]
    print(f"covered {fig['sim_s'] / 60:.1f} min of robot time ({fig['steps']} steps) in {fig['wall_s'] / 60:.1f} min "
          f"wall ({fig['sim_factor']}x real time); stopped early: {fig['stopped_early']}")
    print("RSS MB first sample -> last: " + ", ".join(f"{n} {r0[n]:.0f} -> {r1[n]:.0f}" for n in r1))
    f, l = fig["latency_first"], fig["latency_last"]
    print(f"actor latency, first / last {span / 60:.1f} min of robot time: p50 {f['p50']:.2f} / {l['p50']:.2f} ms, "
          f"p99 {f['p99']:.2f} / {l['p99']:.2f} ms")
    print(f"steps: store {fig['store_rows']}, twin executed {fig['twin_steps_in_store_range']} in that range "
          f"(stored but not executed {fig['store_rows_the_twin_did_not_execute']}, executed but not stored "
          f"{fig['twin_steps_not_in_store']}), learner ingested {fig['learner_ingested']} (replay {fig['learner_replay_steps']}, "
          f"lost {fig['lost_steps']}), {fig['learner_updates']} updates")
    print(f"-> {out}.json, {out}.png")
    return 0 if fig["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
