"""Calibration on real MuJoCo renders of a board: a camera of known intrinsics and known pose
(on the flange or fixed in the base), the board fixed or held by a mocap flange driven to
generated robot poses. The calibration must recover what the scene was built from."""
import os
import shutil
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import cv2
import numpy as np
import pytest
import yaml

from robot_rl.calibration.board import Board, BoardScene, CalibrationError, parse_board
from robot_rl.calibration.cell import CameraCalibration, load_cell, look_at
from robot_rl.calibration.commands import main as calibrate_main
from robot_rl.calibration.handeye import calibrate_handeye, check_motion, inv, make_pose, rot_angle_deg, save_poses
from robot_rl.calibration.intrinsics import calibrate_intrinsics, update_cell_camera
from robot_rl.calibration.overlay import overlay, render_twin

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CELL = ROOT / "calibration" / "default_cell.yaml"
CHARUCO = Board("charuco", 8, 6, 0.04, 0.03)
N_POSES = 14


def rand_rot(rng, max_deg):
    v = rng.normal(size=3)
    v /= np.linalg.norm(v)
    return cv2.Rodrigues(v * np.radians(rng.uniform(0.3, 1.0) * max_deg))[0]


def pose_error(A, B):
    """(translation mm, rotation deg) between two 4x4 poses."""
    return 1000 * float(np.linalg.norm(A[:3, 3] - B[:3, 3])), rot_angle_deg(A[:3, :3].T @ B[:3, :3])


def eye_in_hand_poses(rng, X, board_pose, n, board=CHARUCO):
    """Flange poses that put the wrist camera 0.35-0.5 m above the board, looking at it from
    all round with random roll: rotations about every axis."""
    centre = (board_pose @ np.append(board.center, 1))[:3]
    out = {}
    for i in range(n):
        az, el, d = rng.uniform(-np.pi, np.pi), np.radians(rng.uniform(50, 80)), rng.uniform(0.35, 0.5)
        eye = centre + d * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        cam = look_at(eye, centre + rng.normal(scale=0.02, size=3), up=rng.normal(size=3))
        out[f"pose_{i:02d}.png"] = cam @ inv(X)
    return out


def eye_to_hand_poses(rng, cam_pose, board_in_flange, n, board=CHARUCO, max_tilt=30.0):
    """Flange poses that hold the board in front of the fixed camera, tilted up to max_tilt."""
    out = {}
    for i in range(n):
        centre = np.array([0.55, 0.0, 0.22]) + rng.uniform(-1, 1, 3) * [0.08, 0.12, 0.06]
        R = look_at(cam_pose[:3, 3], centre)[:3, :3] @ rand_rot(rng, max_tilt)  # board facing the camera
        T_board = make_pose(R, centre - R @ board.center)
        out[f"pose_{i:02d}.png"] = T_board @ inv(board_in_flange)
    return out


@pytest.fixture(scope="module")
def cell():
    return load_cell(DEFAULT_CELL)


@pytest.fixture(scope="module")
def eih(cell):
    """Eye-in-hand: the default cell's wrist camera on the flange, the board on the table."""
    rng = np.random.default_rng(1)
    cam = cell.camera("wrist")
    W = make_pose(np.diag([1.0, -1.0, -1.0]), [0.35, 0.15, 0.0])  # printed side up
    poses = eye_in_hand_poses(rng, cam.extrinsic, W, N_POSES)
    scene = BoardScene(CHARUCO, cam, "eye_in_hand", W)
    views = [(n, scene.render(T)) for n, T in poses.items()]
    scene.close()
    return dict(cam=cam, poses=poses, views=views, W=W, scene_args=(CHARUCO, cam, "eye_in_hand", W))


@pytest.fixture(scope="module")
def eth(cell):
    """Eye-to-hand: the default cell's front camera fixed in the base, the board on the flange."""
    rng = np.random.default_rng(2)
    cam = cell.camera("front")
    board_in_flange = make_pose(rand_rot(rng, 40), [0.02, -0.03, 0.12])
    poses = eye_to_hand_poses(rng, cam.extrinsic, board_in_flange, N_POSES)
    scene = BoardScene(CHARUCO, cam, "eye_to_hand", board_in_flange)
    views = [(n, scene.render(T)) for n, T in poses.items()]
    scene.close()
    return dict(cam=cam, poses=poses, views=views, W=board_in_flange)


def noisy(poses, rng, mm=1.0, deg=0.2):
    out = {}
    for n, T in poses.items():
        N = make_pose(rand_rot(rng, deg), rng.normal(scale=mm / 1000, size=3))
        out[n] = T @ N
    return out


