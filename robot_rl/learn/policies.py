"""Policies over action chunks (B, H, A) in [-1, 1], all conditioned on encoder features.

- FlowPolicy: flow-matching velocity field v(s, x_t, t), trained by behaviour cloning, sampled
  with a multi-step Euler integrator from Gaussian noise.
- DiffusionPolicy: DDPM noise predictor eps(s, x_t, t) (Diffusion Policy's epsilon objective,
  cosine schedule), sampled with deterministic DDIM from Gaussian noise.
- OneStepActor: mu(s, z) -> chunk in one network evaluation (Flow Q-learning's deployed actor).
- GaussianActor: tanh-squashed Gaussian over the flattened chunk (SAC baseline).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from robot_rl.learn.nets import mlp


class FlowPolicy(nn.Module):
    def __init__(self, feat_dim: int, chunk_len: int, action_dim: int, hidden: tuple):
        super().__init__()
        self.shape = (chunk_len, action_dim)
        self.flat = chunk_len * action_dim
        self.net = mlp(feat_dim + self.flat + 1, hidden, self.flat)

    def velocity(self, feats: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """feats (B, F), x (B, H*A), t (B, 1) -> velocity (B, H*A)."""
        return self.net(torch.cat([feats, x, t], dim=-1))

    def sample(self, feats: torch.Tensor, noise: torch.Tensor, steps: int) -> torch.Tensor:
        """Euler-integrate dx/dt = v from x_0 = noise (B, H*A) to t = 1; returns (B, H, A) in [-1, 1]."""
        x, dt = noise, 1.0 / steps
        for i in range(steps):
            t = torch.full_like(x[:, :1], i * dt)  # traceable with a dynamic batch size
            x = x + dt * self.velocity(feats, x, t)
        return x.clamp(-1.0, 1.0).view(-1, *self.shape)

    def bc_loss(self, feats, actions, weight, generator=None) -> torch.Tensor:
        """Flow-matching loss on straight paths noise -> actions.

        actions (B, H, A); weight (B, H): 1 for chunk steps to imitate (demo side and not
        padding), 0 otherwise. Mean squared velocity error over the weighted steps.
        """
        b = actions.shape[0]
        x1 = actions.reshape(b, -1)
        x0 = torch.randn(x1.shape, device=x1.device, dtype=x1.dtype, generator=generator)
        t = torch.rand((b, 1), device=x1.device, dtype=x1.dtype, generator=generator)
        v = self.velocity(feats, (1 - t) * x0 + t * x1, t)
        err = (v - (x1 - x0)).pow(2).view(b, *self.shape).sum(-1)  # (B, H)
        return (err * weight).sum() / (weight.sum() * self.shape[1]).clamp_min(1.0)


def cosine_alpha_bars(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """(steps,) cumulative signal levels abar_t of the cosine schedule (Nichol & Dhariwal 2021),
    betas capped at 0.999 as Diffusion Policy's "squaredcos_cap_v2" does: without the cap the
    last beta is 1 and x_T carries no signal at all, so the eps-to-x0 inversion divides by 0."""
    f = lambda t: math.cos((t / steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    betas = torch.tensor([min(1 - f(i + 1) / f(i), max_beta) for i in range(steps)], dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float()


class DiffusionPolicy(nn.Module):
    """Denoising diffusion over flattened chunks, epsilon prediction (Chi et al. 2023).

    Trained on `train_steps` discrete timesteps; sampled with DDIM at eta = 0, which makes the
    sample a deterministic function of the initial noise: the one-step actor can be distilled
    from it noise-for-noise, exactly as from the flow policy's Euler sample.
    """

    def __init__(self, feat_dim: int, chunk_len: int, action_dim: int, hidden: tuple, train_steps: int,
                 time_dim: int = 16):
        super().__init__()
        self.shape = (chunk_len, action_dim)
        self.flat = chunk_len * action_dim
        self.train_steps = int(train_steps)
        self.register_buffer("alpha_bars", cosine_alpha_bars(self.train_steps), persistent=False)
        # Sinusoidal timestep embedding (as Diffusion Policy's): a raw t/T scalar makes the
        # MLP's response to neighbouring timesteps nearly identical at 100 levels.
        freqs = torch.exp(-math.log(1000.0) * torch.arange(time_dim // 2) / max(time_dim // 2 - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)
        self.net = mlp(feat_dim + self.flat + 2 * (time_dim // 2), hidden, self.flat)

    def epsilon(self, feats: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """feats (B, F), x (B, H*A), t (B,) integer timesteps -> predicted noise (B, H*A)."""
        arg = t.to(x.dtype)[:, None] * self.freqs.to(x.dtype)[None]
        return self.net(torch.cat([feats, x, arg.sin(), arg.cos()], dim=-1))

    def ddim_timesteps(self, steps: int) -> list[int]:
        """Descending timesteps for a `steps`-step DDIM pass, "trailing" spacing (Lin et al.
        2024): the first step is at t = T-1, so sampling starts from the noise level training saw
        with pure noise; leading spacing (T=100, 10 steps: 90, 80, ...) would start at a level
        where x_t still holds signal the initial Gaussian does not have."""
        steps = min(int(steps), self.train_steps)
        return sorted({round(self.train_steps - 1 - i * self.train_steps / steps) for i in range(steps)}, reverse=True)

    def sample(self, feats: torch.Tensor, noise: torch.Tensor, steps: int) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from x_T = noise (B, H*A); returns (B, H, A) in [-1, 1]."""
        x, ts = noise, self.ddim_timesteps(steps)
        for i, t in enumerate(ts):
            ab = self.alpha_bars[t]
            ab_prev = self.alpha_bars[ts[i + 1]] if i + 1 < len(ts) else torch.ones_like(ab)
            eps = self.epsilon(feats, x, torch.full_like(x[:, 0], t))
            # Clip the x0 estimate to the action range (Diffusion Policy's clip_sample) and
            # re-derive eps from it, so the step stays on the DDIM path of the clipped estimate.
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1.0, 1.0)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x.clamp(-1.0, 1.0).view(-1, *self.shape)

    def bc_loss(self, feats, actions, weight, generator=None) -> torch.Tensor:
        """Denoising loss: noise actions to a random timestep, regress the noise (DDPM's simple
        loss). actions (B, H, A); weight (B, H) as FlowPolicy.bc_loss."""
        b = actions.shape[0]
        x0 = actions.reshape(b, -1)
        eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        t = torch.randint(0, self.train_steps, (b,), device=x0.device, generator=generator)
        ab = self.alpha_bars[t][:, None].to(x0.dtype)
        pred = self.epsilon(feats, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t)
        err = (pred - eps).pow(2).view(b, *self.shape).sum(-1)  # (B, H)
        return (err * weight).sum() / (weight.sum() * self.shape[1]).clamp_min(1.0)


