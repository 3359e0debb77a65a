"""kind "diffusion": DDPM (epsilon, cosine schedule) policy over chunks, deterministic DDIM
sampler, FQL-style distillation into the one-step actor, export/resume like "flow" (CPU)."""
import numpy as np
import pytest
import torch

from robot_rl.learn import AgentConfig, load_agent, make_agent
from robot_rl.learn.export import read_metadata, run_onnx
from robot_rl.learn.policies import DiffusionPolicy, cosine_alpha_bars
from robot_rl.learn.synthetic import STATE_SPEC, camera_spec, random_batch, random_obs

torch.set_num_threads(1)
H, A = 3, 4
TINY = {"chunk_len": H, "actor_hidden": [32, 32], "critic_hidden": [32, 32], "n_critics": 4,
        "diffusion_steps": 20, "ddim_steps": 4}
MODES, WIDTH = 0.6, 0.05  # toy demos: a = +-0.6 with equal odds, std 0.05


def tiny_agent(spec=STATE_SPEC, action_dim=A, **over):
    return make_agent("diffusion", spec, action_dim, {**TINY, **over}, device="cpu")


def bimodal(n, gen):
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    return MODES * sign + WIDTH * torch.randn(n, generator=gen)


def w1(a, b):
    """1-D Wasserstein distance between two equal-size samples."""
    return float(np.abs(np.sort(np.ravel(a)) - np.sort(np.ravel(b))).mean())


def test_cosine_schedule_and_trailing_ddim_timesteps():
    ab = cosine_alpha_bars(100)
    assert ab.shape == (100,) and bool((ab[1:] < ab[:-1]).all())
    assert ab[0] > 0.99 and 0 < ab[-1] < 1e-3  # nearly clean at t=0, nearly pure noise (capped) at T-1
    pol = DiffusionPolicy(1, 1, 1, (8,), 100)
    assert pol.ddim_timesteps(10) == [99, 89, 79, 69, 59, 49, 39, 29, 19, 9]  # starts at pure noise
    assert pol.ddim_timesteps(100) == list(range(99, -1, -1))


def test_ddim_with_the_exact_noise_predictor_reproduces_a_bimodal_distribution():
    """The sampler alone, with the true epsilon of a two-Gaussian mixture plugged in: 10 DDIM
    steps must land on the modes (a wrong update rule or schedule index spreads the samples)."""
    pol = DiffusionPolicy(1, 1, 1, (8,), 100)
    mu = torch.tensor([-MODES, MODES])

    def eps_true(feats, x, t):
        ab = pol.alpha_bars[t.long()][:, None]
        var = ab * WIDTH**2 + 1 - ab
        m = ab.sqrt() * mu[None]
        resp = torch.softmax(-(x - m) ** 2 / (2 * var), -1)
        return -(1 - ab).sqrt() * (resp * (m - x) / var).sum(-1, keepdim=True)  # -sqrt(1-ab) * score

    pol.epsilon = eps_true
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 1, generator=gen)
    demos = bimodal(4000, gen).numpy()
    samples = pol.sample(torch.zeros(4000, 1), z, 10).numpy()
    assert w1(samples, demos) < 0.06
    assert np.mean(np.abs(samples) < 0.3) < 0.03  # nothing between the modes
    assert 0.45 < np.mean(samples > 0) < 0.55
    # and with the demos' width (0.05), not collapsed onto the centres (as a sampler querying
    # the network at the wrong noise level does)
    assert 0.04 < np.std(np.abs(samples) - MODES) < 0.08