# ---------------------------------------------------------------------------- boards
@pytest.mark.parametrize("board", [CHARUCO, Board("checkerboard", 8, 7, 0.03)])
def test_detected_corners_land_where_the_pose_projects_them(board):
    """Texture mapping + detection + corner ids agree with the board frame to a fraction of a pixel."""
    W = make_pose(np.diag([1.0, -1.0, -1.0]), [0.25, 0.15, 0.0])
    centre = (W @ np.append(board.center, 1))[:3]
    # looking from the far end of the board, so a checkerboard's order starts at the other corner
    cam = CameraCalibration("c", 640, 480, 600.0, 600.0, 319.5, 239.5,
                            extrinsic=look_at(centre + [0.05, 0.1, 0.5], centre, up=(1, 0, 0)))
    scene = BoardScene(board, cam, "fixed", W)
    img = scene.render()
    scene.close()
    det = board.detect(img)
    assert det is not None and len(det.ids) == board.n_corners
    # the same view upside down: each id must stay on its physical corner (a pose needs that)
    turned = board.detect(np.ascontiguousarray(img[::-1, ::-1]))
    assert np.array_equal(turned.ids, det.ids)
    assert np.abs(turned.image_points - ([639, 479] - det.image_points)).max() < 0.3
    if board.kind == "checkerboard":  # and a grid listed from the far corner is recognised as such
        grid = det.image_points.reshape(board.inner[1], board.inner[0], 2)
        assert not Board._checker_flipped(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), grid)
        assert Board._checker_flipped(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), grid[::-1, ::-1])
    T = inv(cam.extrinsic) @ W
    proj, _ = cv2.projectPoints(det.object_points.astype(np.float64), cv2.Rodrigues(T[:3, :3])[0], T[:3, 3], cam.K, None)
    err = np.linalg.norm(proj.reshape(-1, 2) - det.image_points, axis=1)
    assert err.max() < 0.5, err.max()


def test_board_spec_parsing_and_errors():
    b = parse_board("charuco:8x6:0.04:0.03:DICT_4X4_50")
    assert (b.kind, b.squares_x, b.squares_y, b.square, b.marker, b.dictionary) == ("charuco", 8, 6, 0.04, 0.03, "DICT_4X4_50")
    assert parse_board(b.spec_string()) == b
    for bad, words in [("charuco:8x6:0.04", "board spec"), ("checkerboard:8:0.03", "board spec"),
                       ("charuco:8x6:0.04:0.05", "marker"), ("checkerboard:7x7:0.03", "different counts"),
                       ("charuco:8x6:0.04:0.03:DICT_NOPE", "dictionary")]:
        with pytest.raises(CalibrationError, match=words):
            parse_board(bad)


# ---------------------------------------------------------------------------- intrinsics
def test_intrinsics_recover_focal_length_and_drop_an_outlier(eih):
    cam = eih["cam"]
    # one view through a 15 % longer lens: detected fine, but it fits no common K
    zoomed = CameraCalibration("z", cam.width, cam.height, cam.fx * 1.15, cam.fy * 1.15, cam.cx, cam.cy,
                               parent="flange", extrinsic=cam.extrinsic)
    scene = BoardScene(CHARUCO, zoomed, "eye_in_hand", eih["W"])
    odd = scene.render(eih["poses"]["pose_03.png"])
    scene.close()
    res = calibrate_intrinsics(CHARUCO, eih["views"] + [("zoomed.png", odd)])
    f_err = 100 * max(abs(res.fx / cam.fx - 1), abs(res.fy / cam.fy - 1))
    print(f"\nintrinsics (ChArUco, {len(res.per_view)} views): fx {res.fx:.2f} fy {res.fy:.2f} (true {cam.fx}), "
          f"focal error {f_err:.3f} %, rms {res.rms:.3f} px, dropped {res.dropped}")
    assert f_err < 1.0
    assert abs(res.K[0, 2] - cam.cx) < 3 and abs(res.K[1, 2] - cam.cy) < 3
    assert list(res.dropped) == ["zoomed.png"] and "zoomed.png" not in res.per_view
    assert "zoomed.png" in res.summary()
    assert res.rms < 0.3 and len(res.per_view) == N_POSES

    from robot_rl.codec import camera_info_msg

    msg = camera_info_msg(res.camera_info("wrist_camera_color_optical_frame"), 1.5)
    assert (msg.width, msg.height) == (cam.width, cam.height)
    assert msg.k[0] == pytest.approx(res.fx) and msg.header.frame_id == "wrist_camera_color_optical_frame"


