"""One source per learner setting: LearnerSettings' defaults are config/sim.yaml's values (the
learner section merged over /** for the keys the learner reads), every key of the learner
section is a setting, and the node reads them with the one loader (from_mapping)."""
import dataclasses

import pytest
import yaml

from robot_rl.configs import from_mapping
from robot_rl.learn.config import AgentConfig
from robot_rl.paths import share_file
from robot_rl.training.settings import LearnerAgentConfig, LearnerSettings

ROS_ONLY = {"use_sim_time"}  # rclpy's own parameter


def _sections():
    cfg = yaml.safe_load(open(share_file("config", "sim.yaml")))
    return cfg["/**"]["ros__parameters"], cfg["learner"]["ros__parameters"]


def test_every_key_of_the_learner_section_is_a_setting():
    _, own = _sections()
    names = {f.name for f in dataclasses.fields(LearnerSettings)}
    assert not sorted(set(own) - names - ROS_ONLY)
    assert not sorted(set(own["agent"]) - {f.name for f in dataclasses.fields(AgentConfig)})


def test_learner_defaults_equal_the_shipped_yaml():
    shared, own = _sections()
    merged = {**shared, **own}
    names = {f.name for f in dataclasses.fields(LearnerSettings)}
    # the learner's own keys are all in its section: the YAML shows each of them
    assert names - {"run_dir", "policy_cameras", "action", "task"} <= set(own)
    from_yaml = from_mapping(LearnerSettings, {k: merged[k] for k in names & set(merged)}, "learner")
    defaults = LearnerSettings()
    for f in dataclasses.fields(LearnerSettings):
        assert getattr(from_yaml, f.name) == getattr(defaults, f.name), f.name
    # the agent the learner builds with no parameters at all is the YAML's CPU-sized agent
    assert isinstance(defaults.agent, LearnerAgentConfig) and defaults.agent.n_critics == own["agent"]["n_critics"]


def test_a_partial_agent_section_keeps_the_learners_other_agent_defaults():
    s = from_mapping(LearnerSettings, {"agent": {"actor_hidden": [32, 32]}}, "learner")
    assert s.agent.actor_hidden == (32, 32) and s.agent.critic_hidden == LearnerSettings().agent.critic_hidden


def test_the_loop_keys_are_learner_settings_not_agent_config():
    """batch_size and utd have one source: the training loop's (the agent takes any batch)."""
    with pytest.raises(ValueError, match=r"unknown AgentConfig keys \['batch_size', 'utd'\]"):
        AgentConfig.from_dict({"batch_size": 64, "utd": 2})
    with pytest.raises(ValueError, match="learner needs utd > 0"):
        LearnerSettings(utd=0)
