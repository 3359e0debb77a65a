"""AgentConfig: every learner knob in one dataclass, buildable from a YAML dict.

The discount is deliberately absent: the replay sampler applies gamma when it builds
batch["reward"] (discounted chunk sum) and batch["discount"] (gamma^h, 0 at termination).
So are the batch size and the update-to-data ratio: the training loop (robot_rl/training/loop.py)
samples the batches and decides how many critic steps an update takes; the agent takes any batch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from robot_rl.configs import from_mapping


def _coerce(name: str, annotation: str, value):
    """YAML/ROS parameters arrive loosely typed ("3e-4" is a string to PyYAML, 10 an int where a
    float is meant): convert to the field's type or fail naming the field."""
    if value is None and "None" in annotation:
        return None
    base = annotation.split("|")[0].strip()
    try:
        if base == "tuple":
            return tuple(int(v) for v in value)
        if base == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, (bool, int)):
                raise TypeError
            return bool(value)
        if base == "int":
            if float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if base == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"AgentConfig.{name} must be {annotation}, got {value!r}") from None


@dataclass
class AgentConfig:
    # action chunking: the policy emits and the critic scores H actions at once
    chunk_len: int = 4
    # networks
    actor_hidden: tuple = (256, 256, 256)
    critic_hidden: tuple = (256, 256)
    n_critics: int = 10  # ensemble size, run as one batched network
    target_subset: int = 2  # target = min over this many randomly chosen target critics
    # optimisation
    lr: float = 3e-4
    tau: float = 0.005  # target EMA rate
    grad_clip: float = 0.0  # 0 = off
    # flow policy (kind "flow" and "bc")
    flow_steps: int = 10  # Euler steps of the multi-step sampler
    alpha: float = 10.0  # Flow Q-learning distillation weight (flow and diffusion): the one key knob
    # Beating a slow teacher (kind "flow", issue #21, docs/learner.md "From sloppy demos"); 0 = off.
    # distill_q_filter: how much of the distillation pull to drop on samples where the critic
    # rates the one-step actor's chunk above the flow policy's (1 = drop it: a Q-filter).
    distill_q_filter: float = 0.0
    # bc_q_weight: beta of the advantage weight min(1, exp(beta * A / mean|Q|)) on demo chunks in
    # the flow BC loss, A = Q(s, demo chunk) - Q(s, deployed actor's chunk).
    bc_q_weight: float = 0.0
    # diffusion policy (kind "diffusion"): DDPM training timesteps, DDIM sampling steps. 100
    # timesteps with a cosine schedule and 10 deterministic DDIM steps are Diffusion Policy's
    # own CPU-friendly setting; ddim_steps also sets the cost of each distillation target.
    diffusion_steps: int = 100
    ddim_steps: int = 10
    # SAC baseline (kind "sac")
    init_temperature: float = 0.01  # SERL's default; sparse rewards drown in a larger bonus
    target_entropy: float | None = None  # None -> -H*A/2
    backup_entropy: bool = False  # soft (entropy) term in the critic target, off as in SERL
    # critic value head: plain regression, or HL-Gauss histogram classification
    hl_gauss: bool = False
    hl_bins: int = 101
    hl_v_min: float = -20.0
    hl_v_max: float = 20.0
    hl_sigma_ratio: float = 0.75  # Gaussian sigma / bin width
    # image encoder (one small conv net per camera; unused for state-only specs)
    conv_channels: tuple = (16, 32, 32)
    conv_first_stride: int = 4  # the first conv patchifies; later convs stride 2
    image_feature_dim: int = 64
    shift_pad: int = 4  # random-shift augmentation: pad 4 (replicate) + random crop
    augment: bool = True
    share_encoder: bool = True  # actor reuses the critic's encoder features (detached)
    encoder_checkpoint: str | None = None  # load encoder weights from an agent checkpoint
    # CUDA speed-ups (ignored on CPU)
    bf16: bool = True
    compile: bool = False
    seed: int = 0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        if self.chunk_len < 1:
            raise ValueError(f"chunk_len must be >= 1, got {self.chunk_len}")
        if not 1 <= self.target_subset <= self.n_critics:
            raise ValueError(
                f"target_subset must be in [1, n_critics={self.n_critics}], got {self.target_subset}"
            )
        if not 0.0 <= self.distill_q_filter <= 1.0:
            raise ValueError(f"distill_q_filter must be in [0, 1], got {self.distill_q_filter}")
        if self.bc_q_weight < 0:
            raise ValueError(f"bc_q_weight must be >= 0, got {self.bc_q_weight}")
        if self.flow_steps < 1:
            raise ValueError(f"flow_steps must be >= 1, got {self.flow_steps}")
        if self.diffusion_steps < 2:
            raise ValueError(f"diffusion_steps must be >= 2, got {self.diffusion_steps}")
        if not 1 <= self.ddim_steps <= self.diffusion_steps:
            raise ValueError(
                f"ddim_steps must be in [1, diffusion_steps={self.diffusion_steps}], got {self.ddim_steps}"
            )
        if not self.conv_channels:
            raise ValueError("conv_channels needs at least one layer")

    @classmethod
    def from_dict(cls, d: dict | None) -> "AgentConfig":
        """Build from a plain (YAML) dict; unknown keys are an error naming the valid ones."""
        return from_mapping(cls, d, "AgentConfig")

    @classmethod
    def coerce(cls, cfg) -> "AgentConfig":
        if cfg is None:
            return cls()
        if isinstance(cfg, cls):
            return cfg
        if isinstance(cfg, dict):
            return cls.from_dict(cfg)
        raise TypeError(f"cfg must be AgentConfig, dict or None, got {type(cfg).__name__}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
