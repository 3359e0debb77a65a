"""Twin features beyond the basic contract: rotation actions, latency, randomisation, vector
envs, gymnasium ids, config from YAML, shaped reward, another arm/base pose through config."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

gym = pytest.importorskip("gymnasium")
mujoco = pytest.importorskip("mujoco")

from robot_rl.twin import ENV_IDS, TwinConfig, make_env, make_expert  # noqa: E402
from robot_rl.twin.assets import asset_path  # noqa: E402

HOLD = np.array([0.0, 0.0, 0.0, -1.0], np.float32)


def yaw_of(quat_wxyz):
    w, x, y, z = quat_wxyz
    return np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def test_rotation_actions_turn_the_gripper_and_keep_the_position():
    env = make_env("pick_cube", rotation=True)
    assert env.action_space.shape == (7,)
    obs, _ = env.reset(seed=0)
    p0, yaw0 = obs["proprio"][:3].copy(), yaw_of(obs["proprio"][3:7])
    for _ in range(5):  # 0.5 rad/s about the base z for 0.5 s
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0.5, -1], np.float32))
    for _ in range(3):
        obs, *_ = env.step(np.zeros(7, np.float32))
    turned = np.angle(np.exp(1j * (yaw_of(obs["proprio"][3:7]) - yaw0)))
    assert abs(abs(turned) - 0.25) < 0.03, turned
    assert np.linalg.norm(obs["proprio"][:3] - p0) < 0.005


@pytest.mark.parametrize("task,params", [("pick_cube", {"yaw_range": 0.785}),
                                         ("peg_insert", {"hole_yaw_range": 0.6})])
def test_7d_experts_turn_the_gripper_onto_rotated_objects(task, params):
    env = make_env(task, rotation=True, task_params=params)
    expert = make_expert(config=env.cfg)
    wins, turned = 0, []
    for seed in range(4):
        obs, _ = env.reset(seed=seed)
        yaw0 = yaw_of(obs["proprio"][3:7])
        expert.reset()
        for _ in range(100):
            a = expert.act(obs)
            assert a.shape == (7,) and a.dtype == np.float32
            obs, _, term, trunc, info = env.step(a)
            if term or trunc:
                break
        wins += info["success"]
        turned.append(abs(np.angle(np.exp(1j * (yaw_of(obs["proprio"][3:7]) - yaw0)))))
    assert wins == 4 and max(turned) > 0.1  # it had to turn to line up


def test_without_rotation_the_orientation_is_held_down():
    env = make_env("pick_cube")
    obs, _ = env.reset(seed=4)
    for a in ([1, 1, -1, 1], [-1, 0.5, 1, -1], [0, -1, 0, 1]):
        for _ in range(4):
            obs, *_ = env.step(np.array(a, np.float32))
        assert abs(obs["proprio"][4]) > 0.999  # still (0, 1, 0, 0) up to sign


@pytest.mark.parametrize("latency", [0, 2])
def test_action_latency_delays_the_effect_by_that_many_steps(latency):
    env = make_env("pick_cube", latency_steps=latency)
    obs, _ = env.reset(seed=0)
    x = [obs["proprio"][0]]
    obs, *_ = env.step(np.array([1.0, 0, 0, -1], np.float32))
    x.append(obs["proprio"][0])
    for _ in range(3):
        obs, *_ = env.step(HOLD)
        x.append(obs["proprio"][0])
    moved = np.diff(x) > 0.005
    assert moved.argmax() == latency, x


def _model_fields(env):
    m = env.model
    return {
        "light": m.light_diffuse.copy(), "light_pos": m.light_pos.copy(), "rgba": m.geom_rgba.copy(),
        "cam_pos": m.cam_pos.copy(), "cam_quat": m.cam_quat.copy(), "mass": m.body_mass.copy(),
        "friction": m.geom_friction.copy(), "gain": m.actuator_gainprm[:, 0].copy(),
        "material": m.geom_matid.copy(),
    }


def test_randomisation_off_changes_nothing():
    env = make_env("pick_cube")
    before = _model_fields(env)
    for seed in range(3):
        env.reset(seed=seed)
        for k, v in _model_fields(env).items():
            np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_randomisation_on_changes_each_thing_it_names_and_is_seeded():
    nominal = _model_fields(make_env("pick_cube"))
    env = make_env("pick_cube", randomize=True)
    env.reset(seed=1)
    drawn = _model_fields(env)
    for k in nominal:
        assert not np.array_equal(drawn[k], nominal[k]), f"randomisation left {k} unchanged"
    cube = env.task.body_ids[0]
    assert drawn["mass"][cube] != nominal["mass"][cube]
    arm_links = [mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, f"link{i}") for i in range(1, 8)]
    np.testing.assert_array_equal(drawn["mass"][arm_links], nominal["mass"][arm_links])
    env.reset(seed=2)
    assert not np.array_equal(_model_fields(env)["rgba"], drawn["rgba"])
    env.reset(seed=1)  # same seed, same cell
    for k, v in _model_fields(env).items():
        np.testing.assert_array_equal(v, drawn[k], err_msg=k)


def test_randomisation_items_switch_off_one_by_one():
    env = make_env("pick_cube", randomize={"enabled": True, "colors": False, "textures": False,
                                           "camera_pos_jitter": 0.0, "camera_rot_jitter": 0.0})
    nominal = _model_fields(make_env("pick_cube"))
    env.reset(seed=3)
    f = _model_fields(env)
    np.testing.assert_array_equal(f["rgba"], nominal["rgba"])
    np.testing.assert_array_equal(f["material"], nominal["material"])
    np.testing.assert_array_equal(f["cam_pos"], nominal["cam_pos"])
    assert not np.array_equal(f["gain"], nominal["gain"])


def test_randomised_images_differ_from_nominal():
    plain = make_env("pick_cube", cameras=("front",), image_size=64)
    rand = make_env("pick_cube", cameras=("front",), image_size=64, randomize=True)
    a, _ = plain.reset(seed=5)
    b, _ = rand.reset(seed=5)
    assert np.abs(a["front"].astype(int) - b["front"].astype(int)).mean() > 5


@pytest.mark.parametrize("task", ["pick_cube", "peg_insert"])
def test_expert_still_succeeds_under_randomisation(task):
    # (caught a real bug: masses changed at run time need mj_setConst, else grasps blow up)
    env = make_env(task, randomize=True)
    expert = make_expert(task, noise=0.1, seed=0)
    wins = 0
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        for _ in range(100):
            obs, _, term, trunc, info = env.step(expert.act(obs))
            if term or trunc:
                break
        wins += info["success"]
    assert wins >= 5


def test_sync_vector_env_runs_and_is_seeded():
    def make():
        return make_env("pick_cube")

    venv = gym.vector.SyncVectorEnv([make, make, make])
    obs, info = venv.reset(seed=[0, 1, 2])
    assert obs["proprio"].shape == (3, 8) and obs["object"].shape == (3, 7)
    for _ in range(3):
        obs, rew, term, trunc, info = venv.step(venv.action_space.sample())
    assert rew.shape == (3,) and info["success"].shape == (3,)
    single = make_env("pick_cube")
    o1, _ = single.reset(seed=1)
    obs2, _ = venv.reset(seed=[0, 1, 2])
    np.testing.assert_array_equal(obs2["object"][1], o1["object"])
    venv.close()


@pytest.mark.parametrize("task", sorted(ENV_IDS))
def test_registered_gymnasium_ids(task):
    env = gym.make(ENV_IDS[task], cameras=())
    obs, info = env.reset(seed=0)
    assert env.unwrapped.cfg.task == task and "success" in info
    env.close()


def test_config_from_a_yaml_twin_section():
    text = """
