"""Learning curves: success rate vs environment steps on a twin task, >= 3 seeds per agent
kind, mean with a 95% interval (t over seeds), plus env steps to reach a success threshold.

Each run is `python -m robot_rl.training.pretrain` in its own process (so --jobs N runs seeds in
parallel on a GPU box); its progress.csv lands in OUT/<task>/<kind>_s<seed>/. Re-plot existing
runs with --plot-only. Expect hours on a CPU; this is meant for the GPU machine.

    PYTHONPATH=. python bench/bench_learning.py --task pick_cube --kinds flow,sac --seeds 0,1,2 \
        --env-steps 30000 --utd 20 --jobs 3

From a slow teacher (issue #21): `--operator sloppy` records the demos with the twin's sloppy
operator; a kinds entry `LABEL=KIND:CONFIG` runs KIND with its own settings file under the name
LABEL, so variants of one kind compare on the same demos; the plot adds cycle time (mean steps of
the successful evaluation episodes) and, from 2 seeds on, the rliable-style IQM with a bootstrap
interval over seeds (docs/learner.md "From sloppy demos"):

    PYTHONPATH=. python bench/bench_learning.py --task pick_cube --operator sloppy --seeds 0,1,2 \
        --kinds recipe=flow:bench/configs/sloppy.yaml --env-steps 10000 --eval-episodes 20 \
        --expert-cycle 23.6 --jobs 2 --out bench/out/learning_sloppy

(--utd would override the recipe's own UTD 6: run the baselines separately, `--kinds bc,flow
--config bench/configs/small.yaml --utd 2`, into the same --out, then re-plot them together.)
Twenty evaluation episodes reuse the same start states at every point; `--heldout N` then scores
each finished run's final policy on N other start states (seeds 50000...), the same for every
run, into OUT/<task>/heldout.csv.

With the sim graph's scripted human stepping in (a config with `takeover:`; CONFIG may join files
with "+"), the plot adds the intervention rate (docs/learner.md "Interventions: demos or advice"):

    PYTHONPATH=. python bench/bench_learning.py --task peg_insert --seeds 0,1,2 --env-steps 6000 \
        --utd 2 --eval-every 500 --eval-episodes 10 --out bench/out/learning_human --kinds \
        online=flow:bench/configs/small.yaml+bench/configs/human_online.yaml,demo=flow:bench/configs/small.yaml+bench/configs/human_demo.yaml
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def parse_kinds(text: str, default_config: str | None) -> dict:
    """"flow,bc" or "flow_qf=flow:cfg.yaml,bc" -> {label: (kind, config or the default)}."""
    out = {}
    for item in filter(None, text.split(",")):
        label, _, rest = item.partition("=")
        kind, _, config = (rest or label).partition(":")
        out[label] = (kind, config or default_config)
    return out


def run_one(args, label: str, seed: int) -> str:
    kind, config = args.variants[label]
    out = os.path.join(args.out, args.task, f"{label}_s{seed}")
    cmd = [sys.executable, "-m", "robot_rl.training.pretrain", "--task", args.task, "--kind", kind,
           "--seed", str(seed), "--env-steps", str(args.env_steps), "--n-demos", str(args.n_demos),
           "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes), "--out", out]
    if args.utd:
        cmd += ["--utd", str(args.utd)]
    if config:
        cmd += ["--config", config]
    if args.cameras:
        cmd += ["--cameras", args.cameras, "--image-size", str(args.image_size)]
    if args.obs_keys:
        cmd += ["--obs-keys", args.obs_keys]
    if args.operator != "expert":
        cmd += ["--operator", args.operator]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "log.txt"), "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return out


HELDOUT_SEED = 50_000  # far from the runs' evaluation seeds (seed + 10000 + i)


def score_heldout(args, kinds, seeds) -> None:
    """Each finished run's final agent.pt on args.heldout start states no evaluation of any run
    saw: success and cycle time, printed and written to OUT/<task>/heldout.csv."""
    from robot_rl import twin
    from robot_rl.learn.agent import load_agent
    from robot_rl.training.pretrain import evaluate

    cameras = tuple(c for c in args.cameras.split(",") if c)
    path = os.path.join(args.out, args.task, "heldout.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "seed", "episodes", "success_rate", "cycle_steps"])
        for kind in kinds:
            for seed in seeds:
                ckpt = os.path.join(args.out, args.task, f"{kind}_s{seed}", "agent.pt")
                if not os.path.exists(ckpt):
                    continue
                env = twin.make_env(args.task, cameras=cameras, image_size=args.image_size, seed=seed)
                success, _, cycle = evaluate(env, load_agent(ckpt, device="cpu"), args.heldout, HELDOUT_SEED)
                env.close()
                w.writerow([kind, seed, args.heldout, f"{success:.3f}", f"{cycle:.2f}"])
                print(f"{kind} s{seed}: held-out {args.heldout} episodes, success {success:.2f}, "
                      f"cycle {cycle:.1f} steps", flush=True)
    print("wrote", path)


def read_curve(path: str, every: int, column: str = "success_rate") -> dict:
    """{env steps rounded to the eval grid: value} from one progress.csv (NaN where empty, e.g. the
    cycle time of an evaluation with no success; a file from before a column existed: all NaN)."""
    with open(path) as f:
        return {int(round(int(r["env_steps"]) / every) * every): float(r.get(column) or "nan")
                for r in csv.DictReader(f)}


def iqm(x: np.ndarray) -> float:
    """Interquartile mean (rliable, Agarwal et al. 2021): the mean of the middle 50 % of the
    values, ends weighted fractionally when the count is not a multiple of 4 (so 2 or 3 seeds
    give the mean or median-like values rather than an empty slice). NaNs are dropped."""
    x = np.sort(np.asarray(x, float)[~np.isnan(np.asarray(x, float))])
    n = len(x)
    if n == 0:
        return float("nan")
    lo, hi = 0.25 * n, 0.75 * n  # the middle half as a span of [0, n), one unit per value
    w = np.clip(np.minimum(np.arange(1, n + 1), hi) - np.maximum(np.arange(n), lo), 0, None)
    return float((w * x).sum() / w.sum())


def iqm_interval(y: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple:
    """IQM over runs (rows of y, one column per eval point) with a 95 % percentile bootstrap
    interval: runs resampled with replacement, as rliable does for one task. Returns
    (iqm, low, high), each (n_points,)."""
    y = np.asarray(y, float)
    rng = np.random.default_rng(seed)
    point = np.array([iqm(col) for col in y.T])
    idx = rng.integers(0, len(y), (reps, len(y)))
    boot = np.array([[iqm(col) for col in y[i].T] for i in idx])  # (reps, n_points)
    with np.errstate(all="ignore"):
        low, high = np.nanpercentile(boot, 2.5, axis=0), np.nanpercentile(boot, 97.5, axis=0)
    return point, low, high


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
    ap.add_argument("--kinds", default="flow,sac",
                    help="agent kinds, or LABEL=KIND:CONFIG entries (a kind with its own settings file)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--env-steps", type=int, default=30_000)
    ap.add_argument("--n-demos", type=int, default=20)
    ap.add_argument("--utd", type=int, default=None)
    ap.add_argument("--config", default=None, help="pretrain settings YAML (bench/configs/*.yaml)")
    ap.add_argument("--cameras", default="")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--obs-keys", default="", help="what the agents see, e.g. proprio,wrist (from pixels)")
    ap.add_argument("--operator", default="expert", choices=("expert", "sloppy"),
                    help="who records the demos: the scripted expert or the twin's sloppy operator (docs/twin.md)")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--expert-cycle", type=float, default=None,
                    help="the expert's steps per successful episode: drawn (x1 and x1.3) on the cycle-time panel")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--plot-only", action="store_true")
    ap.add_argument("--heldout", type=int, default=0,
                    help="then score each run's final policy on this many held-out start states (0 = off)")
    ap.add_argument("--out", default="bench/out/learning")
    args = ap.parse_args()
    args.variants = parse_kinds(args.kinds, args.config)
    kinds, seeds = list(args.variants), [int(s) for s in args.seeds.split(",")]
    if not args.plot_only:
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda ks: run_one(args, *ks), [(k, s) for k in kinds for s in seeds]))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def run_paths(kind):
        paths = [os.path.join(args.out, args.task, f"{kind}_s{s}", "progress.csv") for s in seeds]
        return [p for p in paths if os.path.exists(p)]

    # a third panel when a human stepped in (pretrain --human / a `takeover:` config)
    helped = any(np.nanmax(list(read_curve(p, args.eval_every, "intervention_rate").values()) or [0]) > 0
                 for kind in kinds for p in run_paths(kind))
    fig, axes = plt.subplots(1, 3 if helped else 2, figsize=(16 if helped else 11, 4))
    ax, ax_cycle = axes[0], axes[1]
    summary_path = os.path.join(args.out, args.task, "summary.csv")
    with open(summary_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "env_steps", "success_mean", "ci95_half_width", "success_iqm", "iqm_low", "iqm_high",
                    "cycle_steps_mean", "n_seeds"])
        for kind in kinds:
            paths = run_paths(kind)
            curves = [read_curve(p, args.eval_every) for p in paths]
            if not curves:
                print(f"{kind}: no runs found under {args.out}/{args.task}")
                continue
            steps, mean, half, reach = summarise(curves, args.threshold)
            y = np.array([[c[s] for s in steps] for c in curves])
            cycles = [read_curve(p, args.eval_every, "cycle_steps") for p in paths]
            cyc = np.array([[c.get(s, np.nan) for s in steps] for c in cycles])
            with warnings.catch_warnings():  # an eval point with no success on any seed: NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                cyc_mean = np.nanmean(cyc, 0)
            if len(curves) >= 2:  # IQM and its bootstrap interval: what >= 2 seeds can say
                mid, low, high = iqm_interval(y)
                ax.plot(steps, mid, label=f"{kind} (IQM, {len(curves)} seeds)")
                ax.fill_between(steps, low, high, alpha=0.25)
            else:
                mid = low = high = y[0]
                ax.plot(steps, mid, label=f"{kind} (1 seed)")
            for row in zip(steps, mean, half, mid, low, high, cyc_mean):
                w.writerow([kind, int(row[0]), *(f"{v:.3f}" for v in row[1:]), len(curves)])
            ax_cycle.plot(steps, cyc_mean, marker=".", label=kind)
            if helped:  # the share of the steps since the last evaluation the human drove
                rates = [read_curve(p, args.eval_every, "intervention_rate") for p in paths]
                r = np.array([[c.get(s, np.nan) for s in steps] for c in rates])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    axes[2].plot(steps[1:], np.nanmean(r, 0)[1:], marker=".", label=kind)
                print(f"{kind:5s} intervention rate over the last evaluation interval per seed: "
                      f"{[round(float(x), 3) for x in r[:, -1]]}")
            print(f"{kind:5s} final success {mean[-1]:.2f} +- {half[-1]:.2f} at {steps[-1]} env steps, "
                  f"cycle {cyc_mean[-1]:.1f} steps; steps to {args.threshold:.0%} per seed: {reach}")
    ax.set_xlabel("environment steps (online)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    seen = args.obs_keys or ("proprio+object+" + args.cameras if args.cameras else "state")
    size = f" {args.image_size}px" if args.cameras else ""
    who = "" if args.operator == "expert" else f" {args.operator}"
    ax.set_title(f"{args.task} ({seen}{size}): {args.n_demos}{who} demos, 95% interval", fontsize=10)
    ax.legend(fontsize=8)
    if args.expert_cycle:
        for factor, style in ((1.0, "-"), (1.3, "--")):
            ax_cycle.axhline(factor * args.expert_cycle, color="grey", ls=style, lw=0.8)
        ax_cycle.text(steps[0], 1.3 * args.expert_cycle, " 1.3 x expert", va="bottom", fontsize=8, color="grey")
    ax_cycle.set_xlabel("environment steps (online)")
    ax_cycle.set_ylabel("cycle time (steps of successful eval episodes)")
    ax_cycle.set_title("cycle time, mean over seeds with a success", fontsize=10)
    ax_cycle.legend(fontsize=8)
    if helped:
        axes[2].axhline(0.05, color="grey", ls="--", lw=0.8)
        axes[2].set_xlabel("environment steps (online)")
        axes[2].set_ylabel("share of steps the human drove")
        axes[2].set_title("intervention rate since the previous evaluation, mean over seeds", fontsize=10)
        axes[2].legend(fontsize=8)
    png = os.path.join(args.out, args.task, "learning_curve.png")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    print("wrote", png, "and", summary_path)
    if args.heldout > 0:
        score_heldout(args, kinds, seeds)


if __name__ == "__main__":
    main()
