"""Policies over action chunks (B, H, A) in [-1, 1], all conditioned on encoder features.

- FlowPolicy: flow-matching velocity field v(s, x_t, t), trained by behaviour cloning, sampled
  with a multi-step Euler integrator from Gaussian noise.
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