def test_denoising_loss_falls_and_ddim_reproduces_bimodal_demos_better_than_noise():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    pol = DiffusionPolicy(1, 1, 1, (64, 64), 100)
    opt = torch.optim.Adam(pol.parameters(), lr=1e-3)
    feats, weight = torch.zeros(256, 1), torch.ones(256, 1)
    losses = []
    for _ in range(3000):
        loss = pol.bc_loss(feats, bimodal(256, gen).view(-1, 1, 1), weight, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # epsilon targets are pure noise at the start: the loss starts near 1 (Var eps)
    assert np.mean(losses[-200:]) < 0.5 * np.mean(losses[:20])
    z = torch.randn(2000, 1, generator=gen)
    with torch.no_grad():
        samples = pol.sample(torch.zeros(2000, 1), z, 10).numpy()
    demos = bimodal(2000, gen).numpy()
    assert w1(samples, demos) < 0.4 * w1(z.clamp(-1, 1).numpy(), demos)
    assert np.mean(np.abs(np.abs(samples) - MODES) < 0.15) > 0.8  # on a mode ...
    assert np.mean(np.abs(samples) < 0.3) < 0.15  # ... not between them (a regressor's mean)
    assert 0.3 < np.mean(samples > 0) < 0.7  # and both modes


def test_denoising_loss_imitates_only_demo_steps():
    torch.manual_seed(0)
    pol = DiffusionPolicy(5, H, A, (16,), 20)
    feats, actions = torch.randn(6, 5), torch.rand(6, H, A)
    weight = torch.ones(6, H)
    weight[3] = 0  # an online (non-demo) sample
    garbage = actions.clone()
    garbage[3] = -99.0

    def loss(a, w):
        return pol.bc_loss(feats, a, w, torch.Generator().manual_seed(1))

    torch.testing.assert_close(loss(actions, weight), loss(garbage, weight))
    assert not torch.allclose(loss(actions, torch.ones(6, H)), loss(garbage, torch.ones(6, H)))
    # the agent weights by is_demo and the padding mask: no demo rows, no BC; padding never counts
    batch = random_batch(STATE_SPEC, 16, H, A, seed=2)
    assert tiny_agent().update({**batch, "is_demo": np.zeros(16, np.float32)})["bc_loss"] == 0.0
    padded = np.where(batch["mask"][..., None] > 0, batch["actions"], 50.0).astype(np.float32)
    assert tiny_agent().update(batch) == tiny_agent().update({**batch, "actions": padded})


def test_deterministic_ddim_is_a_function_of_the_noise():
    pol = DiffusionPolicy(5, H, A, (32,), 50)
    feats, z = torch.randn(7, 5), torch.randn(7, H * A)
    a, b = pol.sample(feats, z, 5), pol.sample(feats, z.clone(), 5)
    assert torch.equal(a, b) and a.shape == (7, H, A) and a.abs().max() <= 1
    assert not torch.allclose(a, pol.sample(feats, torch.randn(7, H * A), 5))


def bimodal_batch(n, seed, action_dim=1):
    """All-demo batch whose chunks are +-0.6 (one sign per chunk), reward 1, discount 0: the
    critic learns Q = 1 whatever the action, so only BC and distillation shape the actor."""
    b = random_batch(STATE_SPEC, n, 2, action_dim, seed=seed, demo_fraction=1.0)
    rng = np.random.default_rng(seed)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)[:, None, None]
    b["actions"] = (MODES * sign + WIDTH * rng.normal(size=(n, 2, action_dim))).astype(np.float32)
    b["mask"][:] = 1.0
    b["reward"][:] = 1.0
    b["discount"][:] = 0.0
    return b


def test_one_step_actor_matches_the_ddim_sampler_after_distillation():
    agent = make_agent("diffusion", STATE_SPEC, 1, {"chunk_len": 2, "actor_hidden": [64, 64], "critic_hidden": [32, 32],
                                                    "n_critics": 2, "lr": 1e-3}, device="cpu")
    z = torch.randn(512, 2, generator=torch.Generator().manual_seed(1))
    feats = agent._features({k: torch.as_tensor(v) for k, v in bimodal_batch(512, 123)["obs"].items()})

    def gap():
        with torch.no_grad():
            one = agent.nets["onestep"](feats, z)
            ddim = agent.nets["diffusion"].sample(feats, z, agent.cfg.ddim_steps)
        return float(((one - ddim) ** 2).mean()), float(ddim.var())

    before, _ = gap()
    for i in range(400):
        agent.update(bimodal_batch(128, i))
    after, spread = gap()
    # noise-for-noise: mu(s, z) ~ DDIM(s, z). An actor fed other noise than its target learns
    # the target's mean instead, and its gap stays near the spread of the samples.
    assert spread > 0.2  # the sampler did learn the two modes (var of +-0.6 is 0.36)
    assert after < 0.1 * spread and after < 0.05 * before


def test_one_step_actor_climbs_the_critic_on_a_bandit():
    """The Q term reaches the one-step actor (alpha small, no demos: only the critic steers)."""
    a_dim = 2  # the sizes and rate of test_learn_core's bandit test for flow and sac
    best = np.random.default_rng(7).uniform(-0.7, 0.7, (H, a_dim)).astype(np.float32)
    agent = tiny_agent(action_dim=a_dim, alpha=0.01, actor_hidden=[64, 64], critic_hidden=[64, 64], n_critics=5,
                       lr=1e-3)
    b = random_batch(STATE_SPEC, 256, H, a_dim, seed=0, demo_fraction=0.0)
    b["obs"] = {k: np.repeat(v[:1], 256, axis=0) for k, v in b["obs"].items()}
    b["mask"][:] = 1.0
    b["actions"] = np.random.default_rng(0).uniform(-1, 1, (256, H, a_dim)).astype(np.float32)
    b["reward"] = -((b["actions"] - best) ** 2).mean((1, 2)).astype(np.float32)
    b["discount"][:] = 0.0
    obs = {k: v[0] for k, v in b["obs"].items()}
    err = lambda: float(((agent.act(obs) - best) ** 2).mean())  # noqa: E731
    before = err()
    for _ in range(300):
        agent.update(b)
    assert err() < 0.3 * before


