"""The whole loop through the live ROS graph: `robot-rl sim` for several seeds, then per seed
eval success rate, intervention rate and policy version vs env steps, wall time and sim-time
factor. Prints a table, writes bench/out/loop.csv and docs/img/loop.png.

    python bench/bench_loop.py --seeds 0 1 2 --steps 30000 [--parallel 1] [-- extra robot-rl sim args]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zarr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, like the graph it starts (cwd=ROOT)
from robot_rl.ros_domain import free_domain  # noqa: E402


def run_seed(seed: int, steps: int, out: Path, extra: list[str], domain: int) -> subprocess.Popen:
    """One seed's graph on ROS domain `domain`: graphs running at once (--parallel) need one each,
    or `robot-rl sim` refuses to start next to another graph's nodes."""
    run_dir = out / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # an existing store would be appended to
    cmd = [sys.executable, "-m", "robot_rl.cli", "sim", "--task", "pick_cube", "--seed", str(seed),
           "--steps", str(steps), "--run-dir", str(run_dir)] + extra
    log = open(out / f"seed{seed}.out", "w")
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain)}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def curves(run_dir: Path, bucket: int) -> dict:
    """Everything against training env steps: the steps of training episodes (evaluation
    episodes are extra env steps, counted in n_steps and in the wall time, not on the x axis)."""
    root = zarr.open_group(str(run_dir / "store.zarr"), mode="r")
    is_eval = root["data/eval"][:].astype(bool)
    intervened = root["data/intervened"][:].astype(bool)[~is_eval]
    version = root["data/policy_version"][:][~is_eval]
    stamps = root["data/timestamp"][:]
    n = len(intervened)
    edges = np.arange(0, n + bucket, bucket)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sl = slice(lo, min(hi, n))
        if sl.stop - sl.start < bucket // 2:
            continue  # a sliver at the end is noise, not a rate
        rows.append({"steps": int(sl.stop), "intervention_rate": float(intervened[sl].mean()),
                     "policy_version": int(version[sl].max())})
    actor = json.loads((run_dir / "actor_summary.json").read_text())
    evals = [dict(e, steps=e["train_steps"]) for e in actor["evaluations"]]
    return {"buckets": rows, "evals": evals, "n_steps": len(is_eval), "train_steps": n,
            "sim_time": float(stamps[-1] - stamps[0])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=30_000)
    ap.add_argument("--parallel", type=int, default=1, help="seeds run at once")
    ap.add_argument("--bucket", type=int, default=250, help="training steps per intervention-rate bucket")
    ap.add_argument("--plot-only", action="store_true", help="re-read finished runs in --out, re-plot")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "loop"))
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "loop.png"))
    args, extra = ap.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, walls = {}, {}
    pending = list(args.seeds)
    running: dict[int, tuple[subprocess.Popen, float, int]] = {}  # seed -> (process, start, domain)
    if args.plot_only:
        for s in pending:
            results[s] = curves(out / f"seed{s}", args.bucket)
            walls[s] = json.loads((out / f"seed{s}" / "wall.json").read_text())["wall_s"]
        pending = []
    while pending or running:
        while pending and len(running) < args.parallel:
            s = pending.pop(0)
            # a domain no running graph holds (its ports may not be bound yet: exclude by hand)
            domain = free_domain(exclude=[d for _, _, d in running.values()])
            running[s] = (run_seed(s, args.steps, out, extra, domain), time.monotonic(), domain)
        for s, (p, t0, _) in list(running.items()):
            if p.poll() is not None:
                walls[s] = time.monotonic() - t0
                del running[s]
                if p.returncode != 0:
                    print(f"seed {s} failed (exit {p.returncode}); see {out / f'seed{s}.out'}")
                    continue
                results[s] = curves(out / f"seed{s}", args.bucket)
                (out / f"seed{s}" / "wall.json").write_text(json.dumps({"wall_s": walls[s]}))
        time.sleep(1.0)
    if not results:
        return 1
    with open(out / "loop.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seed", "kind", "steps", "value"])
        for s, r in results.items():
            for e in r["evals"]:
                w.writerow([s, "eval_success", e["steps"], e["success_rate"]])
            for b in r["buckets"]:
                w.writerow([s, "intervention_rate", b["steps"], b["intervention_rate"]])
                w.writerow([s, "policy_version", b["steps"], b["policy_version"]])
    print(f"{'seed':>4} {'env steps':>9} {'training':>8} {'warm-start eval':>15} {'final eval':>10} "
          f"{'90% after':>9} {'interv. first/last 1k':>21} {'wall s':>6} {'sim-time x':>10}")
    for s, r in sorted(results.items()):
        ev, b = r["evals"], r["buckets"]
        first = next((e["steps"] for e in ev if e["success_rate"] >= 0.9), None)
        k = max(1, 1000 // args.bucket)
        i0 = np.mean([x["intervention_rate"] for x in b[:k]])
        i1 = np.mean([x["intervention_rate"] for x in b[-k:]])
        print(f"{s:>4} {r['n_steps']:>9} {r['train_steps']:>8} {ev[0]['success_rate'] if ev else float('nan'):>15.2f} "
              f"{ev[-1]['success_rate'] if ev else float('nan'):>10.2f} {str(first):>9} {i0:>10.2f} / {i1:<8.2f} "
              f"{walls[s]:>6.0f} {r['sim_time'] / walls[s]:>10.1f}")
    _plot(results, Path(args.plot))
    print(f"wrote {out / 'loop.csv'} and {args.plot}")
    return 0


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    grid = np.linspace(0, max(r["train_steps"] for r in results.values()), 80)

    def band(ax, series, label):
        ys = np.array([np.interp(grid, x, y, left=np.nan, right=y[-1]) for x, y in series if len(x)])
        if not len(ys) or np.isnan(ys).all():
            return
        mean = np.nanmean(ys, axis=0)
        ax.plot(grid, mean, label=f"{label} (mean of {len(ys)} seeds)")
        if len(ys) > 1:
            ax.fill_between(grid, np.nanmin(ys, axis=0), np.nanmax(ys, axis=0), alpha=0.25, label="min-max over seeds")

    band(axes[0], [([e["steps"] for e in r["evals"]], [e["success_rate"] for e in r["evals"]]) for r in results.values()], "eval success")
    axes[0].axhline(0.9, ls="--", c="gray", lw=0.8)
    band(axes[1], [([b["steps"] for b in r["buckets"]], [b["intervention_rate"] for b in r["buckets"]]) for r in results.values()], "intervened steps")
    band(axes[2], [([b["steps"] for b in r["buckets"]], [b["policy_version"] for b in r["buckets"]]) for r in results.values()], "policy version")
    for ax, title in zip(axes, ["eval success rate (no intervention)", "intervention rate (training episodes)", "policy version in the actor"]):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training env steps (through the ROS graph)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
