"""The one training loop: replay + agent + the update-to-data schedule, ROS-free and synchronous.

Both drivers feed it the same way and get the same schedule:
- the learner node's `Trainer` (robot_rl/training/trainer.py) runs it in a thread, fed by the
  actor's transitions;
- `robot-rl pretrain` (robot_rl/training/pretrain.py) runs it inline after each executed chunk.

Schedule (RLPD): from the `min_steps`-th online step on, `utd` critic steps are owed per step;
one `update()` samples `batch_size * k` rows (k = round(utd), at least 1), takes k critic steps
and one actor step (Agent.update). A fractional utd (0.5) spreads the owed steps out. Every
`publish_every` updates a fresh ONNX actor goes to `publish(onnx_bytes, sha256, version)`.
Chunks are a property of the rollout (they restart at each episode start, in the actor and in
pretrain alike); here they only set the replay's n-step horizon.
"""
from __future__ import annotations

import math

import numpy as np


def replay_device(agent_device):
    """Where the replay keeps its observations for an agent on `agent_device` (a torch.device):
    on a CUDA learner the GPU itself, so each batch is gathered there by index_select with no
    host copy and no per-update transfer of images (robot_rl.data.replay._TorchObs); anywhere
    else None, host memory as numpy (a CPU learner gains nothing from torch storage)."""
    return str(agent_device) if getattr(agent_device, "type", None) == "cuda" else None


class TrainingDiverged(FloatingPointError):
    """An update produced a non-finite loss: the weights are garbage from here on, so the loop
    stops instead of training (and publishing) on."""


class TrainingLoop:
    def __init__(self, agent, replay, *, utd: float, batch_size: int, min_steps: int = 1,
                 publish_every: int = 0, publish=None, version: int = 0, seed: int = 0):
        if utd <= 0 or batch_size < 1 or min_steps < 1:
            raise ValueError(f"training loop needs utd > 0, batch_size >= 1, min_steps >= 1; got utd={utd}, "
                             f"batch_size={batch_size}, min_steps={min_steps}")
        self.agent = agent
        self.replay = replay  # robot_rl.data.replay.MixedReplay
        self.utd = float(utd)
        self.batch_size = int(batch_size)
        self.min_steps = int(min_steps)
        self.publish_every = int(publish_every)  # 0: never (pretrain exports once at the end)
        self.publish = publish  # (onnx bytes, sha256, version) -> None
        self.version = int(version)
        self.rng = np.random.default_rng(seed)
        self.steps = 0  # online steps added
        self.intervened = 0  # ... of which a human chose the action
        self.episodes = 0
        self.updates = 0  # update() calls: one actor step each
        self.critic_steps = 0
        self.metrics: dict = {}

    # ------------------------------------------------------------------ data in
    def add_step(self, step: dict) -> None:
        """One executed step (obs keys, action, reward, terminated, intervened...): online side,
        and the demo side too when a human chose it and MixedReplay's `interventions` says so."""
        self.replay.add_step(step)
        self.steps += 1
        self.intervened += bool(step.get("intervened", False))

    def end_episode(self, final_obs: dict) -> None:
        self.replay.end_episode(final_obs)
        self.episodes += 1

    # ------------------------------------------------------------------ updates
    def owed(self) -> float:
        """Critic steps due: utd for every step from the min_steps-th on (RLPD's learning starts)."""
        return self.utd * max(0, self.steps - self.min_steps + 1)

    @property
    def due(self) -> bool:
        return self.critic_steps < self.owed() and self.replay.online.has_samples

    def update(self) -> dict:
        """One update: a sample of k minibatches, k critic steps, one actor step; publishes on
        its cadence. Raises TrainingDiverged on a non-finite loss."""
        k = max(1, int(round(self.utd)))
        metrics = self.agent.update(self.replay.sample(self.batch_size * k, self.rng), n_critic_steps=k)
        bad = sorted(name for name, v in metrics.items() if not math.isfinite(v))
        if bad:
            raise TrainingDiverged(f"training diverged at update {self.updates + 1}: non-finite {', '.join(bad)}")
        self.metrics = metrics
        self.critic_steps += k
        self.updates += 1
        if self.publish is not None and self.publish_every > 0 and self.updates % self.publish_every == 0:
            self.version += 1
            self.publish(*self.export(), self.version)
        return metrics

    def train(self) -> int:
        """Every update owed now; returns how many ran."""
        n = 0
        while self.due:
            self.update()
            n += 1
        return n

    def export(self, version: int | None = None) -> tuple[bytes, str]:
        """The deployed actor as (ONNX bytes, sha256), in memory."""
        from robot_rl.learn.export import export_actor_bytes

        return export_actor_bytes(self.agent, self.version if version is None else version)

    @property
    def trained_steps(self) -> int:
        """Steps the loop has caught up with (never decreasing): all it has while below
        min_steps, else those its critic steps cover at the UTD ratio."""
        if self.steps < self.min_steps:
            return self.steps
        return min(self.steps, self.min_steps - 1 + int(self.critic_steps / self.utd))