def test_checkerboard_intrinsics(cell):
    board = Board("checkerboard", 8, 7, 0.03)
    rng = np.random.default_rng(3)
    cam = CameraCalibration("c", 640, 480, 600.0, 600.0, 321.0, 238.0,
                            extrinsic=cell.camera("front").extrinsic)
    flange_board = make_pose(np.eye(3), [0, 0, 0.1])
    poses = eye_to_hand_poses(rng, cam.extrinsic, flange_board, 10, board=board, max_tilt=35)
    scene = BoardScene(board, cam, "eye_to_hand", flange_board)
    views = [(n, scene.render(T)) for n, T in poses.items()]
    scene.close()
    res = calibrate_intrinsics(board, views)
    print(f"\nintrinsics (checkerboard, 640x480, {len(res.per_view)} views): fx {res.fx:.2f} fy {res.fy:.2f} "
          f"(true 600), rms {res.rms:.3f} px")
    assert abs(res.fx / 600 - 1) < 0.01 and abs(res.fy / 600 - 1) < 0.01
    assert len(res.per_view) >= 8


# ---------------------------------------------------------------------------- hand-eye
@pytest.mark.parametrize("setup", ["eye_in_hand", "eye_to_hand"])
def test_handeye_recovers_camera_pose_and_noise_grows_residuals(setup, eih, eth):
    data = eih if setup == "eye_in_hand" else eth
    cam = data["cam"]
    intr = calibrate_intrinsics(CHARUCO, data["views"])  # the whole pipeline: K from the same renders
    res = calibrate_handeye(CHARUCO, data["views"], data["poses"], intr.K, intr.D, setup)
    dt, dr = pose_error(res.X, cam.extrinsic)
    wt, wr = pose_error(res.W, data["W"])
    clean = res.stats()
    print(f"\n{setup}: focal error {100 * abs(intr.fx / cam.fx - 1):.3f} %, camera pose error {dt:.3f} mm "
          f"{dr:.4f} deg (board pose {wt:.3f} mm {wr:.4f} deg); residuals {clean['trans_mm_mean']:.3f} mm "
          f"{clean['rot_deg_mean']:.4f} deg {clean['reproj_px_rms']:.3f} px")
    assert res.parent == ("flange" if setup == "eye_in_hand" else "base")
    assert dt < 2.0 and dr < 0.5
    assert wt < 3.0 and wr < 0.5

    res_n = calibrate_handeye(CHARUCO, data["views"], noisy(data["poses"], np.random.default_rng(4)),
                              intr.K, intr.D, setup)
    noisy_s = res_n.stats()
    nt, nr = pose_error(res_n.X, cam.extrinsic)
    print(f"{setup} with robot pose noise (1 mm, 0.2 deg): residuals {noisy_s['trans_mm_mean']:.3f} mm "
          f"{noisy_s['rot_deg_mean']:.4f} deg {noisy_s['reproj_px_rms']:.3f} px; camera pose error {nt:.2f} mm {nr:.3f} deg")
    assert noisy_s["trans_mm_mean"] > 5 * clean["trans_mm_mean"]
    assert noisy_s["rot_deg_mean"] > 2 * clean["rot_deg_mean"]
    assert noisy_s["reproj_px_rms"] > 2 * clean["reproj_px_rms"]
    assert f"{noisy_s['trans_mm_mean']:.2f} mm mean" in res_n.summary()  # reported as measured


def test_degenerate_motion_is_refused(eih):
    cam = eih["cam"]
    base = eih["poses"]["pose_00.png"]
    scene = BoardScene(*eih["scene_args"])
    shifts = [make_pose(np.eye(3), d) for d in ([0, 0, 0], [0.03, 0, 0], [0, 0.03, 0], [0, 0, 0.03], [0.02, 0.02, 0])]
    translated = {f"t{i}.png": make_pose(base[:3, :3], base[:3, 3] + s[:3, 3]) for i, s in enumerate(shifts)}
    about_z = {f"z{i}.png": base @ make_pose(cv2.Rodrigues(np.array([0, 0, np.radians(a)]))[0], [0, 0, 0])
               for i, a in enumerate([0, 15, -15, 30, -30])}
    for poses, words in [(translated, "rotated at most"), (about_z, "nearly one axis")]:
        views = [(n, scene.render(T)) for n, T in poses.items()]
        assert all(CHARUCO.detect(v) is not None for _, v in views)
        with pytest.raises(CalibrationError, match=f"degenerate motion.*{words}.*different axes"):
            calibrate_handeye(CHARUCO, views, poses, cam.K, np.zeros(5), "eye_in_hand")
    scene.close()
    with pytest.raises(CalibrationError, match="too few poses"):
        check_motion(list(eih["poses"].values())[:2])
    check_motion(list(eih["poses"].values()))  # the good set passes


