"""The twin's cameras equal the cell calibration YAML: pose, intrinsics, and where a known 3-D
point shows up in the rendered image (OpenCV projection with K and the extrinsic)."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

mujoco = pytest.importorskip("mujoco")

from robot_rl.calibration import load_cell, look_at, optical_to_mujoco_quat  # noqa: E402
from robot_rl.calibration.cell import mat_to_quat, quat_to_mat  # noqa: E402
from robot_rl.twin import make_env  # noqa: E402
from robot_rl.twin.assets import asset_path  # noqa: E402

CELL = asset_path("calibration", "default_cell.yaml")


def parent_pose(env, parent):
    pose = np.eye(4)
    if parent != "base":
        b = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, parent)
        pose[:3, :3] = env.data.xmat[b].reshape(3, 3)
        pose[:3, 3] = env.data.xpos[b]
    return pose


def test_optical_to_mujoco_flips_y_and_z():
    # Optical frame looking straight down (+z_opt = -z_world), image right = +x world.
    r_opt = np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]], float)
    r_mj = quat_to_mat(optical_to_mujoco_quat(mat_to_quat(r_opt)))
    # A MuJoCo camera looks down its -z and has y up: same view means -z_mj = z_opt, y_mj = -y_opt.
    np.testing.assert_allclose(-r_mj[:, 2], r_opt[:, 2], atol=1e-9)
    np.testing.assert_allclose(r_mj[:, 1], -r_opt[:, 1], atol=1e-9)
    np.testing.assert_allclose(r_mj[:, 0], r_opt[:, 0], atol=1e-9)


def test_look_at_points_optical_z_at_target():
    pose = look_at([1.0, 0.2, 0.5], [0.4, 0.0, 0.0])
    z = pose[:3, 2]
    d = np.array([0.4, 0.0, 0.0]) - [1.0, 0.2, 0.5]
    np.testing.assert_allclose(z, d / np.linalg.norm(d), atol=1e-12)
    assert pose[2, 1] < 0  # image down (optical y) has a downward world component


@pytest.mark.parametrize("name", ["front", "wrist"])
def test_mujoco_camera_pose_and_fovy_equal_the_yaml(name):
    env = make_env("pick_cube", cameras=(name,), seed=0)
    calib = load_cell(CELL).camera(name)
    cam = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, name)
    expected = parent_pose(env, calib.parent) @ calib.extrinsic
    # MuJoCo camera frame = optical frame rotated pi about x
    np.testing.assert_allclose(env.data.cam_xpos[cam], expected[:3, 3], atol=1e-6)
    r_mj = env.data.cam_xmat[cam].reshape(3, 3)
    np.testing.assert_allclose(r_mj @ np.diag([1, -1, -1]), expected[:3, :3], atol=1e-6)
    assert env.model.cam_fovy[cam] == pytest.approx(
        np.degrees(2 * np.arctan(calib.height / (2 * calib.fy))), rel=1e-6)


def test_camera_info_scales_intrinsics_to_the_rendered_size():
    env = make_env("pick_cube", cameras=("front",), image_size=(96, 160))
    calib = load_cell(CELL).camera("front")
    info = env.camera_info("front")
    assert (info["width"], info["height"]) == (160, 96)
    K = info["K"]
    assert K[0, 0] == pytest.approx(calib.fx * 160 / 640)
    assert K[1, 1] == pytest.approx(calib.fy * 96 / 480)
    assert K[0, 2] == pytest.approx((calib.cx + 0.5) * 160 / 640 - 0.5)
    assert info["frame_id"] == calib.frame_id and info["D"].shape == (5,)
    np.testing.assert_array_equal(info["P"][:, :3], K)
    np.testing.assert_array_equal(info["extrinsic"], calib.extrinsic)


def _marker_pixel(env, camera, height, width, point):
    """Centroid of a small emissive sphere drawn at `point`, found by differencing two renders."""
    r = mujoco.Renderer(env.model, height, width)
    try:
        r.update_scene(env.data, camera=camera)
        plain = r.render().astype(int)
        r.update_scene(env.data, camera=camera)
        scn = r.scene
        geom = scn.geoms[scn.ngeom]
        scn.ngeom += 1
        mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_SPHERE, np.array([0.004, 0, 0]),
                            np.asarray(point, float), np.eye(3).ravel(), np.array([0, 1, 0, 1], np.float32))
        geom.emission = 1.0
        marked = r.render().astype(int)
    finally:
        r.close()
    v, u = np.nonzero(np.abs(marked - plain).sum(-1) > 30)
    return None if len(u) == 0 else np.array([u.mean(), v.mean()])


def _project(env, camera, height, width, point):
    calib = env.cell.camera(camera)
    world_from_cam = parent_pose(env, calib.parent) @ calib.extrinsic
    p = np.linalg.inv(world_from_cam) @ np.append(point, 1.0)
    uv = calib.scaled_K(width, height) @ p[:3]
    return uv[:2] / uv[2]


@pytest.mark.parametrize("camera", ["front", "wrist"])
@pytest.mark.parametrize("size", [(128, 128), (96, 160)])
def test_known_point_lands_where_K_and_extrinsic_project_it(camera, size):
    env = make_env("pick_cube", cameras=(camera,), seed=0)
    ee = env.robot_state()["ee_pos"]
    points = {
        "front": [[0.5, 0.0, 0.05], [0.6, 0.2, 0.1], [0.7, -0.1, 0.2], [0.45, 0.15, 0.0]],
        "wrist": [ee + [0.0, 0.0, -0.08], ee + [0.03, 0.02, -0.15], ee + [-0.04, 0.03, -0.12]],
    }[camera]
    checked = 0
    for p in points:
        seen = _marker_pixel(env, camera, *size, p)
        if seen is None:  # hidden behind the arm from this view
            continue
        np.testing.assert_allclose(seen, _project(env, camera, *size, p), atol=0.75)
        checked += 1
    assert checked >= 3


def test_yaml_with_matrix_or_quaternion_extrinsic_and_errors(tmp_path):
    good = tmp_path / "cell.yaml"
    good.write_text(
        "cell: t\ncameras:\n  c:\n    {width: 64, height: 48, fx: 50, fy: 50, cx: 32, cy: 24, parent: base,\n"
        "     extrinsic: {position: [1, 0, 0.5], quaternion_wxyz: [1, 0, 0, 0]}}\n"
    )
    cam = load_cell(good).camera("c")
    np.testing.assert_allclose(cam.extrinsic[:3, 3], [1, 0, 0.5])
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  c: {width: 64, height: 48, fx: 50}\n")
    with pytest.raises(ValueError, match="lacks"):
        load_cell(bad)
    bad.write_text("cameras:\n  c: {width: 64, height: 48, fx: 50, fy: 50, cx: 1, cy: 1, extrinsic: {matrix: [[1, 0], [0, 1]]}}\n")
    with pytest.raises(ValueError, match="4x4"):
        load_cell(bad)


def test_rendered_observation_images():
    env = make_env("pick_cube", cameras=("front", "wrist"), image_size=64, seed=0)
    obs, _ = env.reset(seed=0)
    for name in ("front", "wrist"):
        img = obs[name]
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert img.std() > 5  # not a blank frame
    np.testing.assert_array_equal(env.render("front"), obs["front"])


def test_camera_on_a_site_parent(tmp_path):
    """A hand-eye result given in the ee (TCP) site frame lands at site pose @ extrinsic."""
    cell = tmp_path / "cell.yaml"
    cell.write_text(
        "cameras:\n  wrist:\n    {width: 64, height: 48, fx: 40, fy: 40, cx: 31.5, cy: 23.5, parent: ee,\n"
        "     extrinsic: {position: [0.05, 0.0, -0.08], quaternion_wxyz: [1, 0, 0, 0]}}\n"
    )
    env = make_env("pick_cube", cameras=("wrist",), cell=str(cell), seed=0)
    site = env.ee_site
    pose = np.eye(4)
    pose[:3, :3] = env.data.site_xmat[site].reshape(3, 3)
    pose[:3, 3] = env.data.site_xpos[site]
    expected = pose @ load_cell(cell).camera("wrist").extrinsic
    cam = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, "wrist")
    np.testing.assert_allclose(env.data.cam_xpos[cam], expected[:3, 3], atol=1e-6)
    np.testing.assert_allclose(env.data.cam_xmat[cam].reshape(3, 3) @ np.diag([1, -1, -1]),
                               expected[:3, :3], atol=1e-6)


def test_same_seed_same_images():
    imgs = []
    for _ in range(2):
        env = make_env("pick_cube", cameras=("front", "wrist"), image_size=48, randomize=True)
        obs, _ = env.reset(seed=9)
        obs, *_ = env.step(np.array([0.3, -0.2, -0.4, 1.0], np.float32))
        imgs.append((obs["front"], obs["wrist"]))
        env.close()
    for a, b in zip(*imgs):
        np.testing.assert_array_equal(a, b)


def test_env_checker_with_cameras_and_render_mode():
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    env = gym.make("robot_rl/PickCube-v0", cameras=("front", "wrist"), image_size=32,
                   render_mode="rgb_array").unwrapped
    check_env(env)
    assert env.render().shape == (32, 32, 3)
    env.close()