class OneStepActor(nn.Module):
    def __init__(self, feat_dim: int, chunk_len: int, action_dim: int, hidden: tuple):
        super().__init__()
        self.shape = (chunk_len, action_dim)
        self.flat = chunk_len * action_dim
        self.net = mlp(feat_dim + self.flat, hidden, self.flat)

    def forward(self, feats: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """feats (B, F), noise (B, H*A) -> chunk (B, H, A) in (-1, 1).

        tanh rather than FQL's clip: a clipped output gets no gradient from the critic once it
        saturates, and the actor can stick at a bound when the distillation term is weak."""
        return torch.tanh(self.net(torch.cat([feats, noise], dim=-1))).view(-1, *self.shape)


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class GaussianActor(nn.Module):
    def __init__(self, feat_dim: int, chunk_len: int, action_dim: int, hidden: tuple):
        super().__init__()
        self.shape = (chunk_len, action_dim)
        self.flat = chunk_len * action_dim
        self.net = mlp(feat_dim, hidden, 2 * self.flat)

    def _dist(self, feats):
        mean, log_std = self.net(feats).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def mean_action(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self._dist(feats)[0]).view(-1, *self.shape)

    def sample(self, feats: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample: (chunk (B, H, A), log-prob (B,)) with the tanh correction."""
        mean, log_std = self._dist(feats)
        eps = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
        u = mean + log_std.exp() * eps
        logp = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2 * (math.log(2.0) - u - F.softplus(-2 * u))).sum(-1)  # log |d tanh(u)/du|
        return torch.tanh(u).view(-1, *self.shape), logp
