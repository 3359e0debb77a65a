"""The sim graph's scripted human as plain code (robot_rl.teleop.scripted): it steps in when the
policy makes no progress, drives with the expert's command, hands back, keeps its hands off in
evaluation episodes, and starts each episode released."""
import numpy as np

from robot_rl.spec import ActionSpec, object_vector, proprio_vector
from robot_rl.teleop.scripted import ScriptedHuman
from robot_rl.teleop.takeover import TakeoverConfig

BOX = ((0.25, -0.35, 0.01), (0.75, 0.35, 0.45))


def obs(ee=(0.45, 0.0, 0.25), cube=(0.5, 0.1, 0.02)):
    return {"proprio": proprio_vector(ee, (0, 1, 0, 0), 0.08), "object": object_vector([(cube, (1, 0, 0, 0))])}


def human(**kw):
    cfg = TakeoverConfig(**{"stuck_steps": 3, "max_takeover_steps": 4, "cooldown_steps": 2, **kw})
    return ScriptedHuman("pick_cube", ActionSpec(), cfg, *BOX, noise=0.0, seed=0)


def test_steps_in_when_stuck_drives_then_hands_back():
    h = human()
    answers = [h.answer(obs(), episode=0, evaluating=False) for _ in range(10)]  # the arm never moves
    engaged = [a.engaged for a in answers]
    assert engaged[:3] == [False] * 3 and any(engaged), engaged
    first = engaged.index(True)
    assert answers[first].events == ["takeover"]
    assert np.linalg.norm(answers[first].twist[:3]) > 0, "the expert's command while engaged"
    assert not answers[first - 1].twist.any() and answers[first - 1].grip == -1.0, "released: zero, open"
    assert "release" in sum((a.events for a in answers[first + 1:]), [])


def test_hands_off_in_evaluation_and_released_at_a_new_episode():
    h = human()
    for _ in range(3):
        a = h.answer(obs(), episode=0, evaluating=True)
    assert not a.engaged and a.events == []
    h = human()
    while not h.answer(obs(), episode=0, evaluating=False).engaged:
        pass
    a = h.answer(obs(), episode=1, evaluating=False)
    assert "release" in a.events and not a.engaged
