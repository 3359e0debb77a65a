"""Building blocks: MLPs, the batched critic ensemble, HL-Gauss value histograms."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def mlp(in_dim: int, hidden: tuple, out_dim: int, layer_norm: bool = False) -> nn.Sequential:
    layers, d = [], in_dim
    for h in hidden:
        layers.append(nn.Linear(d, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(nn.GELU())
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class EnsembleMLP(nn.Module):
    """E independent MLPs (Linear -> LayerNorm -> ReLU ...) evaluated as one batched network.

    Weights are stacked (E, in, out), so a forward pass is a handful of batched matmuls
    whatever E is; `members` selects a subset (e.g. the random target subset) without a loop.
    """

    def __init__(self, n: int, in_dim: int, hidden: tuple, out_dim: int):
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.n = n
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.ln_scales = nn.ParameterList()
        self.ln_shifts = nn.ParameterList()
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            w = torch.empty(n, d_in, d_out)
            for e in range(n):  # same init as nn.Linear, member by member (init only)
                nn.init.kaiming_uniform_(w[e].T, a=math.sqrt(5))
            bound = 1.0 / math.sqrt(d_in)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.empty(n, 1, d_out).uniform_(-bound, bound)))
            if i < len(hidden):
                self.ln_scales.append(nn.Parameter(torch.ones(n, 1, d_out)))
                self.ln_shifts.append(nn.Parameter(torch.zeros(n, 1, d_out)))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, in) shared by all members, or (E', B, in). Returns (E', B, out)."""
        pick = (lambda p: p) if members is None else (lambda p: p[members])
        n_hidden = len(self.ln_scales)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            w, b = pick(w), pick(b)
            x = torch.einsum("bi,eio->ebo", x, w) + b if x.dim() == 2 else torch.baddbmm(b, x, w)
            if i < n_hidden:
                x = F.layer_norm(x, x.shape[-1:]) * pick(self.ln_scales[i]) + pick(self.ln_shifts[i])
                x = F.relu(x)
        return x


class HLGauss(nn.Module):
    """Histogram-loss value head (Farebrother et al. 2024): a scalar target becomes a
    Gaussian-smeared histogram over fixed bins; the critic is trained by cross-entropy."""

    def __init__(self, n_bins: int, v_min: float, v_max: float, sigma_ratio: float):
        super().__init__()
        if not v_max > v_min or n_bins < 2:
            raise ValueError(f"HL-Gauss needs v_max > v_min and >= 2 bins, got {v_min}, {v_max}, {n_bins}")
        edges = torch.linspace(v_min, v_max, n_bins + 1)
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("centres", (edges[:-1] + edges[1:]) / 2, persistent=False)
        self.sigma = sigma_ratio * (v_max - v_min) / n_bins

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits.float().softmax(-1) * self.centres).sum(-1)

    def target_probs(self, y: torch.Tensor) -> torch.Tensor:
        y = y.clamp(self.edges[0], self.edges[-1])
        cdf = torch.special.erf((self.edges - y.unsqueeze(-1)) / (math.sqrt(2.0) * self.sigma))
        p = cdf[..., 1:] - cdf[..., :-1]
        return p / p.sum(-1, keepdim=True).clamp_min(1e-8)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """logits (E, B, bins), y (B,) -> mean cross-entropy."""
        target = self.target_probs(y).unsqueeze(0)
        return -(target * logits.float().log_softmax(-1)).sum(-1).mean()
