"""Camera observations: conv encoders, augmentation in updates, ONNX parity with uint8 images,
encoder loading from a checkpoint."""
import numpy as np
import onnx
import pytest
import torch

from robot_rl.learn import make_agent
from robot_rl.learn.export import run_onnx
from robot_rl.learn.synthetic import camera_spec, random_batch, random_obs

torch.set_num_threads(1)
H, A = 2, 4
TINY = {"chunk_len": H, "actor_hidden": [32], "critic_hidden": [32], "n_critics": 3,
        "flow_steps": 3, "conv_channels": [8, 8], "image_feature_dim": 16}
SPEC_128 = camera_spec(("front", "wrist"), 128)
SPEC_32 = camera_spec(("front",), 32)


@pytest.mark.parametrize("kind", ["flow", "sac", "bc"])
def test_export_with_two_128px_cameras_matches_torch(kind, tmp_path):
    agent = make_agent(kind, SPEC_128, A, TINY, device="cpu")
    agent.update(random_batch(SPEC_128, 4, H, A))
    agent.export_onnx(tmp_path / "a.onnx", version=1)
    model = onnx.load(tmp_path / "a.onnx")
    onnx.checker.check_model(model)
    inputs = {i.name: i.type.tensor_type for i in model.graph.input}
    assert list(inputs) == ["proprio", "front", "wrist"]
    assert inputs["front"].elem_type == onnx.TensorProto.UINT8
    assert inputs["proprio"].elem_type == onnx.TensorProto.FLOAT
    assert inputs["front"].shape.dim[0].dim_param  # dynamic batch
    obs = random_obs(SPEC_128, 3, np.random.default_rng(2))
    got = run_onnx(tmp_path / "a.onnx", obs)
    assert got.shape == (3, H, A)
    assert np.abs(got - agent.act(obs)).max() < 1e-4


def test_update_augments_images_and_trains_the_encoder():
    agent = make_agent("flow", SPEC_32, A, TINY, device="cpu")
    before = {k: v.clone() for k, v in agent.nets["encoder"].state_dict().items()}
    batch = random_batch(SPEC_32, 8, H, A)
    m = agent.update(batch)
    assert np.isfinite(list(m.values())).all()
    changed = [k for k, v in agent.nets["encoder"].state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("cams.front.convs") for k in changed)
    # the same batch with augmentation off gives a different critic loss (augmentation is live)
    plain = make_agent("flow", SPEC_32, A, {**TINY, "augment": False}, device="cpu").update(batch)
    assert plain["critic_loss"] != m["critic_loss"]


def test_separate_actor_encoder(tmp_path):
    agent = make_agent("sac", SPEC_32, A, {**TINY, "share_encoder": False}, device="cpu")
    assert "actor_encoder" in agent.nets
    before = {k: v.clone() for k, v in agent.nets["actor_encoder"].state_dict().items()}
    agent.update(random_batch(SPEC_32, 8, H, A))
    assert any(not torch.equal(v, before[k]) for k, v in agent.nets["actor_encoder"].state_dict().items())
    agent.export_onnx(tmp_path / "a.onnx", version=2)
    obs = random_obs(SPEC_32, 2, np.random.default_rng(0))
    assert np.abs(run_onnx(tmp_path / "a.onnx", obs) - agent.act(obs)).max() < 1e-4


def test_encoder_loads_from_a_checkpoint(tmp_path):
    pre = make_agent("bc", SPEC_32, A, {**TINY, "seed": 1}, device="cpu")
    pre.update(random_batch(SPEC_32, 8, H, A, demo_fraction=1.0))
    pre.save(tmp_path / "twin.pt")
    agent = make_agent("flow", SPEC_32, A, {**TINY, "encoder_checkpoint": str(tmp_path / "twin.pt")}, device="cpu")
    for k, v in pre.nets["encoder"].state_dict().items():
        assert torch.equal(agent.nets["encoder"].state_dict()[k], v)
    fresh = make_agent("flow", SPEC_32, A, TINY, device="cpu")
    assert not torch.equal(fresh.nets["encoder"].cams["front"].head[0].weight, pre.nets["encoder"].cams["front"].head[0].weight)


def test_state_only_spec_builds_no_conv():
    from robot_rl.learn.synthetic import STATE_SPEC

    agent = make_agent("flow", STATE_SPEC, A, TINY, device="cpu")
    assert not any(isinstance(m, torch.nn.Conv2d) for m in agent.nets.modules())


@pytest.mark.parametrize("kind,hl", [("flow", False), ("flow", True), ("sac", False), ("bc", False)])
def test_bf16_autocast_update_runs_and_exports_in_fp32(kind, hl, tmp_path):
    """The mixed-precision path CUDA takes (bf16 autocast around the forward passes), run under
    CPU autocast: dtype mix-ups (bf16 features meeting fp32 actions, targets, histograms) fail
    here without a GPU. The exported actor stays fp32 and matches the fp32 agent."""
    agent = make_agent(kind, SPEC_32, A, {**TINY, "hl_gauss": hl, "hl_bins": 11}, device="cpu")
    agent._autocast = torch.autocast("cpu", dtype=torch.bfloat16)
    batch = random_batch(SPEC_32, 8, H, A)
    first = agent.update(batch, n_critic_steps=2)
    for _ in range(3):
        last = agent.update(batch, n_critic_steps=2)
    assert np.isfinite(list(first.values()) + list(last.values())).all()
    loss = "bc_loss" if kind == "bc" else "critic_loss"
    assert last[loss] != first[loss]  # the weights moved
    agent.export_onnx(tmp_path / "a.onnx", version=1)
    obs = random_obs(SPEC_32, 2, np.random.default_rng(0))
    assert np.abs(run_onnx(tmp_path / "a.onnx", obs) - agent.act(obs)).max() < 1e-4


def test_own_flow_actor_encoder_is_shaped_by_behaviour_cloning_only():
    """With share_encoder false the flow actor's encoder learns from the BC loss alone: the
    distillation weight alpha (and the critic term) must not reach it."""
    batch = random_batch(SPEC_32, 8, H, A)
    encoders = []
    for alpha in (0.0, 100.0):
        agent = make_agent("flow", SPEC_32, A, {**TINY, "share_encoder": False, "alpha": alpha}, device="cpu")
        before = {k: v.clone() for k, v in agent.nets["actor_encoder"].state_dict().items()}
        agent.update(batch)
        after = agent.nets["actor_encoder"].state_dict()
        assert any(not torch.equal(after[k], before[k]) for k in before)  # BC did train it
        encoders.append(after)
    assert all(torch.equal(encoders[0][k], encoders[1][k]) for k in encoders[0])
