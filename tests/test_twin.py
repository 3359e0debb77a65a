"""The twin env: gymnasium contract, accessors, experts, determinism (state-only, fast)."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco's first import, for the render tests

import numpy as np  # noqa: E402
import pytest  # noqa: E402

gym = pytest.importorskip("gymnasium")
pytest.importorskip("mujoco")

from robot_rl.spec import ObsSpec, object_vector, proprio_vector  # noqa: E402
from robot_rl.twin import TwinConfig, make_env, make_expert  # noqa: E402


def run_expert(env, expert, seed, max_steps=200):
    obs, info = env.reset(seed=seed)
    expert.reset()
    actions, rewards = [], []
    for _ in range(max_steps):
        a = expert.act(obs)
        actions.append(a)
        obs, r, term, trunc, info = env.step(a)
        rewards.append(r)
        if term or trunc:
            break
    return info["success"], np.array(actions), np.array(rewards), obs


@pytest.mark.parametrize("task", ["pick_cube", "peg_insert"])
def test_env_checker_passes(task):
    from gymnasium.utils.env_checker import check_env

    env = make_env(task)
    check_env(env, skip_render_check=True)
    env.close()


def test_state_only_env_never_renders():
    env = make_env("pick_cube", cameras=())
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.zeros(4, np.float32))
    assert env.renderer._renderer is None  # no GL context was ever made


def test_observation_layout_follows_spec():
    env = make_env("peg_insert")
    obs, info = env.reset(seed=3)
    assert set(obs) == {"proprio", "object"}
    assert obs["proprio"].dtype == np.float32 and obs["proprio"].shape == (8,)
    assert obs["object"].shape == (14,)
    ObsSpec.from_space(env.observation_space).check(obs)
    assert isinstance(info["success"], bool)


def test_observation_is_rebuilt_from_accessors():
    """The actor node rebuilds the observation from robot_state/object_poses messages."""
    env = make_env("pick_cube")
    obs, _ = env.reset(seed=1)
    obs, *_ = env.step(np.array([0.5, -0.3, -0.2, 1.0], np.float32))
    s = env.robot_state()
    np.testing.assert_array_equal(obs["proprio"], proprio_vector(s["ee_pos"], s["ee_quat"], s["gripper_width"]))
    poses = env.object_poses()
    assert [n for n, _, _ in poses] == ["cube"]
    np.testing.assert_array_equal(obs["object"], object_vector((p, q) for _, p, q in poses))
    assert len(s["joint_names"]) == len(s["joint_pos"]) == len(s["joint_vel"]) == 9
    t = env.sim_time
    env.step(np.zeros(4, np.float32))
    assert env.sim_time == pytest.approx(t + env.control_dt)
    env.reset(seed=2)
    assert env.sim_time > t  # monotonic across resets: it is the /clock of the sim graph


def test_action_moves_ee_in_commanded_direction_and_keeps_it_pointing_down():
    env = make_env("pick_cube")
    obs, _ = env.reset(seed=0)
    p0 = obs["proprio"][:3].copy()
    for _ in range(5):
        obs, *_ = env.step(np.array([1.0, 0.0, 0.0, -1.0], np.float32))
    moved = obs["proprio"][:3] - p0
    # 5 steps at 0.2 m/s for 0.1 s: ~0.1 m along +x (servo lag allowed), little elsewhere
    assert 0.07 < moved[0] < 0.11, moved
    assert np.all(np.abs(moved[1:]) < 0.01), moved
    # ee z axis points down: quaternion of R = diag(1, -1, -1) is (0, 1, 0, 0)
    assert abs(abs(obs["proprio"][4]) - 1.0) < 1e-3


def test_workspace_box_clips_the_target():
    env = make_env("pick_cube", workspace_max=(0.75, 0.35, 0.2))
    obs, _ = env.reset(seed=0)
    for _ in range(15):
        obs, *_ = env.step(np.array([0.0, 0.0, 1.0, -1.0], np.float32))
    assert obs["proprio"][2] <= 0.2 + 0.003


def test_gripper_closes_and_opens():
    env = make_env("pick_cube")
    env.reset(seed=0)
    assert env.robot_state()["gripper_width"] == pytest.approx(0.08, abs=1e-3)
    for _ in range(5):
        env.step(np.array([0, 0, 0, 1.0], np.float32))
    assert env.robot_state()["gripper_width"] < 0.002
    for _ in range(5):
        env.step(np.array([0, 0, 0, -1.0], np.float32))
    assert env.robot_state()["gripper_width"] > 0.078


@pytest.mark.parametrize("task", ["pick_cube", "peg_insert"])
def test_expert_succeeds_quick(task):
    env = make_env(task)
    expert = make_expert(task, noise=0.1, seed=0)
    wins = sum(run_expert(env, expert, seed)[0] for seed in range(10))
    assert wins >= 9, f"{task}: expert succeeded {wins}/10"


@pytest.mark.slow
@pytest.mark.parametrize("task,noise,params", [
    ("pick_cube", 0.0, {}), ("pick_cube", 0.1, {}), ("peg_insert", 0.0, {}), ("peg_insert", 0.1, {}),
    ("peg_insert", 0.0, {"peg_start": "table"}),
])
def test_expert_succeeds_95_percent(task, noise, params):
    env = make_env(task, task_params=params)
    expert = make_expert(task, noise=noise, seed=1, task_params=params)
    wins = sum(run_expert(env, expert, 1000 + seed)[0] for seed in range(50))
    assert wins >= 48, f"{task} noise {noise}: {wins}/50"


def test_sparse_reward_and_termination_on_success():
    env = make_env("pick_cube")
    ok, _, rewards, _ = run_expert(env, make_expert("pick_cube"), seed=5)
    assert ok and rewards[-1] == 1.0 and np.all(rewards[:-1] == 0.0)


def test_truncation_at_time_limit():
    env = make_env("pick_cube", max_episode_steps=7)
    env.reset(seed=0)
    for i in range(7):
        _, _, term, trunc, _ = env.step(np.zeros(4, np.float32))
    assert trunc and not term


def test_expert_progress_falls_as_it_works():
    env = make_env("pick_cube")
    expert = make_expert("pick_cube")
    obs, _ = env.reset(seed=2)
    expert.reset()
    start = expert.progress(obs)
    for _ in range(200):
        obs, _, term, trunc, info = env.step(expert.act(obs))
        if term or trunc:
            break
    assert info["success"] and expert.progress(obs) < 0.02 < start


def test_same_seed_same_trajectory():
    def rollout():
        env = make_env("pick_cube")
        expert = make_expert("pick_cube", noise=0.3, seed=7)
        ok, actions, _, obs = run_expert(env, expert, seed=11, max_steps=30)
        return actions, obs["proprio"], obs["object"]

    a1, p1, o1 = rollout()
    a2, p2, o2 = rollout()
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(o1, o2)


def test_different_seeds_place_the_cube_differently():
    env = make_env("pick_cube")
    o1, _ = env.reset(seed=1)
    o2, _ = env.reset(seed=2)
    assert not np.allclose(o1["object"][:3], o2["object"][:3])


def test_bad_config_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="unknown twin keys"):
        TwinConfig.from_dict({"control_hz": 10, "bogus": 1})
    with pytest.raises(ValueError, match="unknown task"):
        make_env("fold_laundry")
    with pytest.raises(KeyError, match="no camera"):
        make_env("pick_cube", cameras=("ceiling",))
    env = make_env("pick_cube")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="expected"):
        env.step(np.zeros(7, np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.array([np.nan, 0, 0, 0], np.float32))


def _dh_flange(q):
    """Franka's published modified-DH table (Craig): flange pose for joint angles q."""
    table = [  # a, d, alpha
        (0.0, 0.333, 0.0), (0.0, 0.0, -np.pi / 2), (0.0, 0.316, np.pi / 2), (0.0825, 0.0, np.pi / 2),
        (-0.0825, 0.384, -np.pi / 2), (0.0, 0.0, np.pi / 2), (0.088, 0.0, np.pi / 2),
    ]

    def link(a, d, alpha, theta):
        ca, sa, ct, st = np.cos(alpha), np.sin(alpha), np.cos(theta), np.sin(theta)
        return np.array([[ct, -st, 0, a], [st * ca, ct * ca, -sa, -d * sa],
                         [st * sa, ct * sa, ca, d * ca], [0, 0, 0, 1]])

    T = np.eye(4)
    for (a, d, alpha), theta in zip(table, q):
        T = T @ link(a, d, alpha, theta)
    return T @ link(0.0, 0.107, 0.0, 0.0)


