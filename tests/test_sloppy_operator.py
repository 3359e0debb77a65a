"""The twin's sloppy operator (robot_rl/twin/experts.py SloppyOperator): a hesitant person whose
demos a learned policy can beat. On fixed seeds its episodes mostly succeed and take 2-3x the
expert's steps; it pauses and backs off from grasps; it is selectable wherever demos are made
(robot-rl record / sim / pretrain --operator) and the stores say who made each episode."""
import numpy as np
import pytest

pytest.importorskip("mujoco")

from robot_rl.data.record import expert_episode, step_success  # noqa: E402
from robot_rl.twin import make_env, make_expert  # noqa: E402
from robot_rl.twin.experts import SloppyConfig, SloppyOperator  # noqa: E402

SEEDS = range(10_000, 10_020)  # env seeds, as robot-rl sim's demos (10_000 + seed)
TASKS = ("pick_cube", "peg_insert")


def rollouts(task, operator, seeds=SEEDS, cfg=None):
    """(success, steps, controller-after-episode facts) per seeded episode."""
    env = make_env(task)
    ctrl = make_expert(task, noise=0.1, seed=0, operator=operator)
    if cfg is not None:
        ctrl.cfg = cfg
    out = []
    for seed in seeds:
        n = still = 0
        for obs, action, reward, *_, info in expert_episode(env, ctrl, seed):
            n += 1
            still += not np.any(action[:3])
        out.append((step_success(info, reward), n, still, getattr(ctrl, "back_offs", 0)))
    return out


@pytest.fixture(scope="module", params=TASKS)
def measured(request):
    task = request.param
    return task, rollouts(task, "expert"), rollouts(task, "sloppy")


def test_sloppy_demos_mostly_succeed(measured):
    task, expert, sloppy = measured
    assert np.mean([s for s, *_ in expert]) == 1.0
    rate = np.mean([s for s, *_ in sloppy])
    assert rate >= 0.85, f"{task}: the sloppy operator succeeded in {rate:.0%} of {len(sloppy)} episodes"


def test_sloppy_takes_two_to_three_times_the_experts_steps(measured):
    task, expert, sloppy = measured
    ratio = np.mean([n for _, n, *_ in sloppy]) / np.mean([n for _, n, *_ in expert])
    assert 2.0 <= ratio <= 3.0, f"{task}: sloppy/expert mean episode length {ratio:.2f}"


def test_sloppy_pauses_and_backs_off_the_expert_never_does(measured):
    task, expert, sloppy = measured
    assert not any(still for *_, still, _ in expert) and not any(b for *_, b in expert)
    assert sum(still > 0 for *_, still, _ in sloppy) >= len(sloppy) // 2, "pauses: the hand stops"
    assert sum(b > 0 for *_, b in sloppy) >= len(sloppy) // 4, "back-offs from grasps/insertions"


def test_each_trait_costs_steps():
    """Each of the operator's traits slows it: with none of them it is the expert's plan again."""
    none = SloppyConfig(speed=(1.0, 1.0), tremor=0.0, pause_prob=0.0, back_off_prob=0.0)
    base = np.mean([n for _, n, *_ in rollouts("pick_cube", "sloppy", SEEDS[:8], none)])
    expert = np.mean([n for _, n, *_ in rollouts("pick_cube", "expert", SEEDS[:8])])
    assert abs(base - expert) <= 2, (base, expert)
    for trait in ({"speed": (0.5, 0.5)}, {"pause_prob": 0.1}, {"back_off_prob": 1.0}):
        cfg = SloppyConfig(**{**none.__dict__, **trait})
        n = np.mean([n for _, n, *_ in rollouts("pick_cube", "sloppy", SEEDS[:8], cfg)])
        assert n >= base + 5, f"{trait}: {n:.1f} steps vs {base:.1f} without it"


def test_seeded_and_recognisable():
    env = make_env("pick_cube")

    def actions(seed):
        ctrl = make_expert("pick_cube", noise=0.1, seed=seed, operator="sloppy")
        return np.stack([a for _, a, *_ in expert_episode(env, ctrl, 3)])

    a, b, c = actions(0), actions(0), actions(1)
    assert a.shape == b.shape and np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)
    assert isinstance(make_expert("pick_cube", operator="sloppy"), SloppyOperator)
    with pytest.raises(ValueError, match="operator must be one of"):
        make_expert("pick_cube", operator="clumsy")


def test_record_cli_writes_the_operator_into_episode_meta(tmp_path):
    from robot_rl.cli import main
    from robot_rl.data.store import EpisodeStore

    lengths = {}
    for operator in ("sloppy", "expert"):
        path = tmp_path / f"{operator}.zarr"
        args = ["record", str(path), "--task", "pick_cube", "-n", "3", "--seed", "10000"]
        assert main(args + (["--operator", operator] if operator == "sloppy" else [])) == 0
        with EpisodeStore.open(path, mode="r") as store:
            metas = [store.episode_meta(i) for i in range(3)]
            lengths[operator] = [len(store.episode(i)["action"]) for i in range(3)]
        assert all(m["source"] == "demo" and m["operator"] == operator for m in metas), metas
    assert sum(lengths["sloppy"]) >= 2 * sum(lengths["expert"]), lengths


def test_sim_demos_come_from_the_chosen_operator(tmp_path):
    """robot-rl sim --demos N --operator sloppy records its demos (before the graph starts) with it."""
    from argparse import Namespace

    from robot_rl.cli import _demo_store
    from robot_rl.data.store import EpisodeStore

    args = Namespace(demos="2", task="pick_cube", cameras=None, image_size=64, seed=0, operator="sloppy")
    with EpisodeStore.open(_demo_store(args, tmp_path), mode="r") as store:
        assert [store.episode_meta(i)["operator"] for i in range(store.n_episodes)] == ["sloppy", "sloppy"]


def test_pretrain_demos_come_from_the_chosen_operator(monkeypatch):
    """robot-rl pretrain --operator sloppy: the twin's expert factory is asked for the sloppy one."""
    import robot_rl.twin as twin
    from robot_rl.training import pretrain

    asked = []

    class Stop(Exception):
        pass

    def spy(task, noise=0.0, seed=None, operator="expert", **kw):
        asked.append(operator)
        raise Stop

    monkeypatch.setattr(twin, "make_expert", spy)
    for argv, want in ((["--operator", "sloppy"], "sloppy"), ([], "expert")):
        with pytest.raises(Stop):
            pretrain.main(["--task", "pick_cube", "--env-steps", "1", "--n-demos", "1"] + argv)
        assert asked[-1] == want