def test_update_metrics_act_and_multistep_state():
    agent = tiny_agent()
    m = agent.update(random_batch(STATE_SPEC, 32, H, A), n_critic_steps=2)
    assert {"critic_loss", "q_mean", "bc_loss", "distill_loss", "q_loss", "actor_loss"} <= set(m)
    assert all(np.isfinite(v) for v in m.values()) and (agent.num_updates, agent.num_critic_steps) == (1, 2)
    obs = random_obs(STATE_SPEC, 5, np.random.default_rng(1))
    one, multi = agent.act(obs), agent.act_multistep(obs)
    assert one.shape == multi.shape == (5, H, A) and np.abs(multi).max() <= 1
    np.testing.assert_array_equal(multi, agent.act_multistep(obs))  # zero noise: deterministic
    assert not np.allclose(multi, agent.act_multistep(obs, steps=1))  # steps default to ddim_steps
    assert not np.allclose(one, agent.act(obs, deterministic=False))


def test_onnx_parity_state_and_metadata(tmp_path):
    agent = tiny_agent()
    for i in range(3):
        agent.update(random_batch(STATE_SPEC, 16, H, A, seed=i))
    agent.export_onnx(tmp_path / "actor.onnx", version=5)
    obs = random_obs(STATE_SPEC, 9, np.random.default_rng(5))
    got = run_onnx(tmp_path / "actor.onnx", obs)
    assert got.shape == (9, H, A) and np.abs(got - agent.act(obs)).max() < 1e-4
    meta = read_metadata(tmp_path / "actor.onnx")
    got_meta = (meta["kind"], meta["chunk_len"], meta["policy_version"], meta["noise"])
    assert got_meta == ("diffusion", str(H), "5", "zero")


@pytest.mark.parametrize("share", [True, False])
def test_update_and_onnx_parity_with_two_cameras(share, tmp_path):
    spec = camera_spec(("front", "wrist"), 32)
    agent = tiny_agent(spec, share_encoder=share)
    first = agent.update(random_batch(spec, 8, H, A, seed=0))
    last = agent.update(random_batch(spec, 8, H, A, seed=1))
    assert np.isfinite(list(first.values()) + list(last.values())).all()
    assert ("actor_encoder" in agent.nets) is (not share)
    agent.export_onnx(tmp_path / "a.onnx", version=1)
    obs = random_obs(spec, 3, np.random.default_rng(0))
    assert np.abs(run_onnx(tmp_path / "a.onnx", obs) - agent.act(obs)).max() < 1e-4


def test_checkpoint_resumes_bitwise_and_acts_identically(tmp_path):
    agent = tiny_agent()
    for i in range(3):
        agent.update(random_batch(STATE_SPEC, 16, H, A, seed=i))
    agent.save(tmp_path / "ck.pt")
    obs = random_obs(STATE_SPEC, 4, np.random.default_rng(2))
    resumed = tiny_agent().load(tmp_path / "ck.pt")
    np.testing.assert_array_equal(resumed.act(obs), agent.act(obs))
    np.testing.assert_array_equal(resumed.act_multistep(obs), agent.act_multistep(obs))
    nxt = random_batch(STATE_SPEC, 16, H, A, seed=99)
    m1 = agent.update(nxt)
    assert resumed.update(nxt) == m1  # weights, Adam moments and the RNG all restored
    again = load_agent(tmp_path / "ck.pt", device="cpu")
    assert again.kind == "diffusion" and again.cfg.ddim_steps == TINY["ddim_steps"]
    assert again.update(nxt) == m1
    with pytest.raises(ValueError, match="kind"):
        make_agent("flow", STATE_SPEC, A, {**TINY}, device="cpu").load(tmp_path / "ck.pt")


def test_config_keys_and_errors():
    cfg = AgentConfig.from_dict({"diffusion_steps": "50", "ddim_steps": 5.0})
    assert (cfg.diffusion_steps, cfg.ddim_steps) == (50, 5)
    with pytest.raises(ValueError, match="ddim_steps"):
        AgentConfig(diffusion_steps=10, ddim_steps=20)
    with pytest.raises(ValueError, match="ddim_steps"):
        AgentConfig(ddim_steps=0)
    with pytest.raises(ValueError, match="diffusion_steps"):
        AgentConfig(diffusion_steps=1, ddim_steps=1)


def test_pretrain_and_learner_settings_accept_the_kind(monkeypatch):
    from robot_rl.training import pretrain
    from robot_rl.training.settings import LearnerSettings

    seen = {}

    def fake_run(task, kind, *args, **kwargs):  # the command line is what is under test, not training
        seen["kind"] = kind
        return [{"success_rate": 0.0, "env_steps": 0}]

    monkeypatch.setattr(pretrain, "run", fake_run)
    pretrain.main(["--kind", "diffusion", "--env-steps", "1"])  # argparse exits on a kind not in its choices
    assert seen["kind"] == "diffusion"
    assert LearnerSettings(kind="diffusion").kind == "diffusion"
