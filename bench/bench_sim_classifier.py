"""Learning pick_cube from pixels with the reward classifier's reward instead of the twin's
success check, measured by the twin's check (ground truth), beside the same run rewarded by the
twin itself:

    python bench/bench_sim_classifier.py [--steps 3000] [--seed 0] [--classifier MODEL]
                                         [--out bench/out/sim_classifier]

Runs `robot-rl sim --cameras wrist --reward classifier` and `robot-rl sim --cameras wrist`, one
after the other (same seed, demos, networks), and prints both evaluation curves: the classifier
run's as declared by the classifier and as judged by the twin, and the twin-rewarded run's.
Writes result.json and curves.png into --out. Without --classifier, `robot-rl sim` trains one in
the twin first (robot_rl/reward/twin_model.py).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLI = [sys.executable, "-m", "robot_rl.cli"]


def run(cmd, env, log: Path) -> float:
    t0 = time.monotonic()
    with open(log, "w") as f:
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    return time.monotonic() - t0


def main(argv=None) -> int:
    from robot_rl.benchinfo import machine_info
    from robot_rl.reward.ground_truth import ground_truth_report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classifier", default="")
    ap.add_argument("--skip-twin-run", action="store_true", help="only the classifier-rewarded run")
    ap.add_argument("--out", default=str(ROOT / "bench/out/sim_classifier"))
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    if "ROS_DOMAIN_ID" not in env:
        from robot_rl.ros_domain import free_domain

        env["ROS_DOMAIN_ID"] = str(free_domain())
    common = ["sim", "--task", "pick_cube", "--cameras", "wrist", "--seed", str(args.seed), "--steps", str(args.steps)]
    result = {"machine": machine_info(), "steps": args.steps, "seed": args.seed}
    clf = ["--classifier", str(Path(args.classifier).resolve())] if args.classifier else []
    wall = run(CLI + common + ["--reward", "classifier", *clf, "--run-dir", str(out / "classifier")], env,
               out / "classifier.log")
    truth = ground_truth_report(out / "classifier")
    result["classifier"] = {"wall_s": round(wall), **truth}
    if not args.skip_twin_run:
        wall = run(CLI + common + ["--run-dir", str(out / "twin")], env, out / "twin.log")
        evals = json.loads((out / "twin" / "actor_summary.json").read_text())["evaluations"]
        result["twin"] = {"wall_s": round(wall),
                          "curve": [{"train_steps": e["train_steps"], "twin": e["success_rate"]} for e in evals]}
    (out / "result.json").write_text(json.dumps(result, indent=1))

    print(f"pick_cube from the wrist camera, seed {args.seed}, {args.steps} steps; machine {result['machine']}")
    print("| training steps | classifier reward: declared | classifier reward: twin's check | twin reward |")
    print("|---|---|---|---|")
    twin = {c["train_steps"]: c["twin"] for c in result.get("twin", {}).get("curve", [])}
    rows = sorted({c["train_steps"] for c in truth["curve"]} | set(twin))
    by_step = {c["train_steps"]: c for c in truth["curve"]}
    for s in rows:
        c = by_step.get(s)
        print(f"| {s} | {c['declared']:.0%} | {c['twin']:.0%} | " if c else f"| {s} | - | - | ", end="")
        print(f"{twin[s]:.0%} |" if s in twin else "- |")
    c = truth["episode_confusion"]
    print(f"classifier per episode over the run ({truth['episodes']} episodes): precision {c['precision']:.3f}, "
          f"recall {c['recall']:.3f} (tp {c['tp']}, fp {c['fp']}, fn {c['fn']}, tn {c['tn']})")
    _plot(result, out / "curves.png")
    return 0


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    cl = result["classifier"]["curve"]
    ax.plot([c["train_steps"] for c in cl], [c["twin"] for c in cl], "o-", label="classifier reward: twin's check")
    ax.plot([c["train_steps"] for c in cl], [c["declared"] for c in cl], "x--", label="classifier reward: as declared")
    if "twin" in result:
        tw = result["twin"]["curve"]
        ax.plot([c["train_steps"] for c in tw], [c["twin"] for c in tw], "s-", label="twin reward")
    ax.set_xlabel("training steps (env)")
    ax.set_ylabel("eval success")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"pick_cube, wrist camera, seed {result['seed']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
