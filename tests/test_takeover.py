"""The scripted human's takeover rule."""
import numpy as np
import pytest

from robot_rl.teleop.takeover import TakeoverConfig, TakeoverRule

BOX = ((0.2, -0.3, 0.0), (0.8, 0.3, 0.5))
MID = np.array([0.5, 0.0, 0.25])


def rule(**kw):
    return TakeoverRule(TakeoverConfig(**kw), *BOX, seed=0)


def test_takes_over_when_stuck_then_releases_and_cools_down():
    r = rule(stuck_steps=3, max_takeover_steps=4, cooldown_steps=2)
    trace = [r.update(0.3, MID) for _ in range(12)]
    # 3 steps without progress, 4 engaged, a release step and 2 cooling down, then stuck again
    F, T = False, True
    assert trace == [F, F, F, T, T, T, T, F, F, F, T, T]


def test_progress_keeps_the_human_away():
    r = rule(stuck_steps=3, min_progress=0.005)
    assert not any(r.update(0.3 - 0.01 * i, MID) for i in range(20))


def test_about_to_leave_the_workspace_triggers():
    r = rule(stuck_steps=100, leave_margin=0.02)
    assert r.update(0.3, [0.79, 0.0, 0.25])


def test_takeover_probability_zero_never_engages():
    r = rule(stuck_steps=2, takeover_prob=0.0)
    assert not any(r.update(0.3, MID) for _ in range(50))


def test_reset_releases():
    r = rule(stuck_steps=1)
    r.update(0.3, MID); r.update(0.3, MID)
    assert r.engaged
    r.reset()
    assert not r.engaged


def test_bad_config():
    with pytest.raises(ValueError, match="unknown takeover keys"):
        TakeoverConfig.from_dict({"patience": 3})