def test_arm_matches_the_published_panda_kinematics():
    import mujoco

    env = make_env("pick_cube")
    m, d = env.model, env.data
    rng = np.random.default_rng(0)
    lo, hi = m.jnt_range[env.arm_joint_ids].T
    flange = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "flange")
    for _ in range(5):
        q = rng.uniform(lo, hi)
        d.qpos[env.arm_qpos] = q
        mujoco.mj_kinematics(m, d)
        T = _dh_flange(q)
        np.testing.assert_allclose(d.xpos[flange], T[:3, 3], atol=1e-6)
        np.testing.assert_allclose(d.xmat[flange].reshape(3, 3), T[:3, :3], atol=1e-6)
        # TCP: 0.1034 m along the flange z; the hand turned -45 deg about it
        np.testing.assert_allclose(d.site_xpos[env.ee_site], T[:3, 3] + 0.1034 * T[:3, 2], atol=1e-6)
        c, s = np.cos(-np.pi / 4), np.sin(-np.pi / 4)
        np.testing.assert_allclose(d.site_xmat[env.ee_site].reshape(3, 3),
                                   T[:3, :3] @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]), atol=1e-6)
    assert np.allclose(np.degrees(hi[[0, 1, 3, 5]]), [166.0, 101.0, -4.0, 215.0], atol=0.1)
