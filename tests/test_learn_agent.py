"""Agent API: update/act/save/load/export for every kind, on tiny state-only configs (CPU)."""
import numpy as np
import pytest
import torch

from robot_rl.learn import AgentConfig, load_agent, make_agent
from robot_rl.learn.export import read_metadata, run_onnx
from robot_rl.learn.synthetic import STATE_SPEC, random_batch, random_obs

torch.set_num_threads(1)
H, A = 3, 4
TINY = {"chunk_len": H, "actor_hidden": [32, 32], "critic_hidden": [32, 32], "n_critics": 4,
        "flow_steps": 4}


def tiny_agent(kind, **over):
    return make_agent(kind, STATE_SPEC, A, {**TINY, **over}, device="cpu")


@pytest.mark.parametrize("kind", ["flow", "sac", "bc"])
def test_update_returns_finite_metrics_and_counts(kind):
    agent = tiny_agent(kind)
    m = agent.update(random_batch(STATE_SPEC, 32, H, A), n_critic_steps=2)
    assert m and all(isinstance(v, float) and np.isfinite(v) for v in m.values())
    assert (agent.num_updates, agent.num_critic_steps) == (1, 2)
    if kind != "bc":
        assert {"critic_loss", "q_mean", "actor_loss"} <= set(m)


@pytest.mark.parametrize("kind", ["flow", "sac", "bc"])
def test_act_shapes_and_range(kind):
    agent = tiny_agent(kind)
    obs = random_obs(STATE_SPEC, 5, np.random.default_rng(1))
    batched = agent.act(obs)
    single = agent.act({k: v[0] for k, v in obs.items()})
    assert batched.shape == (5, H, A) and single.shape == (H, A)
    assert batched.dtype == np.float32 and np.abs(batched).max() <= 1.0
    np.testing.assert_allclose(single, batched[0], atol=1e-6)
    stochastic = agent.act(obs, deterministic=False)
    assert stochastic.shape == (5, H, A) and not np.allclose(stochastic, batched)


@pytest.mark.parametrize("kind", ["flow", "sac", "bc"])
def test_resume_gives_the_same_next_update(kind, tmp_path):
    agent = tiny_agent(kind)
    for i in range(3):
        agent.update(random_batch(STATE_SPEC, 16, H, A, seed=i))
    agent.save(tmp_path / "ck.pt")
    nxt = random_batch(STATE_SPEC, 16, H, A, seed=99)
    m1 = agent.update(nxt)
    resumed = tiny_agent(kind).load(tmp_path / "ck.pt")
    assert resumed.num_updates == 3
    m2 = resumed.update(nxt)
    assert m1 == m2  # bitwise: weights, Adam moments and the RNG all restored
    for (n, p1), p2 in zip(agent.nets.state_dict().items(), resumed.nets.state_dict().values()):
        assert torch.equal(p1, p2), n
    again = load_agent(tmp_path / "ck.pt", device="cpu")
    assert again.kind == kind and again.update(nxt) == m1


def test_load_rejects_a_mismatched_checkpoint(tmp_path):
    tiny_agent("flow").save(tmp_path / "ck.pt")
    with pytest.raises(ValueError, match="kind"):
        tiny_agent("sac").load(tmp_path / "ck.pt")


@pytest.mark.parametrize("kind", ["flow", "sac", "bc"])
def test_export_state_only_matches_torch(kind, tmp_path):
    agent = tiny_agent(kind)
    agent.update(random_batch(STATE_SPEC, 16, H, A))
    sha = agent.export_onnx(tmp_path / "actor.onnx", version=7)
    assert len(sha) == 64
    obs = random_obs(STATE_SPEC, 9, np.random.default_rng(5))
    got = run_onnx(tmp_path / "actor.onnx", obs)
    assert got.shape == (9, H, A)
    assert np.abs(got - agent.act(obs)).max() < 1e-4
    meta = read_metadata(tmp_path / "actor.onnx")
    assert meta["obs_spec"] == STATE_SPEC.to_dict()
    assert (meta["action_dim"], meta["chunk_len"], meta["policy_version"], meta["kind"]) == (str(A), str(H), "7", kind)