# ---------------------------------------------------------------------------- bad input
def test_bad_input_errors(eih, eth):
    views = eih["views"]
    blank = [(f"away_{i}.png", np.full((480, 640, 3), 90, np.uint8)) for i in range(8)]
    with pytest.raises(CalibrationError, match="board not found in any of the 8 images"):
        calibrate_intrinsics(CHARUCO, blank)
    with pytest.raises(CalibrationError, match=r"too few views: the board was found in 3 of 7"):
        calibrate_intrinsics(CHARUCO, views[:3] + blank[:4])
    small = (views[5][0], cv2.resize(views[5][1], (320, 240)))
    with pytest.raises(CalibrationError, match=r"image sizes differ: most are 640x480 but pose_05.png is 320x240"):
        calibrate_intrinsics(CHARUCO, views[:5] + [small] + views[6:])
    with pytest.raises(CalibrationError, match="board not found"):
        calibrate_handeye(CHARUCO, blank, {n: np.eye(4) for n, _ in blank}, eih["cam"].K, np.zeros(5), "eye_in_hand")
    with pytest.raises(CalibrationError, match="no robot pose for 1 image"):
        calibrate_handeye(CHARUCO, views, {n: T for n, T in list(eih["poses"].items())[1:]}, eih["cam"].K,
                          np.zeros(5), "eye_in_hand")
    with pytest.raises(CalibrationError, match="180 deg"):
        calibrate_handeye(Board("checkerboard", 8, 6, 0.03), views, eih["poses"], eih["cam"].K, np.zeros(5),
                          "eye_in_hand")


def test_poses_files_yaml_and_csv(tmp_path, eih):
    from robot_rl.calibration.handeye import load_poses
    from robot_rl.calibration.cell import mat_to_quat

    poses = dict(list(eih["poses"].items())[:3])
    save_poses(tmp_path / "p.yaml", poses)
    rows = ["image,x,y,z,qw,qx,qy,qz"] + [
        ",".join([n] + [f"{v:.9f}" for v in (*T[:3, 3], *mat_to_quat(T[:3, :3]))]) for n, T in poses.items()]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    for f in ("p.yaml", "p.csv"):
        got = load_poses(tmp_path / f)
        assert list(got) == list(poses)
        assert all(np.allclose(got[n], poses[n], atol=1e-6) for n in poses)
    (tmp_path / "bad.csv").write_text("image,x,y\na.png,1,2\n")
    with pytest.raises(CalibrationError, match="needs the header"):
        load_poses(tmp_path / "bad.csv")


# ---------------------------------------------------------------------------- cell YAML
def test_update_cell_camera_keeps_the_rest_of_the_file(tmp_path):
    path = tmp_path / "cell.yaml"
    shutil.copy(DEFAULT_CELL, path)
    before = path.read_text()
    E = look_at([1.0, 0.1, 0.6], [0.5, 0.0, 0.0])
    update_cell_camera(path, "front", dict(fx=600.5, fy=601.25, cx=321.0, cy=239.0, extrinsic=E, parent="base"))
    after = path.read_text()
    cell, old = load_cell(path), load_cell(DEFAULT_CELL)
    front = cell.camera("front")
    assert (front.fx, front.fy, front.cx, front.cy) == (600.5, 601.25, 321.0, 239.0)
    assert np.allclose(front.extrinsic, E, atol=1e-5)
    assert front.frame_id == old.camera("front").frame_id and front.distortion == old.camera("front").distortion
    assert np.array_equal(cell.camera("wrist").extrinsic, old.camera("wrist").extrinsic)
    # comments and the other camera stay as written, line for line
    assert before.split("cameras:")[0] == after.split("cameras:")[0]
    assert before.split("  wrist:")[1] == after.split("  wrist:")[1]
    update_cell_camera(path, "side", dict(width=320, height=240, fx=300, fy=300, cx=160, cy=120,
                                          parent="base", extrinsic=np.eye(4)))
    assert set(load_cell(path).cameras) == {"front", "wrist", "side"}


# ---------------------------------------------------------------------------- CLI end to end + overlay
def _write_views(folder, views):
    folder.mkdir()
    for n, img in views:
        cv2.imwrite(str(folder / n), img[:, :, ::-1])


