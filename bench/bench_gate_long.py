"""Gated vs ungated deployment over one long, noisy sim run.

    python bench/bench_gate_long.py [--env-steps 12000] [--candidate-every 1000] [--eval-episodes 50]
                                    [--gate-episodes 50] [--seed 1] [--config bench/configs/sloppy_noisy.yaml]
                                    [--out bench/out/gate_long]
    python bench/bench_gate_long.py --quick      # self-check: 2000 steps, small evaluations (a few minutes)
    python bench/bench_gate_long.py --plot-only  # redraw the PNG from OUT/result.json

The claim under test (docs/deployment.md): with the gate on, the deployed policy's success never
drops by more than `success_margin` over a long noisy run, where the ungated run's does.

ONE training run, so both arms see the same candidates: pick_cube, state observations, kind
flow, 20 demos from the twin's sloppy operator, the settings of bench/configs/sloppy_noisy.yaml
(gamma 0.95 + distill_q_filter: a variant known to swing between evaluations, e.g. 0.80 -> 0.35
on seed 1 in docs/learner.md; the noise a gate must absorb), UTD 2. The loop is pretrain.run()'s
(robot_rl/training/pretrain.py: the same demos, normaliser fit, chunked open-loop rollouts and
TrainingLoop schedule) written out here with one hook: every `--candidate-every` env steps (and
at step 0: the untrained network, as the learner node publishes its initial actor at once, and
at the end) the one-step actor is exported as ONNX (TrainingLoop.export) = a candidate v{N}.

- Ungated arm: deployed = the newest candidate (the sim graph's behaviour, gate off).
- Gated arm: a real `Gate` (robot_rl/training/gate.py) with the learner gate section of
  config/robot.yaml (enabled, 50 episodes, success_margin 0.1, value_margin 0.05; other keys at
  GateSettings' defaults), the real twin scorer process and the critic's off-policy estimate
  (`snapshot(agent, replay, ope_states)` taken at export, as the learner node does). Each
  candidate is submitted and training waits for its decision (Gate.wait_idle), so every
  candidate gets one. In the learner node scoring runs in parallel with training and a newer
  candidate supersedes one still waiting, so there some candidates are never scored; here the
  gate sees every candidate, the most it could ever see. Deployed(gated) = what the gate
  published last.

At every candidate point the deployed policy of each arm is measured on `--eval-episodes`
held-out episodes through its ONNX file (onnxruntime, chunks open loop: what the actor runs;
robot_rl.training.twin_scorer.run_episodes in this process), seeds from 100000 on: away from
the gate's scoring seeds (1000..), the demos' (seed + 20000..) and training's. A version is
evaluated once (cache); the gate's own scores are reported next to it.

Prints one table and the summary (per arm: worst drop of deployed success below its running
maximum, mean deployed success; accepted/rejected counts; the verdict against success_margin,
with the binomial standard error of the held-out estimate next to it). Writes
OUT/result.json, OUT/gate_long.png and the gate's own run dir OUT/run (policies/, gate_log.jsonl).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TASK = "pick_cube"
EVAL_SEED = 100_000  # held-out episodes: seeds EVAL_SEED + i


def gate_settings(episodes: int | None):
    """config/robot.yaml's learner gate section (the robot defaults) as GateSettings."""
    import yaml

    from robot_rl.training.gate import GateSettings

    with open(ROOT / "config/robot.yaml") as f:
        section = dict(yaml.safe_load(f)["learner"]["ros__parameters"]["gate"])
    if episodes is not None:
        section["episodes"] = int(episodes)
    return GateSettings(**section)