twin:
  task: peg_insert
  control_hz: 20
  timestep: 0.005
  workspace_min: [0.3, -0.3, 0.02]
  workspace_max: [0.7, 0.3, 0.4]
  max_lin_vel: 0.1
  cameras: [front]
  image_size: [96, 128]
  max_episode_steps: 50
  task_params: {clearance: 0.002}
  randomize: {enabled: true, colors: false}
"""
    cfg = TwinConfig.from_dict(yaml.safe_load(text)["twin"])
    assert cfg.n_substeps == 10 and cfg.control_dt == pytest.approx(0.05)
    assert cfg.image_size == (96, 128) and cfg.cameras == ("front",)
    env = make_env(config=cfg)
    obs, _ = env.reset(seed=0)
    assert obs["front"].shape == (96, 128, 3) and env.max_episode_steps == 50
    assert env.control_dt == pytest.approx(0.05) and env.task.p["clearance"] == 0.002
    with pytest.raises(ValueError, match="unknown task_params"):
        make_env("pick_cube", task_params={"clearence": 0.001})


def test_shaped_reward_rises_towards_the_goal_and_is_one_on_success():
    env = make_env("pick_cube", reward="shaped")
    expert = make_expert("pick_cube")
    obs, _ = env.reset(seed=3)
    expert.reset()
    rewards = []
    for _ in range(100):
        obs, r, term, trunc, info = env.step(expert.act(obs))
        rewards.append(r)
        if term or trunc:
            break
    assert info["success"] and rewards[-1] == 1.0
    assert 0.0 <= min(rewards) and rewards[len(rewards) // 2] > rewards[0]


def test_peg_starting_on_the_table():
    env = make_env("peg_insert", task_params={"peg_start": "table"})
    obs, _ = env.reset(seed=0)
    peg, hole = obs["object"][:3], obs["object"][7:10]
    assert peg[2] == pytest.approx(0.0, abs=2e-3) and np.linalg.norm(peg[:2] - hole[:2]) > 0.1
    assert env.robot_state()["gripper_width"] > 0.07


def test_another_arm_through_config(tmp_path):
    """A lab's own model: different joint/site/actuator names and a base pose from config."""
    src = asset_path("sim", "panda.xml").read_text()
    renamed = src.replace('"joint', '"fr3_joint').replace('name="ee"', 'name="tcp"')
    renamed = renamed.replace('"actuator', '"fr3_act')
    model = tmp_path / "lab_arm.xml"
    model.write_text(renamed)
    robot = dict(model=str(model), ee_site="tcp", base_pos=[0.0, 0.0, 0.05],
                 arm_joints=[f"fr3_joint{i}" for i in range(1, 8)])
    env = make_env("pick_cube", robot=robot)
    obs, _ = env.reset(seed=0)
    assert env.robot_state()["joint_names"][0] == "fr3_joint1"
    link0 = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, "link0")
    assert env.data.xpos[link0][2] == pytest.approx(0.05)
    expert = make_expert("pick_cube")
    expert.reset()
    for _ in range(100):
        obs, _, term, trunc, info = env.step(expert.act(obs))
        if term or trunc:
            break
    assert info["success"]