def test_cli_calibrates_a_cell_and_overlay_shows_a_misplaced_camera(tmp_path, eth, capsys):
    """intrinsics -> handeye (eye-to-hand, front camera) -> overlay, through the command functions;
    then a camera 2 cm / 2 deg off scores a clearly larger edge distance."""
    cam = eth["cam"]
    imgs = tmp_path / "front"
    _write_views(imgs, eth["views"])
    save_poses(tmp_path / "poses.yaml", eth["poses"])
    cell = tmp_path / "cell.yaml"
    shutil.copy(DEFAULT_CELL, cell)
    update_cell_camera(cell, "front", dict(fx=500.0, fy=500.0, extrinsic=np.eye(4)))  # wrong on purpose
    board = CHARUCO.spec_string()
    assert calibrate_main(["intrinsics", str(imgs), "--board", board, "--camera", "front", "--cell", str(cell)]) == 0
    out = capsys.readouterr().out
    assert f"[{N_POSES}/{N_POSES}] pose_13.png" in out and "views used" in out
    assert calibrate_main(["handeye", str(imgs), "--poses", str(tmp_path / "poses.yaml"), "--setup", "eye-to-hand",
                           "--board", board, "--camera", "front", "--cell", str(cell)]) == 0
    out = capsys.readouterr().out
    assert "residuals over 14 poses" in out and "parent base" in out
    got = load_cell(cell).camera("front")
    assert abs(got.fx / cam.fx - 1) < 0.01
    dt, dr = pose_error(got.extrinsic, cam.extrinsic)
    assert dt < 2.0 and dr < 0.5

    # the "real" frame: the twin rendered from the true cell; overlays from calibrated and misplaced cells
    real = render_twin(DEFAULT_CELL, "front", 320, 240)
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), real[:, :, ::-1])
    assert calibrate_main(["overlay", str(frame), "--cell", str(cell), "--camera", "front"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "frame_overlay.png").is_file() and "mean edge distance" in out
    _, fig_good, _ = overlay(real, cell, "front")
    bad = tmp_path / "bad.yaml"
    shutil.copy(cell, bad)
    E = got.extrinsic.copy()
    E[:3, :3] = E[:3, :3] @ cv2.Rodrigues(np.radians([0.0, 2.0, 0.0]).reshape(3, 1))[0]
    E[:3, 3] += [0.0, 0.02, 0.0]
    update_cell_camera(bad, "front", dict(extrinsic=E))
    blended, fig_bad, _ = overlay(real, bad, "front")
    print(f"\noverlay: calibrated camera {fig_good}; 2 cm / 2 deg off {fig_bad}")
    assert fig_good.mean_px < 1.0
    assert fig_bad.mean_px > 3.0 and fig_bad.mean_px > 4 * fig_good.mean_px
    assert blended.shape == real.shape


def test_cli_user_errors_exit_2(tmp_path, eih, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cell = tmp_path / "cell.yaml"
    shutil.copy(DEFAULT_CELL, cell)
    board = CHARUCO.spec_string()
    cases = [
        (["intrinsics", str(empty), "--board", board, "--camera", "front", "--cell", str(cell)], "holds no images"),
        (["intrinsics", str(tmp_path / "nope"), "--board", board, "--camera", "front", "--cell", str(cell)],
         "is not a folder"),
        (["intrinsics", str(empty), "--board", "charuco:8x6", "--camera", "front", "--cell", str(cell)], "board spec"),
    ]
    blanks = tmp_path / "blank"
    _write_views(blanks, [(f"b{i}.png", np.full((480, 640, 3), 50, np.uint8)) for i in range(6)])
    cases.append((["intrinsics", str(blanks), "--board", board, "--camera", "front", "--cell", str(cell)],
                  "board not found in any of the 6 images"))
    imgs = tmp_path / "wrist"
    _write_views(imgs, eih["views"][:5])
    (tmp_path / "poses.yaml").write_text("poses: 3\n")
    cases.append((["handeye", str(imgs), "--poses", str(tmp_path / "poses.yaml"), "--setup", "eye-in-hand",
                   "--board", board, "--camera", "wrist", "--cell", str(cell)], "expected `poses:`"))
    cases.append((["handeye", str(imgs), "--poses", str(tmp_path / "poses.yaml"), "--setup", "eye-in-hand",
                   "--board", board, "--camera", "nope", "--cell", str(cell)], "has no camera 'nope'"))
    cases.append((["overlay", str(tmp_path / "missing.png"), "--cell", str(cell), "--camera", "front"],
                  "no such image file"))
    for argv, words in cases:
        assert calibrate_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, (argv, err)
    assert yaml.safe_load(cell.read_text()) == yaml.safe_load(DEFAULT_CELL.read_text())  # nothing written
