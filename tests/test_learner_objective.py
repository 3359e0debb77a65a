"""The flow learner's objective when the demos are slower than what the critic knows is possible
(issue #21, docs/learner.md "From sloppy demos"): Q-filtered distillation and advantage-weighted
flow BC. Each test holds the critic fixed (a known preference) and runs the flow actor step alone,
so what moves the policy is the objective under test, not a critic still being learned."""
import numpy as np
import pytest
import torch
from torch import nn

from robot_rl.learn import AgentConfig, make_agent
from robot_rl.learn.batch import batch_to_tensors
from robot_rl.learn.synthetic import STATE_SPEC, random_batch

torch.set_num_threads(1)
H, A = 2, 1
TINY = {"chunk_len": H, "actor_hidden": [32, 32], "critic_hidden": [32, 32], "n_critics": 2, "flow_steps": 4,
        "lr": 1e-3}


class PreferCritic(nn.Module):
    """A fixed 'critic' ensemble: Q(s, a) = 1 - mean((a - best)^2) over the chunk, for every
    member and state (shape (E, B, 1) like EnsembleMLP)."""

    def __init__(self, best: float, members: int = 2):
        super().__init__()
        self.best, self.members = best, members

    def forward(self, inp, members=None):
        q = 1.0 - (inp[:, -H * A:] - self.best).pow(2).mean(-1, keepdim=True)
        return q.unsqueeze(0).expand(self.members if members is None else len(members), -1, -1)


def _agent(best: float, **cfg):
    agent = make_agent("flow", STATE_SPEC, A, {**TINY, **cfg}, device="cpu")
    agent._critic = PreferCritic(best)  # the actor step reads Q through agent._critic only
    return agent


def _demo_batch(agent, demo_actions: np.ndarray, batch: int = 128):
    """Every row a demo chunk from one state; actions cycle through demo_actions (values)."""
    raw = random_batch(STATE_SPEC, batch, H, A, seed=0, demo_fraction=1.0)
    raw["obs"] = {k: np.repeat(v[:1], batch, axis=0) for k, v in raw["obs"].items()}
    raw["mask"][:] = 1.0
    raw["is_demo"][:] = 1.0
    raw["actions"] = np.resize(demo_actions, batch).astype(np.float32)[:, None, None].repeat(H, 1)
    b = batch_to_tensors(agent.spec, raw, H, A, agent.device)
    agent.fit_obs_normalizer(b["obs"])
    return b, {k: v[:1].numpy() for k, v in b["obs"].items()}


def _train_actor(agent, b, steps: int):
    feats = agent._encode(b["obs"]).detach()
    metrics = [agent._flow_actor_step(b, feats) for _ in range(steps)]
    return {k: float(v.detach()) for k, v in metrics[-1].items()}


def test_q_filtered_distillation_lets_the_actor_pass_a_slow_teacher():
    """Demos move at 0.2, the critic prefers 0.8 (a faster hand). Today's objective holds the
    deployed actor near the flow policy's 0.2 (alpha * distill outweighs the normalised Q term);
    with the Q-filter the distillation pull is dropped where the critic rates the actor higher,
    so the actor goes most of the way to 0.8."""
    slow, fast = 0.2, 0.8
    plain = _agent(fast)
    b, obs = _demo_batch(plain, np.array([slow]))
    _train_actor(plain, b, 400)
    filtered = _agent(fast, distill_q_filter=1.0)
    m = _train_actor(filtered, b, 400)
    a_plain, a_filtered = float(plain.act(obs).mean()), float(filtered.act(obs).mean())
    assert abs(a_plain - slow) < 0.15, a_plain  # today's behaviour: stays with the teacher
    assert a_filtered > 0.6, a_filtered  # Q-filtered: past the teacher, towards what the critic prefers
    assert m["distill_kept"] < 0.5  # most samples had the pull dropped: the critic prefers the actor


def test_q_filter_keeps_the_pull_where_the_critic_prefers_the_teacher():
    """The filter only drops the pull where the actor is rated better: with a critic that
    prefers the demos' own action, the filtered actor is held to the teacher as today's is."""
    teacher = 0.2
    filtered = _agent(teacher, distill_q_filter=1.0)
    b, obs = _demo_batch(filtered, np.array([teacher]))
    _train_actor(filtered, b, 400)
    assert abs(float(filtered.act(obs).mean()) - teacher) < 0.15


def test_advantage_weighted_bc_imitates_the_demo_the_critic_prefers():
    """Two demo modes from one state (+0.5: commit, -0.5: back off); the critic prefers +0.5.
    Today's flow BC clones both (samples split about evenly); weighted, the flow policy's
    samples go to the preferred mode."""
    modes = np.array([0.5, -0.5])

    def share_of_preferred(agent):
        b, obs = _demo_batch(agent, modes)
        m = _train_actor(agent, b, 400)
        obs = {k: np.repeat(v, 256, axis=0) for k, v in obs.items()}
        torch.manual_seed(0)
        samples = agent.act_multistep(obs, deterministic=False).mean((1, 2))
        return float((samples > 0).mean()), m

    share_plain, _ = share_of_preferred(_agent(0.5))
    share_weighted, m = share_of_preferred(_agent(0.5, bc_q_weight=3.0))
    assert 0.25 < share_plain < 0.75, share_plain  # today's: both modes cloned
    assert share_weighted > 0.85, share_weighted
    assert m["bc_weight_mean"] < 0.9  # the dispreferred demo chunks were down-weighted


def test_options_default_off_and_validated():
    cfg = AgentConfig()
    assert cfg.distill_q_filter == 0.0 and cfg.bc_q_weight == 0.0
    with pytest.raises(ValueError, match="distill_q_filter"):
        AgentConfig(distill_q_filter=1.5)
    with pytest.raises(ValueError, match="bc_q_weight"):
        AgentConfig(bc_q_weight=-1)


def test_evaluate_reports_cycle_time_of_successful_episodes_only():
    """progress.csv's cycle_steps: the step at which each successful evaluation episode
    succeeded, averaged; failed episodes (run to the limit) are not in it, none -> NaN."""
    from types import SimpleNamespace

    from robot_rl.training.pretrain import evaluate

    class Env:  # episode i succeeds at step 5 + i for even i; odd episodes fail at the 30-step limit
        def reset(self, seed):
            self.i, self.t = seed, 0
            return {"x": np.zeros(1, np.float32)}, {}

        def step(self, action):
            self.t += 1
            success = self.i % 2 == 0 and self.t == 5 + self.i
            return {"x": np.zeros(1, np.float32)}, float(success), success, self.t >= 30, {"success": success}

    agent = SimpleNamespace(spec=SimpleNamespace(shapes={"x": (1,)}),
                            act=lambda obs, deterministic: np.zeros((3, 1), np.float32))
    sr, ret, cycle = evaluate(Env(), agent, episodes=4, seed=0)  # episodes 0..3: 0 and 2 succeed
    assert (sr, ret, cycle) == (0.5, 0.5, 6.0)  # steps 5 and 7
    assert np.isnan(evaluate(Env(), agent, episodes=1, seed=1)[2])