def test_config_from_yaml_dict_and_errors():
    cfg = AgentConfig.from_dict({"chunk_len": 5, "critic_hidden": [64, 64], "hl_gauss": True})
    assert cfg.chunk_len == 5 and cfg.critic_hidden == (64, 64) and cfg.hl_gauss
    with pytest.raises(ValueError, match="unknown AgentConfig keys"):
        AgentConfig.from_dict({"gamma": 0.99})
    with pytest.raises(ValueError, match="target_subset"):
        AgentConfig(n_critics=2, target_subset=3)
    with pytest.raises(ValueError, match="kind"):
        make_agent("ppo", STATE_SPEC, A)


def test_bad_batch_and_obs_are_named():
    agent = tiny_agent("flow")
    batch = random_batch(STATE_SPEC, 8, H, A)
    with pytest.raises(ValueError, match="is_demo"):
        agent.update({k: v for k, v in batch.items() if k != "is_demo"})
    with pytest.raises(ValueError, match=r"actions"):
        agent.update({**batch, "actions": batch["actions"][:, :2]})
    with pytest.raises(ValueError, match="proprio"):
        agent.act({"object": np.zeros(7, np.float32)})
    with pytest.raises(ValueError, match="n_critic_steps"):
        agent.update(batch, n_critic_steps=3)


def test_config_coerces_loose_yaml_types():
    cfg = AgentConfig.from_dict({"lr": "3e-4", "alpha": 10, "n_critics": 4.0, "hl_gauss": "true",
                                 "target_entropy": None, "encoder_checkpoint": None})
    assert cfg.lr == 3e-4 and isinstance(cfg.alpha, float) and cfg.n_critics == 4 and cfg.hl_gauss is True
    with pytest.raises(ValueError, match="n_critics"):
        AgentConfig.from_dict({"n_critics": 2.5})
    with pytest.raises(ValueError, match="lr"):
        AgentConfig.from_dict({"lr": "fast"})


def test_utd_minibatches_keep_the_demo_mix():
    """MixedReplay puts demo rows first: every minibatch (the actor's last one too) must still
    hold demo samples, or BC silently never trains."""
    agent = tiny_agent("flow")
    batch = random_batch(STATE_SPEC, 32, H, A)
    batch["is_demo"] = np.r_[np.ones(16), np.zeros(16)].astype(np.float32)
    m = agent.update(batch, n_critic_steps=4)
    assert m["bc_loss"] > 0


def test_state_vectors_are_standardised_from_fitted_stats():
    agent = tiny_agent("flow")
    rng = np.random.default_rng(0)
    obs = {"proprio": (0.4 + 0.03 * rng.normal(size=(500, 8))).astype(np.float32),
           "object": (-1.0 + 2.0 * rng.normal(size=(500, 7))).astype(np.float32)}
    agent.fit_obs_normalizer(obs)
    feats = agent.nets["encoder"]({k: torch.as_tensor(v) for k, v in obs.items()})
    torch.testing.assert_close(feats.mean(0), torch.zeros(15), atol=1e-4, rtol=0)
    std = feats.std(0, unbiased=False)
    assert torch.allclose(std[8:], torch.ones(7), atol=1e-3)  # std above the floor: unit
    assert torch.all(std[:8] < 0.7)  # std 0.03 m is below the 0.05 floor: scaled by 1/0.05 only
    fresh = tiny_agent("flow")
    assert not bool(fresh.nets["encoder"].normalizer_fitted)
    fresh.update(random_batch(STATE_SPEC, 16, H, A))
    assert bool(fresh.nets["encoder"].normalizer_fitted)  # the first batch fits it
