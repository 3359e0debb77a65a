"""Routes executed steps into the two sides of RLPD replay (ROS-free).

Online side: every step, episode by episode. Demo side: demos, and the stretches a human drove
(HIL-SERL: interventions are extra demos). An intervention stretch is closed as its own short
episode when the human lets go; its last step bootstraps from the observation where the
policy took over again (it did not terminate there), so chunks never run past a hand-over.
"""
from __future__ import annotations


class Ingest:
    def __init__(self, demo_replay, online_replay):
        self.demo = demo_replay
        self.online = online_replay
        self.steps = 0
        self.episodes = 0
        self.intervention_steps = 0
        self._in_intervention = False

    def add_step(self, step: dict) -> None:
        if self._in_intervention and not step["intervened"]:
            self.demo.end_episode({k: step[k] for k in self._obs_keys(step)})
            self._in_intervention = False
        self.online.add_step(step)
        if step["intervened"]:
            self.demo.add_step(step)
            self._in_intervention = True
            self.intervention_steps += 1
        self.steps += 1

    def end_episode(self, final_obs: dict) -> None:
        self.online.end_episode(final_obs)
        if self._in_intervention:
            self.demo.end_episode(final_obs)
            self._in_intervention = False
        self.episodes += 1

    def _obs_keys(self, step: dict):
        return [k for k in self.online.obs_keys]
