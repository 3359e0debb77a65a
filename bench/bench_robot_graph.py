"""The robot half's acceptance run: a policy pre-trained in the twin runs through the robot graph
(camera node on the twin's MJPEG stream -> robot_state with FK -> actor on its wall-clock timer
-> Servo and gripper adapters -> the twin posing as the cell's drivers), and the same policy in
the lock-step sim graph beside it (its first evaluation block measures the warm-start policy).

    python bench/bench_robot_graph.py [--agent DIR] [--episodes 20] [--out bench/out/robot_graph]

Without --agent it pre-trains one first (robot-rl pretrain, the graph's CPU-sized networks).
Prints one table; writes bench/out/robot_graph/result.json.
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
CLI = [sys.executable, "-m", "robot_rl.cli"]


def run(cmd, env, log: Path) -> float:
    t0 = time.monotonic()
    with open(log, "w") as f:
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    return time.monotonic() - t0


def robot_graph_success(agent_dir: Path, episodes: int, out: Path, env: dict) -> dict:
    run_dir = out / "robot"
    wall = run(CLI + ["robot", "--twin", "--cameras", "front", "--policy", str(agent_dir / "actor.onnx"),
                      "--episodes", str(episodes), "--run-dir", str(run_dir)], env, out / "robot.log")
    s = json.loads((run_dir / "actor_summary.json").read_text())
    lengths = _episode_lengths(run_dir / "store.zarr")
    return {"episodes": s["episodes"], "successes": s["successes"], "success_rate": s["successes"] / max(1, s["episodes"]),
            "mean_episode_steps": sum(lengths) / max(1, len(lengths)), "holds": s["hold_reasons"], "wall_s": round(wall, 1)}


def sim_graph_success(agent_dir: Path, episodes: int, out: Path, env: dict) -> dict:
    run_dir = out / "sim"
    # Enough steps for the warm-start evaluation block (episodes x <= 100 steps) and a bit.
    wall = run(CLI + ["sim", "--init", str(agent_dir / "agent.pt"), "--steps", str(episodes * 100 + 200),
                      "-p", f"eval_episodes:={episodes}", "-p", "eval_every:=100000", "--run-dir", str(run_dir)],
               env, out / "sim.log")
    s = json.loads((run_dir / "actor_summary.json").read_text())
    first = s["evaluations"][0] if s["evaluations"] else {}
    return {"episodes": first.get("episodes"), "success_rate": first.get("success_rate"), "wall_s": round(wall, 1)}


def _episode_lengths(store: Path) -> list[int]:
    import zarr

    ends = list(zarr.open_group(str(store), mode="r")["meta/episode_ends"][:])
    return [b - a for a, b in zip([0] + ends[:-1], ends)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="", help="a robot-rl pretrain output dir (agent.pt + actor.onnx)")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--pretrain-steps", type=int, default=3000)
    ap.add_argument("--out", default=str(ROOT / "bench/out/robot_graph"))
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    if "ROS_DOMAIN_ID" not in env:
        from robot_rl.ros_domain import free_domain

        env["ROS_DOMAIN_ID"] = str(free_domain())
    agent = Path(args.agent).resolve() if args.agent else out / "pretrain"
    if not args.agent:
        run(CLI + ["pretrain", "--task", "pick_cube", "--config", str(ROOT / "bench/configs/small.yaml"),
                   "--utd", "2", "--env-steps", str(args.pretrain_steps), "--out", str(agent)], env, out / "pretrain.log")
    result = {"agent": str(agent), "robot_graph": robot_graph_success(agent, args.episodes, out, env),
              "sim_graph": sim_graph_success(agent, args.episodes, out, env)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    r, s = result["robot_graph"], result["sim_graph"]
    print("| graph | episodes | success | mean steps per episode | wall |")
    print("|---|---|---|---|---|")
    print(f"| robot (twin as drivers, wall clock, FK, Servo) | {r['episodes']} | {r['success_rate']:.0%} | "
          f"{r['mean_episode_steps']:.1f} | {r['wall_s']} s |")
    print(f"| sim (lock-step), warm-start eval | {s['episodes']} | {s['success_rate']:.0%} | - | {s['wall_s']} s |")
    print(f"robot graph holds: {r['holds']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
