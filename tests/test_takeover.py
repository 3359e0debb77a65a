"""The scripted human's takeover rule, judging progress as a person does: slow progress is left
alone, a stall or a move away from the goal is taken over, and it lets go once recovered."""
import numpy as np
import pytest

from robot_rl.teleop.takeover import TakeoverConfig, TakeoverRule

BOX = ((0.2, -0.3, 0.0), (0.8, 0.3, 0.5))
MID = np.array([0.5, 0.0, 0.25])


def rule(**kw):
    return TakeoverRule(TakeoverConfig(**kw), *BOX, seed=0)


def trace(r, distances, ee=MID):
    return [r.update(d, ee) for d in distances]


def test_takes_over_when_stuck_then_releases_and_cools_down():
    r = rule(stuck_steps=3, max_takeover_steps=4, cooldown_steps=2)
    # 3 steps without progress, 4 engaged (nothing recovers: let go at the cap), a release step
    # and 2 cooling down, then stuck again
    F, T = False, True
    assert trace(r, [0.3] * 12) == [F, F, F, T, T, T, T, F, F, F, T, T]
    assert r.reason == "stalled"


def test_progress_keeps_the_human_away():
    r = rule(stuck_steps=3, min_progress=0.005)
    assert not any(trace(r, [0.3 - 0.01 * i for i in range(20)]))


@pytest.mark.parametrize("seed", range(5))
def test_a_slow_but_progressing_grasp_is_never_taken_over(seed):
    """What a person leaves alone, with the shipped settings: 0.5 mm a step (the expert moves
    up to 2 cm) with 1.5 mm of jitter on top, a second's pause to close the fingers, a slow lift."""
    rng = np.random.default_rng(seed)
    approach = 0.3 - 0.0005 * np.arange(200)
    closing = np.full(10, approach[-1])
    lift = closing[-1] - 0.0005 * np.arange(1, 101)
    d = np.concatenate([approach, closing, lift]) + rng.uniform(-0.0015, 0.0015, 310)
    assert not any(trace(TakeoverRule(TakeoverConfig(), *BOX), d)), "a person would let this finish"


@pytest.mark.parametrize("stuck_steps", [5, 25])
def test_a_stall_is_taken_over_within_the_window(stuck_steps):
    """Progress, then a stall (tiny jitter, no gain): engaged exactly one window after it began."""
    r = rule(stuck_steps=stuck_steps)
    moving = trace(r, [0.2 - 0.01 * i for i in range(10)])
    stalled = trace(r, 0.1 + 0.001 * np.sin(np.arange(40)))
    assert not any(moving)
    assert stalled.index(True) == stuck_steps and r.reason == "stalled", (stalled, r.reason)


def test_moving_away_is_taken_over_within_a_few_steps():
    """Going away from the goal at 5 mm a step: in the hands of the operator once 3 cm (regress)
    further than the closest it got, long before a window has passed."""
    r = rule()
    assert not any(trace(r, [0.2 - 0.01 * i for i in range(10)]))
    away = trace(r, [0.11 + 0.005 * i for i in range(1, 20)])
    assert away.index(True) <= 7 and r.reason == "regressing"


def test_lets_go_once_recovered_not_at_the_cap():
    """Stepped in on a stall: once the operator has taken the fraction `recover` off the distance
    left where it stalled, it hands back, long before max_takeover_steps."""
    r = rule(stuck_steps=5, recover=0.5, max_takeover_steps=100)
    assert trace(r, [0.1] * 6) == [False] * 5 + [True]
    driving = trace(r, [0.1 - 0.01 * i for i in range(1, 10)])
    assert driving.index(False) == 4, driving  # at 0.05 = (1 - recover) * 0.1


def test_a_second_takeover_in_an_episode_finishes_the_task():
    """The first hand-back is at half the distance; when the policy stalls again in the same
    episode the operator drives to the goal itself, past done_distance (handed back 1 mm short
    of the lift height, a young policy dropped the cube), until the cap; a new episode starts
    with the first-takeover rule again."""
    r = rule(stuck_steps=5, recover=0.5, recover_again=1.0, cooldown_steps=0, max_takeover_steps=100)
    trace(r, [0.1] * 6)
    assert trace(r, [0.09, 0.07, 0.05]) == [True, True, False]  # first: half of 0.1
    assert trace(r, [0.05] * 6)[-1] and r.takeovers == 2  # stalled again
    finishing = trace(r, [0.05 - 0.005 * i for i in range(1, 11)])  # down to 0.0, through 0.01
    assert finishing == [True] * 9 + [False], finishing  # let go only at the goal
    r.reset()
    trace(r, [0.1] * 6)
    assert trace(r, [0.09, 0.07, 0.05]) == [True, True, False] and r.takeovers == 1


def test_heading_out_of_the_workspace_triggers_a_grasp_at_the_table_does_not():
    # toward the +x face (within 2 cm of it from x = 0.79) while drifting 4 mm a step off the
    # goal (`leave_regress` off by then, never `regress`): in the operator's hands at the margin
    r = rule(stuck_steps=100, leave_margin=0.02)
    out = [r.update(0.1 + 0.004 * i, [0.74 + 0.01 * i, 0.0, 0.25]) for i in range(8)]
    assert out.index(True) == 5 and r.reason == "leaving", out
    # the same drift, stopping 1 cm off the goal (a cube tipped by the fingers): not leaving
    r = rule(stuck_steps=100, leave_margin=0.02)
    assert not any(r.update(0.1 + min(0.002 * i, 0.01), [0.74 + 0.01 * i, 0.0, 0.25]) for i in range(8))
    # descending onto an object that sits on the floor face: near the face, moving toward it,
    # but getting closer to the goal, then the contact jitter (3 mm) of closing on it
    r = rule(stuck_steps=100, leave_margin=0.02)
    z = [0.05 - 0.008 * i for i in range(5)] + [0.012, 0.011, 0.012, 0.011]
    d = [0.1 - 0.008 * i for i in range(5)] + [0.06, 0.062, 0.061, 0.063]
    assert not any(r.update(di, [0.5, 0.0, zi]) for zi, di in zip(z, d))


def test_takeover_probability_zero_never_engages():
    r = rule(stuck_steps=2, takeover_prob=0.0)
    assert not any(trace(r, [0.3] * 50))


def test_always_drives_every_step():
    r = rule(always=True)
    assert all(trace(r, [0.3 - 0.01 * i for i in range(20)]))


def test_reset_releases():
    r = rule(stuck_steps=1)
    r.update(0.3, MID); r.update(0.3, MID)
    assert r.engaged
    r.reset()
    assert not r.engaged


def test_bad_config():
    with pytest.raises(ValueError, match="unknown takeover keys"):
        TakeoverConfig.from_dict({"patience": 3})
    with pytest.raises(ValueError, match="always"):
        TakeoverConfig(stuck_steps=0)


def test_recover_fractions_outside_0_1_are_refused():
    for bad in ({"recover": 1.5}, {"recover_again": -0.1}):
        with pytest.raises(ValueError, match="takeover.recover"):
            TakeoverConfig(**bad)
