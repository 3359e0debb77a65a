"""Learning core pieces: batched ensemble, target subset + EMA, masking, HL-Gauss, random
shift, and losses that go down on a fixed batch (tiny configs, CPU)."""
import copy

import numpy as np
import pytest
import torch

from robot_rl.learn import make_agent
from robot_rl.learn.encoders import random_shift
from robot_rl.learn.nets import EnsembleMLP, HLGauss
from robot_rl.learn.policies import FlowPolicy
from robot_rl.learn.synthetic import STATE_SPEC, random_batch

torch.set_num_threads(1)
H, A = 3, 2
TINY = {"chunk_len": H, "actor_hidden": [64, 64], "critic_hidden": [64, 64], "n_critics": 5,
        "target_subset": 2, "flow_steps": 4, "lr": 1e-3}


def tiny_agent(kind, **over):
    return make_agent(kind, STATE_SPEC, A, {**TINY, **over}, device="cpu")


def test_ensemble_is_one_batched_network_equal_to_separate_members():
    torch.manual_seed(0)
    ens = EnsembleMLP(4, 6, (8, 8), 1)
    x = torch.randn(5, 6)
    out = ens(x)
    assert out.shape == (4, 5, 1)
    for e in range(4):  # the reference: member e as a plain MLP
        h = x
        for i in range(3):
            h = h @ ens.weights[i][e] + ens.biases[i][e]
            if i < 2:
                h = torch.relu(torch.nn.functional.layer_norm(h, (8,)) * ens.ln_scales[i][e] + ens.ln_shifts[i][e])
        torch.testing.assert_close(out[e], h)
    members = torch.tensor([3, 1])
    torch.testing.assert_close(ens(x, members), out[members])
    assert not torch.allclose(out[0], out[1])  # members are initialised independently


def test_target_is_min_over_a_random_subset():
    agent = tiny_agent("flow")
    feats = torch.randn(64, agent.nets["encoder"].out_dim)
    actions = torch.rand(64, H, A) * 2 - 1
    all_q = agent._q(agent.nets["critic_target"], feats, actions)  # (E, B)
    subsets = set()
    for _ in range(30):
        t = agent._target_q(feats, actions)
        matches = [(i, j) for i in range(5) for j in range(i + 1, 5)
                   if torch.allclose(t, torch.minimum(all_q[i], all_q[j]))]
        assert matches, "target is not the min of any pair of target critics"
        subsets.update(matches)
    assert len(subsets) > 3  # the subset is re-drawn, not fixed
    assert not torch.allclose(t, all_q.min(0).values)  # and is not the min over all members


def test_target_critic_tracks_online_by_ema():
    agent = tiny_agent("sac", tau=0.1)
    before_target = copy.deepcopy(agent.nets["critic_target"].state_dict())
    agent.update(random_batch(STATE_SPEC, 32, H, A))
    online, target = agent.nets["critic"].state_dict(), agent.nets["critic_target"].state_dict()
    for k in online:
        torch.testing.assert_close(target[k], 0.9 * before_target[k] + 0.1 * online[k])
    assert not torch.equal(target[k], before_target[k])


def test_bc_loss_ignores_online_samples():
    torch.manual_seed(0)
    flow = FlowPolicy(5, H, A, (16,))
    feats, actions = torch.randn(6, 5), torch.rand(6, H, A)
    weight = torch.ones(6, H)
    weight[3] = 0  # an online (non-demo) sample
    garbage = actions.clone()
    garbage[3] = -99.0

    def loss(a, w):
        return flow.bc_loss(feats, a, w, torch.Generator().manual_seed(1))

    torch.testing.assert_close(loss(actions, weight), loss(garbage, weight))
    assert not torch.allclose(loss(actions, torch.ones(6, H)), loss(garbage, torch.ones(6, H)))


@pytest.mark.parametrize("kind", ["flow", "bc"])
def test_padded_actions_do_not_change_an_update(kind):
    batch = random_batch(STATE_SPEC, 32, H, A, seed=2)
    assert (batch["mask"] == 0).any()
    garbage = {**batch, "actions": np.where(batch["mask"][..., None] > 0, batch["actions"], 50.0).astype(np.float32)}
    m1 = tiny_agent(kind).update(batch)
    m2 = tiny_agent(kind).update(garbage)
    assert m1 == m2