def _panda_urdf() -> str:
    """A bare URDF (no actuators, no sites) with the Panda's DH kinematics and a two-finger hand."""
    dh = [(0.0, 0.333, 0.0), (0.0, 0.0, -np.pi / 2), (0.0, 0.316, np.pi / 2), (0.0825, 0.0, np.pi / 2),
          (-0.0825, 0.384, -np.pi / 2), (0.0, 0.0, np.pi / 2), (0.088, 0.0, np.pi / 2)]
    limits = [(-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
              (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973)]

    def link(name, mass=1.0, geom='<sphere radius="0.04"/>', origin="0 0 0"):
        collision = f'<collision><origin xyz="{origin}"/><geometry>{geom}</geometry></collision>' if geom else ""
        return (f'<link name="{name}"><inertial><mass value="{mass}"/><inertia ixx="0.01" iyy="0.01" '
                f'izz="0.01" ixy="0" ixz="0" iyz="0"/></inertial>{collision}</link>')

    def joint(name, kind, parent, child, xyz, rpy="0 0 0", axis="0 0 1", limit=None):
        lim = f'<limit lower="{limit[0]}" upper="{limit[1]}" effort="100" velocity="2"/>' if limit else ""
        return (f'<joint name="{name}" type="{kind}"><parent link="{parent}"/><child link="{child}"/>'
                f'<origin xyz="{xyz}" rpy="{rpy}"/><axis xyz="{axis}"/>{lim}</joint>')

    parts = [link("base")]
    for i, ((a, d, alpha), lim) in enumerate(zip(dh, limits), start=1):
        parts.append(link(f"link{i}"))
        xyz = f"{a} {-d * np.sin(alpha):.6f} {d * np.cos(alpha):.6f}"
        parts.append(joint(f"j{i}", "revolute", "base" if i == 1 else f"link{i - 1}", f"link{i}", xyz,
                           rpy=f"{alpha} 0 0", limit=lim))
    pad = '<box size="0.022 0.012 0.054"/>'
    parts += [link("flange", 0.01), joint("flange_fixed", "fixed", "link7", "flange", "0 0 0.107"),
              link("hand", 0.7, '<box size="0.05 0.2 0.054"/>', "0 0 0.03"),
              joint("hand_fixed", "fixed", "flange", "hand", "0 0 0", rpy=f"0 0 {-np.pi / 4}"),
              link("finger_l", 0.02, pad, "0 0.006 0.027"), link("finger_r", 0.02, pad, "0 -0.006 0.027"),
              joint("f1", "prismatic", "hand", "finger_l", "0 0 0.0584", axis="0 1 0", limit=(0, 0.04)),
              joint("f2", "prismatic", "hand", "finger_r", "0 0 0.0584", axis="0 -1 0", limit=(0, 0.04)),
              link("tcp", 0.001, geom=None),  # a frame only
              joint("tcp_fixed", "fixed", "hand", "tcp", "0 0 0.1034")]
    return '<?xml version="1.0"?><robot name="lab_arm">' + "".join(parts) + "</robot>"


def test_a_bare_urdf_arm_gets_servos_and_an_ee_site(tmp_path):
    urdf = tmp_path / "lab_arm.urdf"
    urdf.write_text(_panda_urdf())
    robot = dict(model=str(urdf), ee_site="tcp", arm_joints=[f"j{i}" for i in range(1, 8)],
                 gripper_joints=["f1", "f2"], gripper_actuator="none")
    env = make_env("pick_cube", robot=robot, cameras=("wrist",), image_size=32)
    obs, _ = env.reset(seed=0)
    assert env.model.nu == 9  # 7 arm servos + one per finger, added by the twin
    np.testing.assert_allclose(obs["proprio"][:3], env.cfg.home_ee_pos, atol=0.031)
    assert abs(obs["proprio"][4]) > 0.999  # pointing down
    assert obs["wrist"].std() > 5  # the wrist camera sits on the URDF's flange link
    p0 = obs["proprio"][:3].copy()
    for _ in range(4):
        obs, *_ = env.step(np.array([0.0, 1.0, -0.5, 1.0], np.float32))
    moved = obs["proprio"][:3] - p0
    assert 0.05 < moved[1] < 0.09 and -0.045 < moved[2] < -0.025 and abs(moved[0]) < 0.01, moved
    assert obs["proprio"][7] < 0.005  # closed
    for _ in range(3):
        obs, *_ = env.step(np.array([0, 0, 0, -1.0], np.float32))
    assert obs["proprio"][7] > 0.075  # open
