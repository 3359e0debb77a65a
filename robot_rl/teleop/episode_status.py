"""The episode outcome from the operator's keys: what a robot's `task/status` says when nothing but
a person (later a classifier) knows whether an episode succeeded. Plain code; the task_status node
(robot_rl/nodes/task_status.py) ticks it at the control rate and feeds it teleop/event strings.

  running   every tick: reward 0, not terminal, `step` counting 0, 1, 2, ...
  success   -> terminal: terminated, success, reward 1
  failure   -> terminal: terminated, not success, reward 0
  reset     while running: the person aborted the episode -> truncated (not a failure: the task
            did not fail, so a learner keeps bootstrapping through it)
  estop     while running -> truncated, as reset (the robot is held; the scene needs a person)
  max_episode_steps reached -> truncated
  waiting   after any end: the same terminal status every tick (the actor samples the newest
            status on its timer: a single message could fall between two ticks, and a status
            that stops coming reads as stale) until the person presses reset, which starts the
            next episode (episode + 1, step 0).

hil-serl #44: a human reward key pressed mid-episode stopped learning there. Here an outcome key
ends the episode cleanly (one terminal transition, the actor closes the episode, the next one
starts only on reset), and any further outcome key before the reset is ignored with a log line:
an episode has exactly one outcome. takeover/release are not outcomes and change nothing.
"""
from __future__ import annotations

RUNNING, WAITING = "running", "waiting"
OUTCOMES = ("success", "failure", "reset", "estop")
NOT_OUTCOMES = ("takeover", "release")


class EpisodeStatus:
    def __init__(self, max_episode_steps: int = 0, first_episode: int = 0):
        if max_episode_steps < 0:
            raise ValueError(f"max_episode_steps must be >= 0 (0 = no limit), got {max_episode_steps}")
        self.max_episode_steps = int(max_episode_steps)
        self.episode = int(first_episode)
        self.step = 0
        self.state = RUNNING
        self.ended_as = ""  # success | failure | reset | estop | max_episode_steps
        self.history: list[dict] = []  # one entry per ended episode

    def event(self, name: str) -> tuple[str, str] | None:
        """A teleop/event string -> (level info|warn, log line) or None (nothing to say)."""
        if name in NOT_OUTCOMES:
            return None
        if name not in OUTCOMES:
            # cut: a flood of garbage on teleop/event must not become as many megabytes of log
            return "warn", f"unknown teleop event {name[:80]!r} ignored; expected one of {list(OUTCOMES + NOT_OUTCOMES)}"
        if self.state == WAITING:
            if name == "reset":
                self.episode += 1
                self.step = 0
                self.state, self.ended_as = RUNNING, ""
                return "info", f"reset: episode {self.episode} starts"
            return "warn", (f"{name} ignored: episode {self.episode} already ended ({self.ended_as}); "
                            "press reset to start the next one")
        self._end(name)
        what = {"success": "succeeded", "failure": "failed", "reset": "aborted by reset (truncated)",
                "estop": "stopped by the e-stop (truncated)"}[name]
        return "info", f"episode {self.episode} {what} at step {self.step}; press reset to start the next one"

    def tick(self) -> dict:
        """The status to publish this control period (codec.status_msg's values)."""
        if self.state == RUNNING and self.max_episode_steps and self.step >= self.max_episode_steps:
            self._end("max_episode_steps")
        if self.state == WAITING:
            return self._terminal()
        out = self._values(reward=0.0, terminated=False, truncated=False, success=False)
        self.step += 1
        return out

    def _end(self, how: str) -> None:
        self.state, self.ended_as = WAITING, how
        self.history.append({"episode": self.episode, "steps": self.step, "ended_as": how,
                             "success": how == "success"})

    def _terminal(self) -> dict:
        how = self.ended_as
        return self._values(reward=1.0 if how == "success" else 0.0,
                            terminated=how in ("success", "failure"),
                            truncated=how not in ("success", "failure"),
                            success=how == "success")

    def _values(self, **kw) -> dict:
        return dict(kw, episode=self.episode, step=self.step)