def test_agent_masks_bc_by_is_demo():
    agent = tiny_agent("bc")
    batch = random_batch(STATE_SPEC, 16, H, A)
    batch["is_demo"][:] = 0.0
    before = copy.deepcopy(agent.nets["flow"].state_dict())
    m = agent.update(batch)
    assert m["bc_loss"] == 0.0
    for k, v in agent.nets["flow"].state_dict().items():
        assert torch.equal(v, before[k])


def test_hl_gauss_histogram_round_trips_the_value():
    hl = HLGauss(51, -5.0, 5.0, 0.75)
    y = torch.tensor([-4.0, -0.3, 0.0, 2.71])
    p = hl.target_probs(y)
    torch.testing.assert_close(p.sum(-1), torch.ones(4))
    torch.testing.assert_close(hl.value(p.log()), y, atol=1e-3, rtol=0)
    logits = p.clamp_min(1e-6).log()[None]
    assert hl.loss(logits, y) < hl.loss(logits.flip(-1), y)


def test_random_shift_is_a_clamped_translation_per_sample():
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (16, 12, 10, 3), dtype=torch.uint8)
    out = random_shift(img, 2, g)
    assert out.shape == img.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(img.permute(0, 3, 1, 2).float(), (2, 2, 2, 2), mode="replicate")
    shifts = set()
    for b in range(16):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(padded[b, :, dy:dy + 12, dx:dx + 10], out[b].permute(2, 0, 1).float())]
        assert found, f"sample {b} is not a crop of the padded image"
        shifts.add(found[0])
    assert len(shifts) > 1


def _fixed_batch_trend(agent, batch, key, steps):
    vals = [agent.update(batch)[key] for _ in range(steps)]
    k = max(steps // 5, 1)
    return float(np.mean(vals[:k])), float(np.mean(vals[-k:]))


@pytest.mark.parametrize("kind", ["flow", "sac"])
def test_critic_loss_decreases_on_a_fixed_batch(kind):
    agent = tiny_agent(kind)
    batch = random_batch(STATE_SPEC, 64, H, A, seed=3)
    first, last = _fixed_batch_trend(agent, batch, "critic_loss", 100)
    assert last < 0.5 * first


def test_critic_loss_decreases_with_hl_gauss():
    agent = tiny_agent("flow", hl_gauss=True, hl_bins=21, hl_v_min=-2.0, hl_v_max=3.0)
    batch = random_batch(STATE_SPEC, 64, H, A, seed=3)
    first, last = _fixed_batch_trend(agent, batch, "critic_loss", 100)
    assert last < 0.8 * first


def test_flow_bc_loss_decreases_on_a_fixed_batch():
    agent = tiny_agent("bc")
    batch = random_batch(STATE_SPEC, 64, H, A, seed=4, demo_fraction=1.0)
    first, last = _fixed_batch_trend(agent, batch, "bc_loss", 150)
    assert last < 0.7 * first


def test_one_step_distillation_loss_decreases():
    agent = tiny_agent("flow", alpha=100.0)
    batch = random_batch(STATE_SPEC, 64, H, A, seed=5, demo_fraction=1.0)
    first, last = _fixed_batch_trend(agent, batch, "distill_loss", 150)
    assert last < 0.5 * first


def bandit_batch(best, n=256, seed=0):
    """One-step bandit (discount 0), one state: reward -mean((a - best)^2), so Q is learnable."""
    b = random_batch(STATE_SPEC, n, H, A, seed=seed, demo_fraction=0.0)
    b["obs"] = {k: np.repeat(v[:1], n, axis=0) for k, v in b["obs"].items()}
    b["mask"][:] = 1.0
    b["actions"] = np.random.default_rng(seed).uniform(-1, 1, (n, H, A)).astype(np.float32)
    b["reward"] = -((b["actions"] - best) ** 2).mean((1, 2)).astype(np.float32)
    b["discount"][:] = 0.0
    return b


@pytest.mark.parametrize("kind", ["sac", "flow"])
def test_actor_climbs_the_critic_on_a_bandit(kind):
    best = np.random.default_rng(7).uniform(-0.7, 0.7, (H, A)).astype(np.float32)
    agent = tiny_agent(kind, alpha=0.01, init_temperature=0.01)
    obs = {k: v[0] for k, v in bandit_batch(best)["obs"].items()}
    err = lambda: float(((agent.act(obs) - best) ** 2).mean())  # noqa: E731
    before = err()
    batch = bandit_batch(best)
    metrics = [agent.update(batch) for _ in range(300)]
    assert err() < 0.3 * before
    assert metrics[-1]["critic_loss"] < metrics[0]["critic_loss"]
