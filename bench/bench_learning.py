"""Learning curves: success rate vs environment steps on a twin task, >= 3 seeds per agent
kind, mean with a 95% interval (t over seeds), plus env steps to reach a success threshold.

Each run is `python -m robot_rl.training.pretrain` in its own process (so --jobs N runs seeds in
parallel on a GPU box); its progress.csv lands in OUT/<task>/<kind>_s<seed>/. Re-plot existing
runs with --plot-only. Expect hours on a CPU; this is meant for the GPU machine.

    PYTHONPATH=. python bench/bench_learning.py --task pick_cube --kinds flow,sac --seeds 0,1,2 \
        --env-steps 30000 --utd 20 --jobs 3
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def run_one(args, kind: str, seed: int) -> str:
    out = os.path.join(args.out, args.task, f"{kind}_s{seed}")
    cmd = [sys.executable, "-m", "robot_rl.training.pretrain", "--task", args.task, "--kind", kind,
           "--seed", str(seed), "--env-steps", str(args.env_steps), "--n-demos", str(args.n_demos),
           "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes), "--out", out]
    if args.utd:
        cmd += ["--utd", str(args.utd)]
    if args.config:
        cmd += ["--config", args.config]
    if args.cameras:
        cmd += ["--cameras", args.cameras, "--image-size", str(args.image_size)]
    if args.obs_keys:
        cmd += ["--obs-keys", args.obs_keys]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "log.txt"), "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return out


def read_curve(path: str, every: int) -> dict:
    """{env steps rounded to the eval grid: success rate} from one progress.csv."""
    with open(path) as f:
        return {int(round(int(r["env_steps"]) / every) * every): float(r["success_rate"]) for r in csv.DictReader(f)}


def summarise(curves: list[dict], threshold: float):
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    y = np.array([[c[s] for s in steps] for c in curves])
    mean = y.mean(0)
    half = T95.get(len(curves) - 1, 1.96) * y.std(0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * mean
    reach = [next((s for s in steps if c[s] >= threshold), None) for c in curves]
    return np.array(steps), mean, half, reach


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="pick_cube")
    ap.add_argument("--kinds", default="flow,sac")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--env-steps", type=int, default=30_000)
    ap.add_argument("--n-demos", type=int, default=20)
    ap.add_argument("--utd", type=int, default=None)
    ap.add_argument("--config", default=None, help="pretrain settings YAML (bench/configs/*.yaml)")
    ap.add_argument("--cameras", default="")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--obs-keys", default="", help="what the agents see, e.g. proprio,wrist (from pixels)")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--out", default="bench/out/learning")
    args = ap.parse_args()
    kinds, seeds = args.kinds.split(","), [int(s) for s in args.seeds.split(",")]
    if not args.plot_only:
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda ks: run_one(args, *ks), [(k, s) for k in kinds for s in seeds]))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    summary_path = os.path.join(args.out, args.task, "summary.csv")
    with open(summary_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "env_steps", "success_mean", "ci95_half_width", "n_seeds"])
        for kind in kinds:
            paths = [os.path.join(args.out, args.task, f"{kind}_s{s}", "progress.csv") for s in seeds]
            curves = [read_curve(p, args.eval_every) for p in paths if os.path.exists(p)]
            if not curves:
                print(f"{kind}: no runs found under {args.out}/{args.task}")
                continue
            steps, mean, half, reach = summarise(curves, args.threshold)
            for row in zip(steps, mean, half):
                w.writerow([kind, int(row[0]), f"{row[1]:.3f}", f"{row[2]:.3f}", len(curves)])
            ax.plot(steps, mean, label=f"{kind} ({len(curves)} seeds)")
            ax.fill_between(steps, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1), alpha=0.25)
            print(f"{kind:5s} final success {mean[-1]:.2f} +- {half[-1]:.2f} at {steps[-1]} env steps; "
                  f"steps to {args.threshold:.0%} per seed: {reach}")
    ax.set_xlabel("environment steps (online)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    seen = args.obs_keys or ("proprio+object+" + args.cameras if args.cameras else "state")
    size = f" {args.image_size}px" if args.cameras else ""
    ax.set_title(f"{args.task} ({seen}{size}): {args.n_demos} demos, mean, 95% interval", fontsize=10)
    ax.legend()
    png = os.path.join(args.out, args.task, "learning_curve.png")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    print("wrote", png, "and", summary_path)


if __name__ == "__main__":
    main()