def worst_drop(values: list[float]) -> tuple[float, int | None, int | None]:
    """Largest (running max - value) over the series, with the indices of that max and that point."""
    best, best_i, out = -math.inf, None, (0.0, None, None)
    for i, v in enumerate(values):
        if v > best:
            best, best_i = v, i
        if best - v > out[0] + 1e-12:
            out = (best - v, best_i, i)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env-steps", type=int, default=12_000)
    ap.add_argument("--candidate-every", type=int, default=1000, help="env steps between exported candidates")
    ap.add_argument("--eval-episodes", type=int, default=50, help="held-out episodes per deployed version")
    ap.add_argument("--gate-episodes", type=int, default=None,
                    help="twin episodes the gate scores each candidate on (default: config/robot.yaml's, 50)")
    ap.add_argument("--n-demos", type=int, default=20)
    ap.add_argument("--utd", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=1, help="training seed (1: the run that swung in docs/learner.md)")
    ap.add_argument("--config", default=str(ROOT / "bench/configs/sloppy_noisy.yaml"))
    ap.add_argument("--out", default=str(ROOT / "bench/out/gate_long"))
    ap.add_argument("--quick", action="store_true",
                    help="self-check: --env-steps 2000 --candidate-every 500 --eval-episodes 5 --gate-episodes 3")
    ap.add_argument("--plot-only", action="store_true", help="redraw OUT/gate_long.png from OUT/result.json")
    args = ap.parse_args(argv)
    if args.plot_only:
        from robot_rl.training.gate import GateSettings

        res = json.loads((Path(args.out) / "result.json").read_text())
        plot(res["rows"], GateSettings(**res["gate"]), res["args"]["eval_episodes"], Path(args.out) / "gate_long.png")
        return 0
    if args.quick:
        args.env_steps, args.candidate_every, args.eval_episodes, args.gate_episodes = 2000, 500, 5, 3
    if args.candidate_every < 1 or args.env_steps < 1 or args.eval_episodes < 1:
        ap.error("--env-steps, --candidate-every and --eval-episodes must be >= 1")

    import torch

    from robot_rl import twin
    from robot_rl.data.replay import MixedReplay
    from robot_rl.learn.agent import make_agent
    from robot_rl.training.gate import EPS, Figures, Gate, onnx_session, snapshot, twin_check, value_check
    from robot_rl.training.loop import TrainingLoop
    from robot_rl.training.pretrain import _schema, _view, agent_spec, collect_demos, play_chunk, read_config
    from robot_rl.training.twin_scorer import run_episodes

    torch.set_num_threads(1)
    t_start = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    settings = gate_settings(args.gate_episodes)
    loop_cfg, agent_cfg = read_config(args.config)
    loop_cfg["utd"] = args.utd

    # seeds: held-out evaluation away from everything else that seeds a reset
    seed = args.seed
    demo_seeds = range(seed + 20_000, seed + 20_000 + 3 * args.n_demos + 5)
    gate_seeds = range(settings.seed, settings.seed + settings.episodes)
    eval_seeds = range(EVAL_SEED, EVAL_SEED + args.eval_episodes)
    for name, r in (("demo", demo_seeds), ("gate", gate_seeds), ("training", range(seed, seed + 1))):
        if set(r) & set(eval_seeds):
            raise SystemExit(f"held-out seeds {eval_seeds} overlap the {name} seeds {r}")

    # ------------------------------------------------------------ the training run (pretrain.run's loop)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = twin.make_env(TASK, cameras=(), seed=seed)
    eval_env = twin.make_env(TASK, cameras=())
    expert = twin.make_expert(TASK, noise=0.1, seed=seed, operator="sloppy")
    spec = agent_spec(env)
    keys = tuple(spec.shapes)
    adim = int(env.action_space.shape[0])
    agent = make_agent("flow", spec, adim, dict(agent_cfg, seed=seed), device="cpu")
    c = agent.cfg
    replay = MixedReplay.create(_schema(spec, adim), capacity=2 * args.env_steps + 1000, chunk=c.chunk_len,
                                gamma=loop_cfg["gamma"], self_imitation=loop_cfg["self_imitation"])
    _, demo_steps = collect_demos(env, expert, replay, args.n_demos, seed=seed + 20_000, keys=keys)
    agent.fit_obs_normalizer(replay.demo.sample(max(4 * demo_steps, 256), rng)["obs"])
    loop = TrainingLoop(agent, replay, utd=loop_cfg["utd"], batch_size=loop_cfg["batch_size"],
                        min_steps=max(1, loop_cfg["learning_starts"]), seed=seed)
    print(f"{TASK}/flow seed {seed}: {args.n_demos} sloppy demos ({demo_steps} steps), config {args.config} "
          f"({loop_cfg}, agent {agent_cfg}); gate {settings}", flush=True)

    # ------------------------------------------------------------ the gate
    records: list[dict] = []
    published: list[tuple[int, int]] = []  # (wire version, candidate)
    gate = Gate(settings, run_dir, TASK, lambda data, sha, wire, meta: published.append((wire, meta["candidate"])),
                on_decision=records.append, log=lambda level, text: print(f"  [{level}] {text}", flush=True))
    gate.start()

    held_out: dict[int, dict] = {}  # version -> run_episodes' answer on the held-out seeds
    timing = {"train_s": 0.0, "gate_s": 0.0, "eval_s": 0.0}

    def evaluate(version: int) -> dict:
        if version not in held_out:
            t = time.monotonic()
            held_out[version] = run_episodes(onnx_session(gate.path(version)), eval_env, args.eval_episodes, EVAL_SEED)
            timing["eval_s"] += time.monotonic() - t
        return held_out[version]

    rows: list[dict] = []

    def candidate(step: int) -> None:
        version = len(rows)
        t = time.monotonic()
        data, sha = loop.export(version)
        inputs = snapshot(agent, replay, settings.ope_states)  # None before any online step (v0)
        gate.submit(data, sha, version, inputs)
        if not gate.wait_idle(3 * settings.timeout_s + 60):
            raise SystemExit(f"the gate decided nothing on v{version} in {3 * settings.timeout_s + 60:g} s")
        timing["gate_s"] += time.monotonic() - t
        d = next(r for r in reversed(records) if r["event"] == "decision" and r["candidate"] == version)
        deployed = gate.deployed
        cand = evaluate(version)
        dep = evaluate(deployed)
        cs, ds = d.get("candidate_success"), d.get("deployed_success")
        fig = Figures(candidate=version, **{k: d[k] for k in Figures.__dataclass_fields__ if k in d and k != "candidate"})
        twin_ok = None if cs is None or ds is None else twin_check(fig, settings)[0]
        value_ok = None if fig.q_gap is None else value_check(fig, settings)[0]
        row = {"version": version, "env_steps": step, "updates": loop.updates,
               "candidate_success": cand["success_rate"], "candidate_steps": cand["mean_steps"],
               "ungated_deployed": version, "ungated_success": cand["success_rate"],
               "gated_deployed": deployed, "gated_success": dep["success_rate"],
               "accepted": bool(d["accepted"]), "vs_deployed": d.get("deployed"),
               "gate_candidate_success": cs, "gate_deployed_success": ds,
               "q_candidate": d.get("q_candidate"), "q_deployed": d.get("q_deployed"), "q_gap": fig.q_gap,
               "twin_ok": twin_ok, "value_ok": value_ok, "reason": d["reason"], "latency_s": d["latency_s"],
               "wall_s": round(time.monotonic() - t_start, 1)}
        rows.append(row)
        print(f"v{version} @ {step} steps: candidate {row['candidate_success']:.2f} held-out"
              f" (gate {'-' if cs is None else f'{cs:.2f}'}), {'accepted' if row['accepted'] else 'REJECTED'};"
              f" gated deploys v{deployed} ({row['gated_success']:.2f}); {row['wall_s']:.0f} s", flush=True)

    try:
        step, next_cand = 0, 0
        obs, _ = env.reset(seed=seed)
        expert.reset()
        t_train = time.monotonic()
        while step < args.env_steps:
            if step >= next_cand:
                timing["train_s"] += time.monotonic() - t_train
                candidate(step)
                next_cand += args.candidate_every
                t_train = time.monotonic()
            obs, k = play_chunk(env, expert, loop, obs, keys, agent.act(_view(obs, keys), deterministic=False),
                                c.chunk_len)
            step += k
            loop.train()
        timing["train_s"] += time.monotonic() - t_train
        candidate(step)  # the run's last policy
    finally:
        gate.close()

    # ------------------------------------------------------------ summary
    n = args.eval_episodes
    summary = {}
    for arm in ("ungated", "gated"):
        series = [r[f"{arm}_success"] for r in rows]
        drop, i_max, i_low = worst_drop(series)
        se = None
        if i_max is not None:
            p1, p2 = series[i_max], series[i_low]
            se = math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
        summary[arm] = {"worst_drop": drop, "worst_drop_from": None if i_max is None else rows[i_max]["env_steps"],
                        "worst_drop_at": None if i_low is None else rows[i_low]["env_steps"],
                        "worst_drop_se": se, "mean_success": float(np.mean(series)),
                        "final_success": series[-1], "versions_deployed": sorted({r[f"{arm}_deployed"] for r in rows})}
    accepted = sum(r["accepted"] for r in rows)
    summary["accepted"], summary["rejected"] = accepted, len(rows) - accepted
    summary["accepted_unscored"] = sum(r["accepted"] and r["gate_candidate_success"] is None for r in rows)
    # the gate judged on its own 10 episodes; judged again on the held-out ones:
    regretted = [r["version"] for r in rows if not r["accepted"] and r["vs_deployed"] is not None
                 and held_out[r["version"]]["success_rate"] > held_out[r["vs_deployed"]]["success_rate"] + EPS]
    harmful = [r["version"] for r in rows if r["accepted"] and r["vs_deployed"] is not None
               and held_out[r["version"]]["success_rate"] < held_out[r["vs_deployed"]]["success_rate"]
               - settings.success_margin - EPS]
    summary["rejected_but_better_held_out"] = regretted
    summary["accepted_but_worse_than_margin_held_out"] = harmful
    summary["rejected_by_twin"] = [r["version"] for r in rows if r["twin_ok"] is False]
    summary["rejected_by_value"] = [r["version"] for r in rows if r["value_ok"] is False]
    summary["se_20_at_half"] = math.sqrt(0.25 / n)
    g = summary["gated"]
    summary["gated_within_margin"] = g["worst_drop"] <= settings.success_margin + EPS
    summary["gated_within_margin_plus_1se"] = g["worst_drop"] <= settings.success_margin + (g["worst_drop_se"] or 0) + EPS
    wall = time.monotonic() - t_start
    timing = {k: round(v, 1) for k, v in timing.items()}
    result = {"args": vars(args), "gate": settings.__dict__, "loop": loop_cfg, "agent": agent_cfg,
              "demo_steps": demo_steps, "eval_seeds": [eval_seeds.start, eval_seeds.stop],
              "rows": rows, "summary": summary, "published": published, "timing": timing, "wall_s": round(wall, 1),
              "run_dir": str(run_dir)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    plot(rows, settings, n, out / "gate_long.png")

    def f(x, fmt=".2f"):
        return "-" if x is None else format(x, fmt)

    print(f"\n{TASK}/flow seed {seed}, {args.env_steps} env steps, UTD {args.utd}, {args.config}; "
          f"a candidate every {args.candidate_every} steps; gate: {settings.episodes} twin episodes (seeds "
          f"{settings.seed}..), success_margin {settings.success_margin:g}, value_margin {settings.value_margin:g}; "
          f"held-out: {n} episodes per version (seeds {EVAL_SEED}..)")
    print("| env steps | candidate | held-out success (candidate = ungated deployed) | gated deploys | "
          "gated held-out success | gate decision | gate twin: cand / deployed | Q: cand / deployed (gap) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        dec = "accepted" if r["accepted"] else "**REJECTED**"
        if r["gate_candidate_success"] is None:
            dec += " (unscored)"
        elif not r["accepted"]:
            dec += " (" + ", ".join(w for w, ok in (("twin", r["twin_ok"]), ("value", r["value_ok"])) if ok is False) + ")"
        vs = "" if r["vs_deployed"] is None else f" vs v{r['vs_deployed']}"
        print(f"| {r['env_steps']} | v{r['version']} | {r['candidate_success']:.2f} | v{r['gated_deployed']} | "
              f"{r['gated_success']:.2f} | {dec}{vs} | {f(r['gate_candidate_success'])} / "
              f"{f(r['gate_deployed_success'])} | {f(r['q_candidate'], '.3f')} / {f(r['q_deployed'], '.3f')} "
              f"({f(r['q_gap'], '+.3f')}) |")
    print()
    for arm in ("ungated", "gated"):
        s = summary[arm]
        print(f"{arm:8s}: worst drop below running max {s['worst_drop']:.2f} (from {s['worst_drop_from']} to "
              f"{s['worst_drop_at']} steps; se of that difference {f(s['worst_drop_se'])}), mean deployed "
              f"success {s['mean_success']:.3f}, final {s['final_success']:.2f}, versions deployed "
              f"{len(s['versions_deployed'])}")
    print(f"gate: {accepted} accepted ({summary['accepted_unscored']} unscored: the first), {summary['rejected']} "
          f"rejected (by twin score: {summary['rejected_by_twin']}, by value: {summary['rejected_by_value']})")
    print(f"rejected although better on the held-out episodes than the policy they were compared with: "
          f"{regretted or 'none'}; accepted although worse there by more than the margin: {harmful or 'none'}")
    print(f"gated worst drop {g['worst_drop']:.2f} <= success_margin {settings.success_margin:g}: "
          f"{'yes' if summary['gated_within_margin'] else 'NO'}; <= margin + 1 se of the drop "
          f"({settings.success_margin + (g['worst_drop_se'] or 0):.2f}): "
          f"{'yes' if summary['gated_within_margin_plus_1se'] else 'NO'} "
          f"(binomial se of one {n}-episode estimate: <= {summary['se_20_at_half']:.3f}, at p = 0.5)")
    print(f"wall {wall / 60:.1f} min (training {timing['train_s']:.0f} s, gate {timing['gate_s']:.0f} s, "
          f"held-out evaluation {timing['eval_s']:.0f} s); {out / 'result.json'}, {out / 'gate_long.png'}")
    return 0


def plot(rows: list[dict], settings, n: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["env_steps"] for r in rows]
    fig, ax = plt.subplots(figsize=(11, 4.8))
    ax.plot(x, [r["candidate_success"] for r in rows], "o", color="0.6", alpha=0.35, ms=9,
            label="candidate (held-out)", zorder=1)
    ax.step(x, [r["gated_success"] for r in rows], where="post", color="tab:blue", lw=3, alpha=0.8,
            label=f"gated (margin {settings.success_margin:g}, {settings.episodes} twin episodes)", zorder=2)
    ax.step(x, [r["ungated_success"] for r in rows], where="post", color="tab:red", lw=1.4, ls="--",
            label="ungated: deployed = newest candidate", zorder=2.5)
    acc = [r for r in rows if r["accepted"]]
    rej = [r for r in rows if not r["accepted"]]
    ax.plot([r["env_steps"] for r in acc], [r["candidate_success"] for r in acc], "^", color="tab:green", ms=7,
            label="accepted by the gate", zorder=3)
    ax.plot([r["env_steps"] for r in rej], [r["candidate_success"] for r in rej], "x", color="black", ms=8, mew=2,
            label="rejected by the gate", zorder=3)
    for r in rows:
        ax.annotate(f"v{r['version']}", (r["env_steps"], r["candidate_success"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=7, color="0.4")
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"success rate ({n} held-out episodes)")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("deployed policy's success: gated vs ungated (one training run, same candidates)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
