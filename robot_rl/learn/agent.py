"""The learner: critic ensemble + policy, one `update(batch)` step, `act`, checkpoints, ONNX.

Kinds
  "flow": Flow Q-learning (Park et al. 2025) over action chunks. A flow-matching policy is
          cloned from demo-side samples; a one-step actor mu(s, z) is distilled from it and
          pushed up the critic: alpha * ||mu(s,z) - flow(s,z)||^2 - Q(s, mu(s,z)) / mean|Q|.
          The deployed actor is mu(s, z=0): one network evaluation per chunk.
  "sac":  RLPD/SERL baseline: tanh-Gaussian actor over the flattened chunk, learned temperature.
  "bc":   the flow policy alone (no critic); it deploys the multi-step Euler sampler.
  "diffusion": the flow recipe with a DDPM/DDIM diffusion policy (Diffusion Policy's epsilon
          objective, cosine schedule) in place of the flow policy: the one-step actor is
          distilled from the deterministic DDIM sample from the same noise and pushed up the
          critic (_diffusion_actor_step); deployed as mu(s, z=0) like "flow".

Critic (flow and sac, after RLPD): an ensemble of LayerNorm MLPs evaluated as one batched
network scores the whole chunk, Q(s, a_{t:t+H}); the target is the min over a random subset of
the EMA target ensemble, y = reward + discount * Q_target(s', a'), with reward and discount
already chunk-discounted by the replay. The image encoder belongs to the critic and is trained
by the critic loss only; the actor reads its features detached (DrQ/SERL), unless
share_encoder is False, in which case the actor has its own encoder (for "flow" trained by the
BC loss alone, which took pixel pick_cube from 0.2 to 0.9 success at 1500 steps on one seed).
"""
from __future__ import annotations

import contextlib
import copy
import math
import os

import numpy as np
import torch
from torch import nn

from robot_rl.learn.batch import batch_to_tensors, obs_to_tensors, split_batch
from robot_rl.learn.config import AgentConfig
from robot_rl.learn.encoders import ObsEncoder
from robot_rl.learn.nets import EnsembleMLP, HLGauss
from robot_rl.learn.policies import DiffusionPolicy, FlowPolicy, GaussianActor, OneStepActor
from robot_rl.spec import ObsSpec

KINDS = ("flow", "sac", "bc", "diffusion")
CHECKPOINT_FORMAT = 1


def resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _coerce_spec(obs_spec) -> ObsSpec:
    if isinstance(obs_spec, ObsSpec):
        return obs_spec
    if isinstance(obs_spec, dict):
        return ObsSpec.from_dict(obs_spec)
    raise TypeError(f"obs_spec must be robot_rl.spec.ObsSpec or its to_dict() form, got {type(obs_spec).__name__}")


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """Keep gradients out of a module's parameters (the critic during the actor step)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


class Agent:
    def __init__(self, kind: str, obs_spec, action_dim: int, cfg=None, device="auto"):
        if kind not in KINDS:
            raise ValueError(f"agent kind must be one of {KINDS}, got {kind!r}")
        if int(action_dim) < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self.kind = kind
        self.spec = _coerce_spec(obs_spec)
        self.action_dim = int(action_dim)
        self.cfg = AgentConfig.coerce(cfg)
        self.device = resolve_device(device)
        self.num_updates = 0  # update() calls
        self.num_critic_steps = 0  # gradient steps on the critic (or on BC for kind "bc")
        c, H, A = self.cfg, self.cfg.chunk_len, self.action_dim
        self.flat_dim = H * A

        # Deterministic init per seed without touching the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            nets = nn.ModuleDict()
            nets["encoder"] = self._make_encoder()
            feat = nets["encoder"].out_dim
            if kind != "bc":
                out = c.hl_bins if c.hl_gauss else 1
                nets["critic"] = EnsembleMLP(c.n_critics, feat + self.flat_dim, c.critic_hidden, out)
                nets["critic_target"] = copy.deepcopy(nets["critic"]).requires_grad_(False)
                if not c.share_encoder:
                    nets["actor_encoder"] = self._make_encoder()
            if kind in ("flow", "bc"):
                nets["flow"] = FlowPolicy(feat, H, A, c.actor_hidden)
            if kind == "diffusion":
                nets["diffusion"] = DiffusionPolicy(feat, H, A, c.actor_hidden, c.diffusion_steps)
            if kind in ("flow", "diffusion"):
                nets["onestep"] = OneStepActor(feat, H, A, c.actor_hidden)
            if kind == "sac":
                nets["actor"] = GaussianActor(feat, H, A, c.actor_hidden)
                nets["log_temp"] = nn.ParameterList([nn.Parameter(torch.tensor(math.log(c.init_temperature)))])
        self.nets = nets.to(self.device)
        self.hl = HLGauss(c.hl_bins, c.hl_v_min, c.hl_v_max, c.hl_sigma_ratio).to(self.device) if c.hl_gauss else None
        self.target_entropy = c.target_entropy if c.target_entropy is not None else -self.flat_dim / 2
        if c.encoder_checkpoint:
            self.load_encoder(c.encoder_checkpoint)

        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(c.seed)
        self.optims = self._make_optimizers()
        # Called with an optimiser's parameters between backward and clip/step; data-parallel
        # training (robot_rl/training/ddp.py) averages the gradients across processes here.
        self.grad_hook = None
        cuda = self.device.type == "cuda"
        self._autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (cuda and c.bf16) else contextlib.nullcontext()
        # torch.compile wraps the heavy modules only; parameters stay shared with self.nets.
        maybe = (lambda m: torch.compile(m)) if (cuda and c.compile) else (lambda m: m)
        self._encode = maybe(self.nets["encoder"])
        self._critic = maybe(self.nets["critic"]) if kind != "bc" else None

    # ------------------------------------------------------------------ construction
    def _make_encoder(self) -> ObsEncoder:
        c = self.cfg
        return ObsEncoder(self.spec, c.conv_channels, c.conv_first_stride, c.image_feature_dim)

    def _make_optimizers(self) -> dict:
        n, lr = self.nets, self.cfg.lr
        params = lambda *names: [p for name in names if name in n for p in n[name].parameters()]  # noqa: E731
        if self.kind == "bc":
            return {"actor": torch.optim.Adam(params("encoder", "flow"), lr=lr)}
        optims = {"critic": torch.optim.Adam(params("encoder", "critic"), lr=lr)}
        if self.kind in ("flow", "diffusion"):
            optims["actor"] = torch.optim.Adam(params("actor_encoder", "flow", "diffusion", "onestep"), lr=lr)
        else:
            optims["actor"] = torch.optim.Adam(params("actor_encoder", "actor"), lr=lr)
            optims["temperature"] = torch.optim.Adam(params("log_temp"), lr=lr)
        return optims

    # ------------------------------------------------------------------ helpers
    def _randn(self, *shape) -> torch.Tensor:
        return torch.randn(shape, device=self.device, generator=self.gen)

    def _augment(self, obs: dict) -> dict:
        if not self.cfg.augment:
            return obs
        return self.nets["encoder"].augment(obs, self.cfg.shift_pad, self.gen)

    def _q(self, critic, feats, actions, members=None) -> torch.Tensor:
        """(E', B) Q-values of chunks (B, H, A) (expected value of the histogram with HL-Gauss)."""
        out = critic(torch.cat([feats, actions.reshape(actions.shape[0], -1).to(feats.dtype)], -1), members)
        return self.hl.value(out) if self.hl is not None else out.squeeze(-1).float()

    def _target_q(self, next_feats, next_actions) -> torch.Tensor:
        """(B,) min over a random subset (RLPD: 2 of 10) of the target ensemble, drawn per step."""
        c = self.cfg
        subset = torch.randperm(c.n_critics, device=self.device, generator=self.gen)[: c.target_subset]
        return self._q(self.nets["critic_target"], next_feats, next_actions, subset).min(0).values

    def _actor_feats(self, obs, critic_feats):
        """Features the policy sees: the critic encoder's (detached) or the actor's own encoder."""
        if "actor_encoder" in self.nets:
            return self.nets["actor_encoder"](obs)
        return critic_feats.detach()

    def _policy_chunk(self, feats, deterministic=True):
        """The deployed policy on features: (chunk (B, H, A), log-prob or None)."""
        b = feats.shape[0]
        if self.kind == "sac":
            if deterministic:
                return self.nets["actor"].mean_action(feats), None
            return self.nets["actor"].sample(feats, self.gen)
        noise = feats.new_zeros(b, self.flat_dim) if deterministic else self._randn(b, self.flat_dim)
        if self.kind in ("flow", "diffusion"):
            return self.nets["onestep"](feats, noise), None
        return self.nets["flow"].sample(feats, noise, self.cfg.flow_steps), None

    def _step(self, name: str, loss: torch.Tensor):
        opt = self.optims[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_hook is not None:
            self.grad_hook([p for g in opt.param_groups for p in g["params"]])
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], self.cfg.grad_clip)
        opt.step()

    # ------------------------------------------------------------------ update
    def update(self, batch: dict, n_critic_steps: int = 1) -> dict:
        """One learner update on a replay batch; returns float metrics.

        Update-to-data ratio: the batch is split into `n_critic_steps` equal interleaved
        minibatches (each with the batch's demo/online mix), the critic takes one gradient step
        on each, then the actor takes one step on the last one (RLPD's recipe for UTD > 1 with
        a single sampling call). Alternatively call update() several times per env step.
        For kind "bc" every minibatch is one BC step.
        """
        b = batch_to_tensors(self.spec, batch, self.cfg.chunk_len, self.action_dim, self.device)
        if not bool(self.nets["encoder"].normalizer_fitted):
            self.fit_obs_normalizer(b["obs"])  # first batch, unless the caller fitted it on demos
        n = int(n_critic_steps)
        size = b["actions"].shape[0]
        if n < 1 or size % n:
            raise ValueError(f"batch size {size} must split into n_critic_steps={n} equal minibatches")
        minis = split_batch(b, n) if n > 1 else [b]
        if self.kind == "bc":
            for mb in minis:
                metrics = self._bc_step(mb)
        else:
            for mb in minis:
                metrics, feats = self._critic_step(mb)
            actor_step = {"flow": self._flow_actor_step, "diffusion": self._diffusion_actor_step,
                          "sac": self._sac_actor_step}[self.kind]
            metrics.update(actor_step(minis[-1], feats))
        self.num_updates += 1
        self.num_critic_steps += n
        names = list(metrics)
        values = torch.stack([metrics[k].detach().float() for k in names]).tolist()  # one device sync
        return dict(zip(names, values))

    def _critic_step(self, b):
        c, nets = self.cfg, self.nets
        obs, next_obs = self._augment(b["obs"]), self._augment(b["next_obs"])
        with self._autocast:
            feats = self._encode(obs)
            with torch.no_grad():
                next_feats = self._encode(next_obs)
                policy_feats = nets["actor_encoder"](next_obs) if "actor_encoder" in nets else next_feats
                next_actions, next_logp = self._policy_chunk(policy_feats, deterministic=False)
                target_q = self._target_q(next_feats, next_actions)
                if next_logp is not None and c.backup_entropy:  # SAC soft backup
                    target_q = target_q - nets["log_temp"][0].exp() * next_logp.float()
                y = b["reward"] + b["discount"] * target_q
            inp = torch.cat([feats, b["actions"].flatten(1).to(feats.dtype)], -1)
            out = self._critic(inp)
            if self.hl is not None:
                loss = self.hl.loss(out, y)
                q = self.hl.value(out)
            else:
                q = out.squeeze(-1).float()
                loss = (q - y).pow(2).mean()
        self._step("critic", loss)
        with torch.no_grad():  # target EMA
            online = list(nets["critic"].parameters())
            torch._foreach_lerp_(list(nets["critic_target"].parameters()), online, c.tau)
        metrics = {"critic_loss": loss, "q_mean": q.mean(), "target_q_mean": target_q.mean()}
        return metrics, feats.detach()

    def _flow_actor_step(self, b, critic_feats):
        c, nets = self.cfg, self.nets
        obs = self._augment(b["obs"]) if "actor_encoder" in nets else None
        with self._autocast, _frozen(nets["critic"]):
            feats = self._actor_feats(obs, critic_feats)
            weight = b["is_demo"][:, None] * b["mask"]
            extra = {}
            if c.bc_q_weight > 0:  # issue #21: imitate the demo chunks the critic rates well
                weight, extra["bc_weight_mean"] = self._bc_q_weights(b, feats, critic_feats, weight)
            bc_loss = nets["flow"].bc_loss(feats, b["actions"], weight, self.gen)
            # Only the BC loss shapes an own actor encoder: early on the distillation target and
            # the critic are noise, and their gradients would scramble the image features.
            feats = feats.detach()
            noise = self._randn(feats.shape[0], self.flat_dim)
            with torch.no_grad():
                target = nets["flow"].sample(feats, noise, c.flow_steps)
            actions = nets["onestep"](feats, noise)
            distill = (actions.float() - target.float()).pow(2).mean()
            q_members = self._q(self._critic, critic_feats, actions)
            q = q_members.mean(0)
            if c.distill_q_filter > 0:  # issue #21: let the actor leave a slower teacher behind
                distill, extra["distill_kept"] = self._q_filtered_distill(critic_feats, actions, target,
                                                                          q_members.detach().min(0).values)
            q_loss = -q.mean() / q.abs().mean().detach().clamp_min(1e-6)
            loss = bc_loss + c.alpha * distill + q_loss
        self._step("actor", loss)
        return {"bc_loss": bc_loss, "distill_loss": distill, "q_loss": q_loss, "actor_loss": loss, **extra}

    # -- issue #21 (learning from sloppy demos): both off by default, see docs/learner.md
    def _q_filtered_distill(self, critic_feats, actions, target, q_low):
        """Distillation pull weighted per sample: 1 - distill_q_filter where every critic member
        rates the one-step actor's chunk above the flow policy's (the ensemble mean), else 1.
        A flow policy cloned from slow demos can only propose slow chunks; unfiltered, alpha *
        distill holds the actor to them however much the critic prefers faster ones. Filtered,
        the actor may move past the teacher where the critic says it is better (a Q-filter,
        Nair et al. 2018, on the distillation term). The actor is judged by the ensemble's min,
        not its mean: with the mean, the actor escaped to chunks only some members
        overrated and pick_cube from sloppy demos fell to 0.1-0.4 (docs/learner.md). q_low: that
        min for the actor's chunks, from the Q term's own critic pass."""
        with torch.no_grad():
            q_flow = self._q(self._critic, critic_feats, target).mean(0)
            w = torch.where(q_low > q_flow, 1.0 - self.cfg.distill_q_filter, 1.0)
        err = (actions.float() - target.float()).pow(2).flatten(1).mean(1)
        return (w * err).mean(), (w == 1.0).float().mean()

    def _bc_q_weights(self, b, feats, critic_feats, weight):
        """Advantage-weighted flow BC on the demo side: each demo chunk's weight times
        min(1, exp(bc_q_weight * (Q(s, a_demo) - Q(s, mu(s, 0))) / mean|Q|)), Q the ensemble
        mean and mu(s, 0) the deployed actor: demo chunks the critic rates below what the policy
        would do now (a pause, an abandoned approach) are imitated less, the rest as before."""
        with torch.no_grad():
            q_demo = self._q(self._critic, critic_feats, b["actions"]).mean(0)
            mu = self.nets["onestep"](feats.detach(), feats.new_zeros(feats.shape[0], self.flat_dim))
            q_pi = self._q(self._critic, critic_feats, mu).mean(0)
            scale = torch.cat([q_demo, q_pi]).abs().mean().clamp_min(1e-6)
            w = torch.exp(self.cfg.bc_q_weight * (q_demo - q_pi) / scale).clamp(max=1.0)
        demo = b["is_demo"] > 0
        mean_w = w[demo].mean() if bool(demo.any()) else w.new_ones(())
        return weight * w[:, None].to(weight.dtype), mean_w

    def _diffusion_actor_step(self, b, critic_feats):
        """FQL with a diffusion policy: denoising BC on the demo side + alpha * ||mu(s,z) -
        DDIM(s,z)||^2 - Q(s, mu(s,z)) / mean|Q|. DDIM at eta = 0 maps the noise to a chunk
        deterministically, so the distillation target is well defined noise-for-noise, exactly
        as the flow policy's Euler sample is in _flow_actor_step (kept separate on purpose)."""
        c, nets = self.cfg, self.nets
        obs = self._augment(b["obs"]) if "actor_encoder" in nets else None
        with self._autocast, _frozen(nets["critic"]):
            feats = self._actor_feats(obs, critic_feats)
            weight = b["is_demo"][:, None] * b["mask"]
            bc_loss = nets["diffusion"].bc_loss(feats, b["actions"], weight, self.gen)
            feats = feats.detach()  # as in _flow_actor_step: only BC shapes an own actor encoder
            noise = self._randn(feats.shape[0], self.flat_dim)
            with torch.no_grad():
                target = nets["diffusion"].sample(feats, noise, c.ddim_steps)
            actions = nets["onestep"](feats, noise)
            distill = (actions.float() - target.float()).pow(2).mean()
            q = self._q(self._critic, critic_feats, actions).mean(0)
            q_loss = -q.mean() / q.abs().mean().detach().clamp_min(1e-6)
            loss = bc_loss + c.alpha * distill + q_loss
        self._step("actor", loss)
        return {"bc_loss": bc_loss, "distill_loss": distill, "q_loss": q_loss, "actor_loss": loss}

    def _sac_actor_step(self, b, critic_feats):
        nets = self.nets
        obs = self._augment(b["obs"]) if "actor_encoder" in nets else None
        log_temp = nets["log_temp"][0]
        with self._autocast, _frozen(nets["critic"]):
            feats = self._actor_feats(obs, critic_feats)
            actions, logp = nets["actor"].sample(feats, self.gen)
            q = self._q(self._critic, critic_feats, actions).mean(0)
            loss = (log_temp.exp().detach() * logp.float() - q).mean()
        self._step("actor", loss)
        temp_loss = -(log_temp.exp() * (logp.detach().float() + self.target_entropy)).mean()
        self._step("temperature", temp_loss)
        return {"actor_loss": loss, "entropy": -logp.mean(), "temperature": log_temp.exp()}

    def _bc_step(self, b):
        with self._autocast:
            feats = self._encode(self._augment(b["obs"]))
            weight = b["is_demo"][:, None] * b["mask"]
            loss = self.nets["flow"].bc_loss(feats, b["actions"], weight, self.gen)
        self._step("actor", loss)
        return {"bc_loss": loss}

    def fit_obs_normalizer(self, obs: dict) -> None:
        """Fix the state-vector standardisation from observations {key: (N, D)} (e.g. all demo
        steps). Call before training; otherwise the first update() batch sets it. Stored in
        checkpoints and baked into the exported ONNX graph."""
        for name in ("encoder", "actor_encoder"):
            if name in self.nets:
                self.nets[name].fit_normalizer(obs)

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: dict, deterministic: bool = True) -> np.ndarray:
        """Action chunk(s) in [-1, 1]: (H, A) for one observation, (B, H, A) for a batch.

        Deterministic: flow/bc use noise z = 0 (what the ONNX actor computes), sac the tanh mean.
        Otherwise z ~ N(0, I) / a Gaussian sample, drawn from the agent's own generator.
        """
        o, batched = obs_to_tensors(self.spec, obs, self.device)
        feats = self._features(o)
        chunk = self._policy_chunk(feats, deterministic=deterministic)[0].float().cpu().numpy()
        return chunk if batched else chunk[0]

    @torch.no_grad()
    def act_multistep(self, obs: dict, deterministic: bool = True, steps: int | None = None) -> np.ndarray:
        """The multi-step sampler (flow/bc: Euler, `flow_steps`; diffusion: DDIM, `ddim_steps`),
        for comparison with the one-step actor."""
        if self.kind == "sac":
            raise ValueError("kind 'sac' has no flow sampler")
        o, batched = obs_to_tensors(self.spec, obs, self.device)
        feats = self._features(o)
        b = feats.shape[0]
        noise = feats.new_zeros(b, self.flat_dim) if deterministic else self._randn(b, self.flat_dim)
        if self.kind == "diffusion":
            chunk = self.nets["diffusion"].sample(feats, noise, steps or self.cfg.ddim_steps)
        else:
            chunk = self.nets["flow"].sample(feats, noise, steps or self.cfg.flow_steps)
        chunk = chunk.float().cpu().numpy()
        return chunk if batched else chunk[0]

    def _features(self, obs: dict) -> torch.Tensor:
        enc = self.nets["actor_encoder"] if "actor_encoder" in self.nets else self.nets["encoder"]
        return enc(obs)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": self.kind,
            "obs_spec": self.spec.to_dict(),
            "action_dim": self.action_dim,
            "config": self.cfg.to_dict(),
            "nets": self.nets.state_dict(),
            "optims": {k: o.state_dict() for k, o in self.optims.items()},
            "rng": self.gen.get_state(),
            "counters": {"num_updates": self.num_updates, "num_critic_steps": self.num_critic_steps},
        }

    def save(self, path) -> None:
        """Checkpoint weights, optimisers, RNG and counters (atomic: write then rename)."""
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path) -> "Agent":
        """Restore a checkpoint written by save(); the next update() is the one that would have
        followed at save time. Returns self so `make_agent(...).load(path)` reads naturally."""
        return self.load_state(read_checkpoint(path), source=os.fspath(path))

    def load_state(self, ck: dict, source: str = "checkpoint") -> "Agent":
        """load() from a checkpoint already in memory (read_checkpoint): a warm start reads the
        file once and both checks and loads that copy."""
        if ck.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{source}: checkpoint format {ck.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        mine = {"kind": self.kind, "obs_spec": self.spec.to_dict(), "action_dim": self.action_dim}
        for key, value in mine.items():
            if ck[key] != value:
                raise ValueError(f"{source}: checkpoint {key} is {ck[key]!r}, this agent has {value!r}")
        self.nets.load_state_dict(ck["nets"])  # copies onto this agent's device
        for k, o in self.optims.items():
            o.load_state_dict(ck["optims"][k])  # moves the state to its parameters' device
        self.gen.set_state(ck["rng"].cpu())  # generator states are CPU byte tensors
        self.num_updates = ck["counters"]["num_updates"]
        self.num_critic_steps = ck["counters"]["num_critic_steps"]
        return self

    def load_encoder(self, path) -> None:
        """Initialise the encoder(s) from an agent checkpoint (e.g. pre-trained in the twin)."""
        ck = torch.load(os.fspath(path), map_location=self.device, weights_only=True)
        enc = {k[len("encoder."):]: v for k, v in ck["nets"].items() if k.startswith("encoder.")}
        if not enc and self.nets["encoder"].image_keys:
            raise ValueError(f"{path} holds no encoder weights")
        for name in ("encoder", "actor_encoder"):
            if name in self.nets:
                self.nets[name].load_state_dict(enc)

    def export_onnx(self, path, version: int, verify: bool = True) -> str:
        """Write the deployed actor as ONNX and return the file's sha256 (see learn/export.py)."""
        from robot_rl.learn.export import export_actor

        return export_actor(self, path, version, verify=verify)


def make_agent(kind: str, obs_spec, action_dim: int, cfg: AgentConfig | dict | None = None, device="auto") -> Agent:
    return Agent(kind, obs_spec, action_dim, cfg, device)


def read_checkpoint(path) -> dict:
    """A checkpoint file as a dict, on the CPU (load_state moves it where the agent lives)."""
    return torch.load(os.fspath(path), map_location="cpu", weights_only=True)


# Loop settings that AgentConfig carried before the training loop owned them (they never
# changed an agent): dropped when an older checkpoint is read.
_LOOP_KEYS = ("batch_size", "utd")


def load_agent(checkpoint, device="auto") -> Agent:
    """Rebuild an agent from a checkpoint alone (kind, spec, action dim and config are stored):
    a path, or the dict read_checkpoint returned (read once, e.g. checked first, then loaded)."""
    ck = checkpoint if isinstance(checkpoint, dict) else read_checkpoint(checkpoint)
    source = "checkpoint" if isinstance(checkpoint, dict) else os.fspath(checkpoint)
    cfg = {k: v for k, v in ck["config"].items() if k not in _LOOP_KEYS}
    cfg["encoder_checkpoint"] = None
    return make_agent(ck["kind"], ck["obs_spec"], ck["action_dim"], cfg, device).load_state(ck, source)
