"""Observation encoders: a small conv net per camera plus the flat state vectors.

Images arrive as uint8 (B, H, W, 3), exactly as the spec and the ONNX actor see them, and are
normalised inside the network so the exported graph does the same. Random-shift augmentation
(pad + random crop, DrQ) is a separate batched function applied only on training batches.
"""
from __future__ import annotations

import torch
from torch import nn

from robot_rl.spec import ObsSpec


def random_shift(img: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random shift of a uint8/float (B, H, W, C) batch by up to `pad` pixels, edges replicated.

    Equivalent to replicate-padding by `pad` and cropping H x W at a random offset per sample,
    done as one gather with clamped indices (no padded copy, no loop over the batch).
    """
    if pad <= 0:
        return img
    b, h, w = img.shape[:3]
    shift = torch.randint(-pad, pad + 1, (2, b, 1), device=img.device, generator=generator)
    rows = (torch.arange(h, device=img.device) + shift[0]).clamp_(0, h - 1)  # (B, H)
    cols = (torch.arange(w, device=img.device) + shift[1]).clamp_(0, w - 1)  # (B, W)
    batch = torch.arange(b, device=img.device)[:, None, None]
    return img[batch, rows[:, :, None], cols[:, None, :]]


class ConvEncoder(nn.Module):
    """uint8 (B, H, W, 3) -> (B, feature_dim): patchify conv, stride-2 convs, Linear, LayerNorm, tanh."""

    def __init__(self, image_shape: tuple, channels: tuple, first_stride: int, feature_dim: int):
        super().__init__()
        h, w, c = image_shape
        if c != 3:
            raise ValueError(f"camera images must be (H, W, 3), got {image_shape}")
        layers, c_in = [], c
        for i, c_out in enumerate(channels):
            k, s = (first_stride, first_stride) if i == 0 else (3, 2)
            layers += [nn.Conv2d(c_in, c_out, k, stride=s), nn.ReLU()]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, c, h, w)).numel()
        self.head = nn.Sequential(nn.Linear(n_flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img.permute(0, 3, 1, 2).float() * (1.0 / 255.0) - 0.5
        return self.head(self.convs(x).flatten(1))


class ObsEncoder(nn.Module):
    """Observation dict -> feature vector: conv features per camera, then the state vectors
    ("proprio", "object", ...) concatenated in spec order. No conv at all for state-only specs."""

    def __init__(self, spec: ObsSpec, channels: tuple, first_stride: int, feature_dim: int):
        super().__init__()
        self.image_keys = tuple(spec.image_keys)
        self.vector_keys = tuple(spec.vector_keys)
        other = set(spec.shapes) - set(self.image_keys) - set(self.vector_keys)
        if other:
            raise ValueError(f"observation keys {sorted(other)} are neither (D,) vectors nor (H, W, 3) images")
        self.cams = nn.ModuleDict(
            {k: ConvEncoder(spec.shapes[k], channels, first_stride, feature_dim) for k in self.image_keys}
        )
        vec_dim = sum(spec.shapes[k][0] for k in self.vector_keys)
        self.out_dim = feature_dim * len(self.image_keys) + vec_dim
        if self.out_dim == 0:
            raise ValueError("observation spec has no keys to encode")
        # State vectors are standardised with statistics fitted once (fit_normalizer): raw
        # positions in metres differ by centimetres, too little for an MLP to resolve quickly.
        self.register_buffer("vec_mean", torch.zeros(vec_dim))
        self.register_buffer("vec_std", torch.ones(vec_dim))
        self.register_buffer("normalizer_fitted", torch.tensor(False))

    def fit_normalizer(self, obs: dict, min_std: float = 0.05) -> None:
        """Set the state-vector mean/std from a batch of observations {key: (N, D)}.

        min_std keeps a component that barely moved in the data (a fixed orientation) from
        being blown up when it moves later."""
        if not self.vector_keys:
            self.normalizer_fitted.fill_(True)
            return
        x = torch.cat([torch.as_tensor(obs[k]).float().reshape(-1, obs[k].shape[-1]).to(self.vec_mean.device)
                       for k in self.vector_keys], dim=-1)
        self.vec_mean.copy_(x.mean(0))
        self.vec_std.copy_(x.std(0, unbiased=False).clamp_min(min_std) if x.shape[0] > 1 else torch.ones_like(self.vec_std))
        self.normalizer_fitted.fill_(True)

    def forward(self, obs: dict) -> torch.Tensor:
        parts = [self.cams[k](obs[k]) for k in self.image_keys]
        if self.vector_keys:
            vec = torch.cat([obs[k].float() for k in self.vector_keys], dim=-1)
            parts.append((vec - self.vec_mean) / self.vec_std)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def augment(self, obs: dict, pad: int, generator: torch.Generator | None) -> dict:
        """Random-shift every camera image; state vectors pass through unchanged."""
        if not self.image_keys or pad <= 0:
            return obs
        return {k: random_shift(v, pad, generator) if k in self.cams else v for k, v in obs.items()}
