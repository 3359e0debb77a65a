"""Learning core (ROS-free): critic ensemble, flow / SAC / BC policies over action chunks,
updates, checkpoints and ONNX export of the deployed actor.

    from robot_rl.learn import AgentConfig, make_agent
    agent = make_agent("flow", obs_spec, action_dim=4, cfg={"chunk_len": 4})
    metrics = agent.update(batch)            # replay batch, see robot_rl.learn.batch
    chunk = agent.act(obs)                   # (H, A) in [-1, 1]
    sha = agent.export_onnx("actor.onnx", version=3)
"""
from robot_rl.learn.agent import KINDS, Agent, load_agent, make_agent
from robot_rl.learn.config import AgentConfig

__all__ = ["Agent", "AgentConfig", "KINDS", "load_agent", "make_agent"]
