"""ROS-free sim training: scripted-expert demos, then online RL with chunked open-loop execution,
optional simulated interventions, periodic evaluation logged against environment steps.

    robot-rl pretrain --task pick_cube --kind flow --seed 0 --env-steps 30000 --n-demos 20 \
        --out runs/pick_cube_flow_s0        (= python -m robot_rl.training.pretrain ...)

Budget: `env_steps` counts online steps (policy and intervention); demo collection is reported
separately as `demo_steps`. Training is the learner's own loop (robot_rl/training/loop.py), run
inline after every executed chunk: `utd` critic steps owed per online step from the
`learning_starts`-th on, `batch_size` rows per critic step. Chunks run open-loop and restart at
each episode start, as in the actor. Evaluation runs the deterministic deployed actor (one-step
flow with z = 0, SAC mean, or the BC sampler) on its own env seed.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from robot_rl.data.record import expert_episode, step_success
from robot_rl.data.replay import INTERVENTION_MODES, MixedReplay
from robot_rl.learn.agent import KINDS, make_agent
from robot_rl.spec import ActionSpec, ObsSpec
from robot_rl.training.loop import TrainingLoop, replay_device
from robot_rl.training.metrics_log import MetricsLog
from robot_rl.twin.experts import OPERATORS

# cycle_steps: mean steps of the successful evaluation episodes (empty when none succeeded): a
# policy that beats a slow teacher shows it here, not in the success rate (issue #21).
# promoted: online episodes self-imitation moved to the demo side so far (0 when it is off).
# intervention_rate: the fraction of online steps since the last evaluation that a human drove.
CSV_FIELDS = ("env_steps", "updates", "success_rate", "mean_return", "cycle_steps", "episodes", "demo_steps",
              "promoted", "intervention_rate", "wall_s")


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
    """Roll out the scripted expert (robot_rl.data.record.expert_episode) until n_demos
    successful episodes are on the demo side (storing only the observation `keys`, default all).
    Returns (episodes kept, env steps spent, failures included)."""
    kept = steps = tries = 0
    max_tries = max_tries or 3 * n_demos + 5
    while kept < n_demos and tries < max_tries:
        rows = []
        for obs, action, reward, terminated, _, final_obs, info in expert_episode(env, expert, seed + tries):
            rows.append({**_view(obs, keys), "action": action, "reward": np.float32(reward), "terminated": terminated})
        steps += len(rows)
        tries += 1
        if step_success(info, reward):
            episode = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            replay.add_demo_episode(episode, _view(final_obs, keys))
            kept += 1
    if kept < n_demos:
        raise RuntimeError(f"the scripted expert succeeded in only {kept}/{tries} episodes (wanted {n_demos})")
    return kept, steps


def play_chunk(env, expert, loop, obs: dict, keys, chunk, chunk_len: int, human=None) -> tuple[dict, int]:
    """Execute one chunk open-loop, every step into the training loop (the policy's `chunk`, or
    the expert's actions when it is None: an intervention, whose steps also go to the demo
    side). `human`: the sim graph's scripted human (robot_rl/teleop/scripted.py, sharing
    `expert`), asked about every step: while it is engaged its expert drives (intervened steps)
    and the rest of the policy's chunk is dropped, as the actor drops it; the chunk ends when it
    lets go, so the policy replans from what it left. At an episode's end it is closed and the
    env and expert reset, so the next chunk is planned from the new episode's first observation.
    Returns (observation, steps taken)."""
    took_over = False
    for i in range(chunk_len):
        if human is not None:
            answer = human.answer(obs, loop.episodes, evaluating=False)
            if not answer.engaged and took_over:
                return obs, i  # let go: the policy plans afresh from here
            took_over |= answer.engaged
            intervene = answer.engaged
            action = answer.action if intervene else chunk[i]
        else:
            intervene = chunk is None
            action = expert.act(obs) if intervene else chunk[i]
        action = np.asarray(action, np.float32)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        loop.add_step({**_view(obs, keys), "action": action, "reward": np.float32(reward),
                       "terminated": bool(terminated), "intervened": intervene})
        obs = next_obs
        if terminated or truncated:
            loop.end_episode(_view(obs, keys))
            obs, _ = env.reset()
            expert.reset()
            return obs, i + 1
    return obs, chunk_len


def evaluate(env, agent, episodes: int, seed: int) -> tuple[float, float, float]:
    """Success rate, mean return and cycle time (mean steps of the successful episodes, NaN if
    none) of the deterministic deployed policy, chunks run open-loop. The agent is given only
    the keys of its own observation spec."""
    successes, returns, cycles = 0, [], []
    keys = tuple(agent.spec.shapes)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done, success, ret, t = False, False, 0.0, 0
        while not done:
            for action in agent.act(_view(obs, keys), deterministic=True):
                obs, reward, terminated, truncated, info = env.step(action)
                ret += float(reward)
                t += 1
                if not success and step_success(info, reward):
                    success = True
                    cycles.append(t)  # the step the task was done, not the episode's end
                done = terminated or truncated
                if done:
                    break
        successes += success
        returns.append(ret)
    cycle = float(np.mean(cycles)) if cycles else float("nan")
    return successes / max(episodes, 1), float(np.mean(returns)), cycle


def run(task: str, kind: str = "flow", seed: int = 0, env_steps: int = 30_000, n_demos: int = 20,
        utd: float = 1, cfg: dict | None = None, gamma: float = 0.99, cameras=(), batch_size: int = 256,
        image_size: int = 128, obs_keys=None, self_imitation: float = 0.0, interventions: str = "online",
        expert_noise: float = 0.1, operator: str = "expert", intervention_prob: float = 0.0,
        takeover: dict | None = None,
        learning_starts: int = 0,
        pretrain_updates: int = 0, eval_every: int = 1000, eval_episodes: int = 10,
        out_dir: str | None = None, device="auto", progress: bool = True,
        env_fn=None, expert_fn=None) -> list[dict]:
    """Train one agent on one twin task; returns the evaluation log (also written as CSV).

    env_fn(task, cameras, seed) and expert_fn(task, noise, seed) default to robot_rl.twin's
    make_env / make_expert (at `image_size`, as `operator`: "sloppy" makes the demos and the
    interventions the twin's sloppy operator's, a teacher to beat; docs/twin.md; a given
    expert_fn is used as it is). obs_keys: what the agent sees (default: every env key);
    ("proprio", "wrist") learns from pixels without the simulator's object pose.
    intervention_prob: chance per chunk that the expert takes over (HIL-SERL style). takeover:
    the sim graph's scripted human instead, its takeover rule (robot_rl.teleop.takeover.
    TakeoverConfig keys; {} = the defaults) judging every step, so interventions and their rate
    are those of `robot-rl sim` without DDS. utd, batch_size, learning_starts: the training
    loop's schedule (robot_rl/training/loop.py; learning_starts is its min_steps); self_imitation: the replay's
    (robot_rl.data.replay.MixedReplay; 0 = off); interventions: the replay's too (what the
    human's steps are: demo | successful | online); cfg: AgentConfig keys.
    """
    import torch

    if env_fn is None or expert_fn is None:
        from robot_rl import twin

        env_fn = env_fn or (lambda t, c, s: twin.make_env(t, cameras=c, image_size=image_size, seed=s))
        expert_fn = expert_fn or (lambda t, n, s: twin.make_expert(t, noise=n, seed=s, operator=operator))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env, eval_env = env_fn(task, tuple(cameras), seed), env_fn(task, tuple(cameras), seed + 10_000)
    expert = expert_fn(task, expert_noise, seed)
    spec = agent_spec(env, obs_keys)
    keys = tuple(spec.shapes)
    cfg = dict(cfg or {}, seed=seed)
    agent = make_agent(kind, spec, int(env.action_space.shape[0]), cfg, device=device)
    c = agent.cfg
    replay = MixedReplay.create(_schema(spec, int(env.action_space.shape[0])), capacity=2 * env_steps + 1000,
                                chunk=c.chunk_len, gamma=gamma, self_imitation=self_imitation,
                                interventions=interventions, device=replay_device(agent.device))
    _, demo_steps = collect_demos(env, expert, replay, n_demos, seed=seed + 20_000, keys=keys)
    agent.fit_obs_normalizer(replay.demo.sample(max(4 * demo_steps, 256), rng)["obs"])
    for _ in range(pretrain_updates):  # offline, on the demos alone: outside the online schedule
        agent.update(replay.sample(batch_size, rng))
    loop = TrainingLoop(agent, replay, utd=utd, batch_size=batch_size, min_steps=max(1, learning_starts), seed=seed)
    human = None
    if takeover is not None and intervention_prob > 0:
        raise ValueError("pretrain: intervention_prob and takeover are two ways to intervene; give one")
    if takeover is not None:
        from robot_rl.safety import SafetyConfig
        from robot_rl.teleop.scripted import ScriptedHuman
        from robot_rl.teleop.takeover import TakeoverConfig

        box = SafetyConfig()  # the box the twin clips to and the graph's human judges in
        human = ScriptedHuman(task, getattr(env, "action_spec", None) or ActionSpec(),
                              TakeoverConfig.from_dict(takeover), box.workspace_min,
                              box.workspace_max, seed=seed, expert=expert)
    since = {"steps": 0, "intervened": 0}  # the loop's counts at the last evaluation

    rows, t0 = [], time.time()
    log = MetricsLog(out_dir, os.path.join(out_dir, "progress.csv"), CSV_FIELDS) if out_dir else None

    def log_eval(step):
        metrics = loop.metrics
        sr, ret, cycle = evaluate(eval_env, agent, eval_episodes, seed + 10_000)
        window = loop.steps - since["steps"]
        rate = (loop.intervened - since["intervened"]) / window if window else 0.0
        since.update(steps=loop.steps, intervened=loop.intervened)
        row = {"env_steps": step, "updates": agent.num_updates, "success_rate": sr, "mean_return": ret,
               "cycle_steps": "" if np.isnan(cycle) else round(cycle, 2),
               "episodes": loop.episodes, "demo_steps": demo_steps, "promoted": replay.promoted,
               "intervention_rate": round(rate, 4), "wall_s": round(time.time() - t0, 1)}
        rows.append(row)
        if log:  # TensorBoard steps are environment steps, as in the CSV
            log.row(row)
            log.scalars("eval", {"success_rate": sr, "mean_return": ret,
                                 **({} if np.isnan(cycle) else {"cycle_steps": cycle})}, step)
            log.scalars("train", metrics, step)
        return sr

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=env_steps, desc=f"{task}/{kind}/s{seed}", unit="step")
    step, next_eval = 0, 0
    obs, _ = env.reset(seed=seed)
    expert.reset()
    while step < env_steps:
        if step >= next_eval:
            sr = log_eval(step)
            next_eval += eval_every
            if bar:
                bar.set_postfix(success=f"{sr:.2f}")
        intervene = rng.random() < intervention_prob
        chunk = None if intervene else agent.act(_view(obs, keys), deterministic=False)
        obs, k = play_chunk(env, expert, loop, obs, keys, chunk, c.chunk_len, human)
        step += k
        if bar:
            bar.update(k)
        loop.train()
    log_eval(step)
    if bar:
        bar.close()
    if log:
        log.close()
        agent.save(os.path.join(out_dir, "agent.pt"))
        agent.export_onnx(os.path.join(out_dir, "actor.onnx"), version=agent.num_updates)
    return rows


# takeover: the scripted human's rule (TakeoverConfig keys); None = no human, {} = its defaults
LOOP_DEFAULTS = {"utd": 1.0, "batch_size": 256, "gamma": 0.99, "learning_starts": 0, "self_imitation": 0.0,
                 "interventions": "online", "takeover": None}


def read_config(paths) -> tuple[dict, dict]:
    """Pretrain settings file(s) -> (the loop's keys, AgentConfig keys). Same shape as the
    learner's section of config/sim.yaml: loop keys at the top, the agent under `agent:`.
    Several files (a list, or "a.yaml+b.yaml") merge in order, later keys winning, so a variant
    adds its few keys to a shared base (bench/configs/small.yaml + human_online.yaml)."""
    loop, agent = dict(LOOP_DEFAULTS), {}
    if isinstance(paths, str):
        paths = paths.split("+")
    import yaml

    for path in paths or ():
        with open(path) as f:
            d = dict(yaml.safe_load(f) or {})
        agent.update(d.pop("agent", None) or {})
        unknown = sorted(set(d) - set(LOOP_DEFAULTS))
        if unknown:
            raise SystemExit(f"{path}: unknown keys {unknown}; valid: {sorted(LOOP_DEFAULTS)} and `agent:` "
                             f"(AgentConfig keys go under agent:)")
        loop.update(d)
    return loop, agent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="pick_cube")
    ap.add_argument("--kind", default="flow", choices=KINDS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--env-steps", type=int, default=30_000)
    ap.add_argument("--n-demos", type=int, default=20)
    ap.add_argument("--config", default=None,
                    help="YAML with the loop's keys (utd, batch_size, gamma, learning_starts, self_imitation, "
                         "interventions, takeover) and AgentConfig keys under `agent:`, as in config/sim.yaml's "
                         "learner section (e.g. bench/configs/small.yaml); a.yaml+b.yaml merges them in order")
    ap.add_argument("--utd", type=float, default=None, help=f"critic steps per env step (default {LOOP_DEFAULTS['utd']})")
    ap.add_argument("--batch-size", type=int, default=None,
                    help=f"replay rows per critic step (default {LOOP_DEFAULTS['batch_size']})")
    ap.add_argument("--gamma", type=float, default=None, help=f"discount (default {LOOP_DEFAULTS['gamma']})")
    ap.add_argument("--learning-starts", type=int, default=None, help="online steps before the first update (default 0)")
    ap.add_argument("--self-imitation", type=float, default=None,
                    help="promote the policy's own successful episodes no longer than this quantile of the "
                         "teachers' to the demo side (0 = off, the default; docs/learner.md)")
    ap.add_argument("--cameras", default="", help="comma-separated camera names (empty: state-only)")
    ap.add_argument("--image-size", type=int, default=128, help="camera image height = width (pixels)")
    ap.add_argument("--obs-keys", default="",
                    help="comma-separated keys the agent sees (default all; e.g. proprio,wrist = from pixels)")
    ap.add_argument("--operator", default="expert", choices=OPERATORS,
                    help="who makes the demos and interventions: the scripted expert, or the sloppy operator")
    ap.add_argument("--intervention-prob", type=float, default=0.0,
                    help="chance per chunk that the expert drives it instead of the policy")
    ap.add_argument("--interventions", default=None, choices=INTERVENTION_MODES,
                    help="what the human's steps are to the learner (default demo; docs/learner.md)")
    ap.add_argument("--human", action="store_true",
                    help="the sim graph's scripted human steps in by its takeover rule (its defaults, as "
                         "config/sim.yaml's teleop/takeover; a `takeover:` section in --config also turns it on)")
    ap.add_argument("--pretrain-updates", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-episodes", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (small nets: 1 is fastest)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    loop, cfg = read_config(args.config)
    for key in LOOP_DEFAULTS:  # the command line wins over the file
        if getattr(args, key, None) is not None:
            loop[key] = getattr(args, key)
    if args.human and loop["takeover"] is None:
        loop["takeover"] = {}
    rows = run(args.task, args.kind, args.seed, args.env_steps, args.n_demos, cfg=cfg, **loop,
               cameras=tuple(c for c in args.cameras.split(",") if c), image_size=args.image_size,
               obs_keys=tuple(k for k in args.obs_keys.split(",") if k) or None, operator=args.operator,
               intervention_prob=args.intervention_prob,
               pretrain_updates=args.pretrain_updates, eval_every=args.eval_every,
               eval_episodes=args.eval_episodes, out_dir=args.out, device=args.device)
    print(f"final success rate {rows[-1]['success_rate']:.2f} after {rows[-1]['env_steps']} env steps")


if __name__ == "__main__":
    main()
