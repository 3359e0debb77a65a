"""What stands between a policy and the robot besides the safety filter, as plain code.

Ease-in: after a policy swap, a takeover release or any hold, the policy's twist is scaled up
over `ticks` ticks (k / (ticks + 1) on the k-th policy tick), so a new or resumed policy never
starts with a jump from standstill to full speed. The gripper command is not blended: it is a
target opening, not a speed, and a half-blended grip would open a grasp as surely as the
policy's own command would.

Trips: a policy out of its depth is stopped before it does harm, and stays stopped until an
operator clears it (the actor latches the hold, like the e-stop):
- out of distribution: a state feature more than `ood_std` standard deviations from the mean
  the learner's normaliser was fitted on (the ONNX actor carries those statistics, metadata
  prop "obs_stats"), for `ood_ticks` consecutive policy ticks;
- saturated: the policy asking for speeds at the safety filter's bounds (at least `saturation`
  of max_lin_vel or max_ang_vel) for `saturated_ticks` consecutive policy ticks.
Counting only runs while the policy drives: a takeover, a hold or a swap restarts it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from robot_rl.safety import SafetyConfig

OBS_STATS_KEY = "obs_stats"  # the ONNX metadata prop (robot_rl/learn/export.py writes it)


@dataclass
class TripSettings:
    """Defaults are config/sim.yaml's: both trips off there (see that file for why)."""

    ood_std: float = 0.0  # trip beyond this many std of the fitted normaliser; 0 = off
    ood_ticks: int = 3  # consecutive out-of-distribution policy ticks that trip
    saturated_ticks: int = 0  # consecutive policy ticks at the speed bounds that trip; 0 = off
    saturation: float = 0.98  # fraction of the safety filter's speed bound that counts as "at it"

    def __post_init__(self):
        if self.ood_std < 0 or self.ood_ticks < 1 or self.saturated_ticks < 0:
            raise ValueError("trip: ood_std and saturated_ticks must be >= 0 and ood_ticks >= 1")
        if not 0 < self.saturation <= 1:
            raise ValueError(f"trip.saturation must be in (0, 1], got {self.saturation}")


class ObsStatsError(ValueError):
    pass


def parse_obs_stats(metadata: dict) -> dict | None:
    """The policy's normaliser statistics {key: (mean, std)} from its ONNX metadata; None when
    it carries none (exported before they were added, or never fitted). ObsStatsError when
    they are there but malformed: a broken export, refused like any other."""
    raw = metadata.get(OBS_STATS_KEY)
    if raw is None:
        return None
    try:
        d = json.loads(raw) if isinstance(raw, str) else raw
        stats = {}
        for k, v in d.items():
            mean, std = np.asarray(v["mean"], np.float64), np.asarray(v["std"], np.float64)
            if mean.ndim != 1 or mean.shape != std.shape or not np.isfinite(mean).all() \
                    or not (np.isfinite(std).all() and (std > 0).all()):
                raise ValueError(f"{k}: mean and std must be finite (D,) vectors, std > 0")
            stats[str(k)] = (mean, std)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ObsStatsError(f"{OBS_STATS_KEY} metadata is malformed: {e}") from None
    return stats


class EaseIn:
    def __init__(self, ticks: int):
        self.ticks = int(ticks)  # >= 0: ActorSettings checks it
        self.k = 0  # policy ticks since the policy last took over

    def restart(self) -> None:
        self.k = 0

    def factor(self) -> float:
        """The scale for this policy tick (call once per tick the policy drives)."""
        self.k += 1
        return 1.0 if self.k > self.ticks else self.k / (self.ticks + 1)


class TripMonitor:
    def __init__(self, s: TripSettings, safety: SafetyConfig):
        self.s = s
        self.max_lin, self.max_ang = safety.max_lin_vel, safety.max_ang_vel
        self.stats: dict | None = None
        self.ood_run = 0
        self.sat_run = 0

    def restart(self) -> None:
        self.ood_run = self.sat_run = 0

    def observation(self, obs: dict) -> str | None:
        """Count this policy tick's observation; the trip's reason once it trips."""
        if not self.s.ood_std or not self.stats:
            return None
        worst = None  # (z, key, index)
        for k, (mean, std) in self.stats.items():
            if k not in obs:
                continue
            z = np.abs(np.asarray(obs[k], np.float64).reshape(-1) - mean) / std
            z = np.where(np.isfinite(z), z, np.inf)  # a NaN feature is as far out as it gets
            i = int(np.argmax(z))
            if worst is None or z[i] > worst[0]:
                worst = (float(z[i]), k, i)
        if worst is None or worst[0] <= self.s.ood_std:
            self.ood_run = 0
            return None
        self.ood_run += 1
        if self.ood_run < self.s.ood_ticks:
            return None
        z, k, i = worst
        return (f"observation out of distribution: {k}[{i}] {z:.1f} std from the policy's training "
                f"mean (limit {self.s.ood_std:g}) for {self.ood_run} ticks")

    def command(self, twist) -> str | None:
        """Count this policy tick's requested twist (before ease-in and the filter)."""
        if not self.s.saturated_ticks:
            return None
        v = np.asarray(twist, np.float64).reshape(6)
        lin, ang = float(np.linalg.norm(v[:3])), float(np.linalg.norm(v[3:]))
        at = self.s.saturation
        if not (lin >= at * self.max_lin or ang >= at * self.max_ang):
            self.sat_run = 0
            return None
        self.sat_run += 1
        if self.sat_run < self.s.saturated_ticks:
            return None
        return (f"policy saturated: speeds at the safety bounds (linear {lin:.3f}/{self.max_lin:g} m/s, "
                f"angular {ang:.3f}/{self.max_ang:g} rad/s) for {self.sat_run} ticks")
