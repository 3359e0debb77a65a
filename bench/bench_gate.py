"""Gated deployment, end to end on real parts: a policy pre-trained in the twin, the real twin
scorer process (MuJoCo in its own process), the critic's off-policy estimate, the gate's rule.

    python bench/bench_gate.py [--agent DIR] [--episodes 10] [--out bench/out/gate]

Without --agent it pre-trains one first (robot-rl pretrain, the graph's CPU-sized networks,
as bench/bench_robot_graph.py does; a few minutes). Then, through one Gate:
  v0  an untrained network (the run's first candidate: published unscored),
  v1  the pre-trained actor            -> must be accepted against v0,
  v2  v1 with every action inverted    -> must be rejected against v1,
  v3.. v1 again and v2 again, alternating, for the latency figure.
"Recent data" for the estimate: the states of the pre-trained policy's own episodes in the twin
(what a learner's replay holds after it has run a while), with the pre-trained critic.
Decision latency = candidate handed to the gate -> decision logged (twin scoring of the
candidate; the deployed one's score is cached). Prints one table; writes result.json.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "robot_rl.cli"]


def pretrain(out: Path, steps: int, env: dict) -> Path:
    agent = out / "pretrain"
    with open(out / "pretrain.log", "w") as f:
        subprocess.run(CLI + ["pretrain", "--task", "pick_cube", "--config", str(ROOT / "bench/configs/small.yaml"),
                              "--utd", "2", "--env-steps", str(steps), "--out", str(agent)],
                       env=env, stdout=f, stderr=subprocess.STDOUT, check=True, cwd=ROOT)
    return agent


def inverted_onnx(agent) -> bytes:
    """The deployed actor with every action negated: the deliberately broken candidate."""
    import torch

    from robot_rl.learn.export import DeployedActor
    from robot_rl.learn.synthetic import random_obs

    class Inverted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.actor = DeployedActor(agent)

        def forward(self, *obs):
            return -self.actor(*obs)

    module = Inverted().cpu().float().eval()
    keys = module.actor.keys
    inputs = random_obs(agent.spec, 2, np.random.default_rng(0))
    f = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(torch.as_tensor(inputs[k]) for k in keys), f, input_names=list(keys),
                          output_names=["actions"], dynamic_axes={**{k: {0: "b"} for k in keys}, "actions": {0: "b"}},
                          opset_version=17, dynamo=False)
    return f.getvalue()


def policy_states(onnx_bytes: bytes, keys, n: int, seed: int) -> dict:
    """Observations of the policy's own twin episodes (chunks open loop), n steps."""
    from robot_rl.training.gate import onnx_session
    from robot_rl.twin import make_env

    env, sess = make_env("pick_cube"), onnx_session(onnx_bytes)
    rows, ep = [], 0
    while len(rows) < n:
        obs, _ = env.reset(seed=seed + ep)
        ep += 1
        done = False
        while not done and len(rows) < n:
            chunk = sess.run(["actions"], {k: np.asarray(obs[k])[None] for k in keys})[0][0]
            for a in np.clip(chunk, -1, 1):
                rows.append({k: np.asarray(obs[k]) for k in keys})
                obs, _, term, trunc, _ = env.step(a)
                done = term or trunc
                if done:
                    break
    return {k: np.stack([r[k] for r in rows]) for k in keys}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="", help="a robot-rl pretrain output dir (agent.pt + actor.onnx)")
    ap.add_argument("--pretrain-steps", type=int, default=3000)
    ap.add_argument("--episodes", type=int, default=10, help="twin episodes per candidate (gate.episodes)")
    ap.add_argument("--repeats", type=int, default=2, help="extra good/inverted pairs for the latency median")
    ap.add_argument("--out", default=str(ROOT / "bench/out/gate"))
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    t0 = time.monotonic()
    agent_dir = Path(args.agent).resolve() if args.agent else pretrain(out, args.pretrain_steps, env)
    pretrain_s = time.monotonic() - t0 if not args.agent else None

    import shutil

    import torch

    from robot_rl.learn import make_agent
    from robot_rl.learn.agent import load_agent
    from robot_rl.training.gate import CriticSnapshot, Gate, GateSettings, OpeInputs
    from robot_rl.training.settings import LearnerAgentConfig

    torch.set_num_threads(1)
    agent = load_agent(str(agent_dir / "agent.pt"), device="cpu")
    good = (agent_dir / "actor.onnx").read_bytes()
    bad = inverted_onnx(agent)
    untrained = make_agent(agent.kind, agent.spec, agent.action_dim, LearnerAgentConfig(), device="cpu")
    from robot_rl.learn.export import export_actor_bytes

    random_init = export_actor_bytes(untrained, 0)[0]
    keys = tuple(agent.spec.shapes)
    inputs = OpeInputs(CriticSnapshot(agent), policy_states(good, keys, 256, seed=5000))

    run_dir = out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    settings = GateSettings(enabled=True, episodes=args.episodes)
    published = []
    gate = Gate(settings, run_dir, "pick_cube", lambda data, sha, v, meta: published.append((v, meta["candidate"])),
                log=lambda level, text: print(f"  [{level}] {text}", flush=True))
    gate.start()
    plan = [("untrained (first)", random_init), ("pre-trained", good), ("pre-trained, inverted", bad)]
    plan += [x for _ in range(args.repeats) for x in (("pre-trained again", good), ("inverted again", bad))]
    try:
        for version, (_, data) in enumerate(plan):
            gate.submit(data, "", version, inputs if version else None)
            if not gate.wait_idle(900):
                raise SystemExit("the gate took more than 15 min for one candidate")
    finally:
        gate.close()
    log = [json.loads(line) for line in (run_dir / "gate_log.jsonl").read_text().splitlines()]
    decisions = {r["candidate"]: r for r in log if r["event"] == "decision"}
    rows = []
    for version, (name, _) in enumerate(plan):
        d = decisions[version]
        rows.append({"candidate": f"v{version}", "what": name, "deployed": d["deployed"],
                     "twin_success": d["candidate_success"], "deployed_success": d["deployed_success"],
                     "mean_steps": d["candidate_steps"], "q_candidate": d["q_candidate"],
                     "q_deployed": d["q_deployed"], "accepted": d["accepted"], "latency_s": d["latency_s"],
                     "reason": d["reason"]})
    scored = [r["latency_s"] for r in rows[1:]]
    result = {"agent": str(agent_dir), "pretrain_s": pretrain_s, "episodes": args.episodes, "rows": rows,
              "published": published, "latency_median_s": float(np.median(scored))}
    (out / "result.json").write_text(json.dumps(result, indent=1))

    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    print(f"\ngate: {args.episodes} twin episodes per candidate, success_margin {settings.success_margin}, "
          f"value_margin {settings.value_margin}; agent {agent_dir}")
    print("| candidate | what | vs deployed | twin success | deployed's | mean steps | Q candidate | Q deployed | "
          "decision | latency |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['candidate']} | {r['what']} | {'-' if r['deployed'] is None else 'v' + str(r['deployed'])} | "
              f"{f(r['twin_success'], '.0%')} | {f(r['deployed_success'], '.0%')} | {f(r['mean_steps'], '.1f')} | "
              f"{f(r['q_candidate'], '.3f')} | {f(r['q_deployed'], '.3f')} | "
              f"{'accepted' if r['accepted'] else 'REJECTED'} | {r['latency_s']:.2f} s |")
    print(f"decision latency (candidate ready -> decision), median over {len(scored)} scored candidates: "
          f"{result['latency_median_s']:.2f} s; published: {published}")
    ok = rows[1]["accepted"] and not rows[2]["accepted"]
    print("inverted candidate rejected, pre-trained accepted against the untrained one:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
