"""The learner node's settings: one dataclass, whose defaults are config/sim.yaml's values
(the learner section, and the /** keys it reads); tests/test_settings_learner.py holds the two
together. The node reads it with robot_rl.nodes.ros.settings(node, LearnerSettings).

Batch size and update-to-data ratio live here (the training loop's), not in AgentConfig: a
warm start replaces the agent section with the checkpoint's network config, and a pretrain
checkpoint's loop schedule must not come along with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from robot_rl.data.replay import INTERVENTION_MODES
from robot_rl.learn.agent import KINDS
from robot_rl.learn.config import AgentConfig
from robot_rl.spec import ActionSpec
from robot_rl.training.gate import GateSettings


@dataclass
class LearnerAgentConfig(AgentConfig):
    """AgentConfig sized for a CPU learner: the learner's own defaults, so a parameter file that
    sets only some agent keys gets these for the others (not AgentConfig's GPU-sized ones)."""

    actor_hidden: tuple = (128, 128)
    critic_hidden: tuple = (128, 128)
    n_critics: int = 5
    share_encoder: bool = False  # pixel policies: the actor's own image encoder, trained by BC


@dataclass
class LearnerSettings:
    kind: str = "flow"  # flow | diffusion | sac | bc (robot_rl.learn.KINDS)
    seed: int = 0
    gamma: float = 0.99
    utd: float = 2.0  # critic gradient steps per received transition (RLPD: high)
    batch_size: int = 64  # replay rows per critic step
    min_steps: int = 50  # online steps before the first update
    publish_every: int = 50  # updates between published policies
    # Data-parallel updates (robot_rl/training/ddp.py): each update's batch is split over this
    # many processes on this machine (gloo); 1 = the learner's own process alone.
    nproc: int = 1
    demos: str = ""  # zarr store(s), comma-separated, for replay (demo side: demos and interventions)
    init_checkpoint: str = ""  # continue this agent checkpoint; its config replaces `agent`
    # Restart: the checkpoint (run_dir/learner_checkpoint.pt) is written every checkpoint_every
    # updates (0 = only at close); a learner that starts and finds it (no init_checkpoint given)
    # continues from it, with the steps of the actor's store (backfill_store; "" = the actor's
    # run_dir/store.zarr) in replay.
    checkpoint_every: int = 100
    backfill_store: str = ""
    capacity: int = 200_000  # online replay rows
    demo_capacity: int = 0  # demo-side rows; 0 = the loaded demos + capacity
    # Self-imitation (robot_rl.data.replay.MixedReplay, docs/learner.md "From sloppy demos"): the
    # policy's own successful, unaided episodes no longer than this quantile of the teachers' join
    # the demo side; 0 = off.
    self_imitation: float = 0.0
    # What a human's steps are to the learner (robot_rl.data.replay.INTERVENTION_MODES): online
    # (experience only, never imitated) | successful (demos if the episode succeeded) | demo (demos,
    # HIL-SERL). docs/learner.md "Interventions: demos or advice" has the measurement behind the default.
    interventions: str = "online"
    cells: str = ""  # "cell_a,cell_b": one learner for several cells (their namespaces); "" = its own
    agent: LearnerAgentConfig = field(default_factory=LearnerAgentConfig)
    # Gated deployment (robot_rl/training/gate.py, docs/deployment.md): candidates are scored in
    # the twin and by the critic before they reach the actor. Off in sim, on on the robot.
    gate: GateSettings = field(default_factory=GateSettings)
    # from the /** section: what every node shares
    task: str = "pick_cube"  # the twin task the gate scores candidates on
    run_dir: str = "runs/sim"
    policy_cameras: str = ""  # "front,wrist"; "" = state-based
    action: ActionSpec = field(default_factory=ActionSpec)

    def __post_init__(self):
        if self.interventions not in INTERVENTION_MODES:
            raise ValueError(f"learner interventions must be one of {INTERVENTION_MODES}, got {self.interventions!r}")
        if self.kind not in KINDS:
            raise ValueError(f"learner kind must be one of {KINDS}, got {self.kind!r}")
        if self.nproc < 1 or self.batch_size % self.nproc:
            raise ValueError(f"learner nproc must be >= 1 and divide batch_size {self.batch_size} (each process "
                             f"takes an equal share), got {self.nproc}")
        if self.checkpoint_every < 0:
            raise ValueError(f"learner checkpoint_every must be >= 0 (0 = only at close), got {self.checkpoint_every}")
        if self.utd <= 0 or self.batch_size < 1 or self.min_steps < 1 or self.publish_every < 1:
            raise ValueError(f"learner needs utd > 0, batch_size, min_steps and publish_every >= 1; got "
                             f"utd={self.utd}, batch_size={self.batch_size}, min_steps={self.min_steps}, "
                             f"publish_every={self.publish_every}")
