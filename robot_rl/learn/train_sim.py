"""ROS-free sim training: scripted-expert demos, then online RL with chunked open-loop execution,
optional simulated interventions, periodic evaluation logged against environment steps.

    robot-rl pretrain --task pick_cube --kind flow --seed 0 --env-steps 30000 --n-demos 20 \
        --out runs/pick_cube_flow_s0        (= python -m robot_rl.learn.train_sim ...)

Budget: `env_steps` counts online steps (policy and intervention); demo collection is reported
separately as `demo_steps`. After every executed chunk of k steps the agent takes k updates of
`utd` critic steps each (RLPD's UTD, see Agent.update). Evaluation runs the deterministic
deployed actor (one-step flow with z = 0, SAC mean, or the BC sampler) on its own env seed.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from robot_rl.data.replay import MixedReplay
from robot_rl.learn.agent import make_agent
from robot_rl.spec import ObsSpec
from robot_rl.training.metrics_log import MetricsLog

CSV_FIELDS = ("env_steps", "updates", "success_rate", "mean_return", "episodes", "demo_steps", "wall_s")


def _success(info: dict, reward: float) -> bool:
    for key in ("success", "is_success"):
        if key in info:
            return bool(info[key])
    return reward > 0


def agent_spec(env, obs_keys=None) -> ObsSpec:
    """What the agent observes: the env's observation keys, or the `obs_keys` subset of them.

    Learning from pixels drops "object" (the simulator's cube pose, which a real cell does not
    measure): obs_keys=("proprio", "wrist"). The scripted expert still reads the full observation."""
    spec = ObsSpec.from_space(env.observation_space)
    if not obs_keys:
        return spec
    missing = [k for k in obs_keys if k not in spec.shapes]
    if missing:
        raise ValueError(f"obs_keys {missing} are not in the env's observation {sorted(spec.shapes)}")
    return ObsSpec({k: spec.shapes[k] for k in obs_keys}, {k: spec.dtypes[k] for k in obs_keys})


def _view(obs: dict, keys) -> dict:
    """The agent's part of an env observation (all of it when keys is None)."""
    return obs if keys is None else {k: obs[k] for k in keys}


def _schema(spec: ObsSpec, action_dim: int) -> dict:
    """The replay schema {key: (shape, dtype)}: the agent's observation keys plus "action"."""
    schema = {k: (tuple(s), spec.dtypes[k]) for k, s in spec.shapes.items()}
    schema["action"] = ((action_dim,), "<f4")
    return schema


def collect_demos(env, expert, replay, n_demos: int, seed: int, max_tries: int | None = None,
                  keys=None) -> tuple[int, int]:
    """Roll out the scripted expert until n_demos successful episodes are on the demo side
    (storing only the observation `keys`, default all). Returns (episodes kept, env steps spent,
    failures included)."""
    kept = steps = tries = 0
    max_tries = max_tries or 3 * n_demos + 5
    while kept < n_demos and tries < max_tries:
        obs, _ = env.reset(seed=seed + tries)
        expert.reset()
        rows, done, success = [], False, False
        while not done:
            action = np.asarray(expert.act(obs), np.float32)
            next_obs, reward, terminated, truncated, info = env.step(action)
            rows.append({**_view(obs, keys), "action": action, "reward": np.float32(reward), "terminated": bool(terminated)})
            success = success or _success(info, reward)
            done, obs = terminated or truncated, next_obs
        steps += len(rows)
        tries += 1
        if success:
            episode = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            replay.demo.add_episode(episode, _view(obs, keys), is_demo=True)
            kept += 1
    if kept < n_demos:
        raise RuntimeError(f"the scripted expert succeeded in only {kept}/{tries} episodes (wanted {n_demos})")
    return kept, steps


def evaluate(env, agent, episodes: int, seed: int) -> tuple[float, float]:
    """Success rate and mean return of the deterministic deployed policy, chunks run open-loop.
    The agent is given only the keys of its own observation spec."""
    successes, returns = 0, []
    keys = tuple(agent.spec.shapes)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, success, ret = False, False, 0.0
        while not done:
            for action in agent.act(_view(obs, keys), deterministic=True):
                obs, reward, terminated, truncated, info = env.step(action)
                ret += float(reward)
                success = success or _success(info, reward)
                done = terminated or truncated
                if done:
                    break
        successes += success
        returns.append(ret)
    return successes / max(episodes, 1), float(np.mean(returns))


