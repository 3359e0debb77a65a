"""The classifier's per-frame verdicts -> the episode outcome on task/status.

The operator's state machine (robot_rl/teleop/episode_status.py EpisodeStatus) stays the one
owner of the episode: the classifier only feeds it a "success" event, after `k` consecutive
positive frames (hysteresis: one frame that happens to look like success must not end an
episode; hil-serl #32 is a classifier that misled the learner exactly so). The person's keys go
to the same EpisodeStatus, so they override the classifier: a failure, reset or e-stop key ends
the episode their way while it runs (later frames change nothing: an episode has one outcome),
a success key ends it as a success without waiting for k frames, and the next episode starts
only on the person's reset.

Re-arming: after every episode start the classifier needs one negative frame before it counts
positives, so a scene still showing the last success (the cube still in the gripper while the
person resets) cannot end the new episode at once.
"""
from __future__ import annotations

import numpy as np

from robot_rl.teleop.episode_status import RUNNING, EpisodeStatus


class ClassifierStatus:
    def __init__(self, k: int = 3, max_episode_steps: int = 0, first_episode: int = 0, auto_reset: bool = False):
        if k < 1:
            raise ValueError(f"k (consecutive positive frames) must be >= 1, got {k}")
        self.k = int(k)
        # auto_reset: the first frame after an episode's end starts the next episode, for a scene
        # that resets itself (the twin); on a robot the person's reset key starts it.
        self.auto_reset = bool(auto_reset)
        self.status = EpisodeStatus(max_episode_steps, first_episode)
        self.streak = 0
        self.armed = False
        self.declared_at: list[tuple[int, int]] = []  # (episode, step) where the classifier said success

    def frame(self, positive: bool) -> tuple[dict, tuple[str, str] | None]:
        """One classified frame -> (the status to publish for it, a log line or None)."""
        said = None
        st = self.status
        if self.auto_reset and st.state != RUNNING:
            said = self.operator("reset")
        over = st.max_episode_steps and st.step >= st.max_episode_steps  # this frame's tick truncates
        if st.state == RUNNING and not over:
            if not positive:
                self.armed, self.streak = True, 0
            elif self.armed:
                self.streak += 1
                if self.streak >= self.k:
                    self.declared_at.append((self.status.episode, self.status.step))
                    level, text = self.status.event("success")
                    said = (level, f"classifier: {self.k} consecutive success frames; {text}")
        values = self.status.tick()
        return values, said

    def operator(self, name: str) -> tuple[str, str] | None:
        """A teleop/event string from the person (success | failure | reset | estop | ...)."""
        said = self.status.event(name)
        if self.status.state == RUNNING and self.status.step == 0:  # a new episode: re-arm
            self.streak, self.armed = 0, False
        return said

    def unclassified(self) -> tuple[dict, tuple[str, str] | None]:
        """A frame that could not be classified (bad size, ...): counts as not success."""
        said = self.operator("reset") if self.auto_reset and self.status.state != RUNNING else None
        self.streak = 0
        return self.status.tick(), said


def episode_outcomes(positive: np.ndarray, episode: np.ndarray, episode_success: np.ndarray, k: int,
                     labels: np.ndarray | None = None) -> dict:
    """Per episode (frames in episode order), whether ClassifierStatus would declare success, as
    an episode-level confusion table; with labels, how many frames after the first positive
    label it declared (mean)."""
    tp = fp = fn = tn = 0
    delays = []
    for e in np.unique(episode):
        idx = np.flatnonzero(episode == e)
        st = ClassifierStatus(k)
        said_at = None
        for j, i in enumerate(idx):
            st.frame(bool(positive[i]))
            if st.declared_at:
                said_at = j
                break
        truth = bool(episode_success[e])
        declared = said_at is not None
        tp += declared and truth
        fp += declared and not truth
        fn += truth and not declared
        tn += not truth and not declared
        if declared and truth and labels is not None and labels[idx].any():
            delays.append(said_at - int(np.flatnonzero(labels[idx])[0]))
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn),
            "precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / (tp + fn) if tp + fn else 0.0,
            "mean_delay": round(float(np.mean(delays)), 2) if delays else None}