def run(task: str, kind: str = "flow", seed: int = 0, env_steps: int = 30_000, n_demos: int = 20,
        utd: int | None = None, cfg: dict | None = None, gamma: float = 0.99, cameras=(),
        image_size: int = 128, obs_keys=None,
        expert_noise: float = 0.1, intervention_prob: float = 0.0, learning_starts: int = 0,
        pretrain_updates: int = 0, eval_every: int = 1000, eval_episodes: int = 10,
        out_dir: str | None = None, device="auto", progress: bool = True,
        env_fn=None, expert_fn=None) -> list[dict]:
    """Train one agent on one twin task; returns the evaluation log (also written as CSV).

    env_fn(task, cameras, seed) and expert_fn(task, noise, seed) default to robot_rl.twin's
    make_env / make_expert (at `image_size`). obs_keys: what the agent sees (default: every
    env key); ("proprio", "wrist") learns from pixels without the simulator's object pose.
    intervention_prob: chance per chunk that the expert takes over (HIL-SERL style; those steps
    also go to the demo side).
    """
    import torch

    if env_fn is None or expert_fn is None:
        from robot_rl import twin

        env_fn = env_fn or (lambda t, c, s: twin.make_env(t, cameras=c, image_size=image_size, seed=s))
        expert_fn = expert_fn or (lambda t, n, s: twin.make_expert(t, noise=n, seed=s))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env, eval_env = env_fn(task, tuple(cameras), seed), env_fn(task, tuple(cameras), seed + 10_000)
    expert = expert_fn(task, expert_noise, seed)
    spec = agent_spec(env, obs_keys)
    keys = tuple(spec.shapes)
    cfg = dict(cfg or {}, seed=seed)
    if utd is not None:
        cfg["utd"] = int(utd)
    agent = make_agent(kind, spec, int(env.action_space.shape[0]), cfg, device=device)
    c = agent.cfg
    replay = MixedReplay.create(_schema(spec, int(env.action_space.shape[0])), capacity=2 * env_steps + 1000,
                                chunk=c.chunk_len, gamma=gamma)
    _, demo_steps = collect_demos(env, expert, replay, n_demos, seed=seed + 20_000, keys=keys)
    agent.fit_obs_normalizer(replay.demo.sample(max(4 * demo_steps, 256), rng)["obs"])
    for _ in range(pretrain_updates):
        agent.update(replay.sample(c.batch_size, rng))

    rows, t0 = [], time.time()
    log = MetricsLog(out_dir, os.path.join(out_dir, "progress.csv"), CSV_FIELDS) if out_dir else None

    def log_eval(step, metrics):
        sr, ret = evaluate(eval_env, agent, eval_episodes, seed + 10_000)
        row = {"env_steps": step, "updates": agent.num_updates, "success_rate": sr, "mean_return": ret,
               "episodes": episodes, "demo_steps": demo_steps, "wall_s": round(time.time() - t0, 1)}
        rows.append(row)
        if log:  # TensorBoard steps are environment steps, as in the CSV
            log.row(row)
            log.scalars("eval", {"success_rate": sr, "mean_return": ret}, step)
            log.scalars("train", metrics, step)
        return sr

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=env_steps, desc=f"{task}/{kind}/s{seed}", unit="step")
    step, episodes, metrics, next_eval = 0, 0, {}, 0
    obs, _ = env.reset(seed=seed)
    expert.reset()
    while step < env_steps:
        if step >= next_eval:
            sr = log_eval(step, metrics)
            next_eval += eval_every
            if bar:
                bar.set_postfix(success=f"{sr:.2f}")
        intervene = rng.random() < intervention_prob
        chunk = None if intervene else agent.act(_view(obs, keys), deterministic=False)
        done, k = False, 0
        for i in range(c.chunk_len):
            action = np.asarray(expert.act(obs) if intervene else chunk[i], np.float32)
            next_obs, reward, terminated, truncated, info = env.step(action)
            replay.add_step({**_view(obs, keys), "action": action, "reward": np.float32(reward),
                             "terminated": bool(terminated), "intervened": intervene})
            obs, k, done = next_obs, k + 1, terminated or truncated
            if done:
                break
        step += k
        if bar:
            bar.update(k)
        if done:
            replay.end_episode(_view(obs, keys))
            episodes += 1
            obs, _ = env.reset()
            expert.reset()
        if step >= learning_starts and replay.online.has_samples:
            for _ in range(k):
                metrics = agent.update(replay.sample(c.batch_size * c.utd, rng), n_critic_steps=c.utd)
    log_eval(step, metrics)
    if bar:
        bar.close()
    if log:
        log.close()
        agent.save(os.path.join(out_dir, "agent.pt"))
        agent.export_onnx(os.path.join(out_dir, "actor.onnx"), version=agent.num_updates)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="pick_cube")
    ap.add_argument("--kind", default="flow", choices=("flow", "sac", "bc"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--env-steps", type=int, default=30_000)
    ap.add_argument("--n-demos", type=int, default=20)
    ap.add_argument("--utd", type=int, default=None)
    ap.add_argument("--config", default=None, help="YAML file with AgentConfig keys")
    ap.add_argument("--gamma", type=float, default=0.99)
    ap.add_argument("--cameras", default="", help="comma-separated camera names (empty: state-only)")
    ap.add_argument("--image-size", type=int, default=128, help="camera image height = width (pixels)")
    ap.add_argument("--obs-keys", default="",
                    help="comma-separated keys the agent sees (default all; e.g. proprio,wrist = from pixels)")
    ap.add_argument("--intervention-prob", type=float, default=0.0)
    ap.add_argument("--pretrain-updates", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (small nets: 1 is fastest)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    cfg = None
    if args.config:
        import yaml

        with open(args.config) as f:
            cfg = yaml.safe_load(f) or {}
    rows = run(args.task, args.kind, args.seed, args.env_steps, args.n_demos, args.utd, cfg, args.gamma,
               tuple(c for c in args.cameras.split(",") if c), image_size=args.image_size,
               obs_keys=tuple(k for k in args.obs_keys.split(",") if k) or None, intervention_prob=args.intervention_prob,
               pretrain_updates=args.pretrain_updates, eval_every=args.eval_every,
               eval_episodes=args.eval_episodes, out_dir=args.out, device=args.device)
    print(f"final success rate {rows[-1]['success_rate']:.2f} after {rows[-1]['env_steps']} env steps")


if __name__ == "__main__":
    main()
