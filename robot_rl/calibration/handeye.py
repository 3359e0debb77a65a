"""Hand-eye calibration: where a camera sits relative to the robot, from board views + flange poses.

Both set-ups reduce to one equation per view i, with P_i a robot pose and C_i = T_cam_board_i the
board pose the camera sees (solvePnP):
    eye_in_hand (camera on the flange, board fixed in the world):
        T_base_flange_i  @ X @ C_i = W     X = T_flange_cam,  W = T_base_board
    eye_to_hand (camera fixed in the base frame, board held by the flange):
        T_flange_base_i  @ X @ C_i = W     X = T_base_cam,    W = T_flange_board
(the second is the first with the robot poses inverted, as OpenCV's docs suggest). X is found in
closed form (cv2.calibrateHandEye, Park's method; a NumPy equivalent where the OpenCV build lacks
it: the 5.0.0 wheels do, opencv/opencv#29565), then X and W are refined together by minimising the
reprojection error of all board corners, the robot poses taken as exact.

Residuals per view: how far the board pose that view implies (P_i X C_i) lies from the common W,
at the board centre in mm and in degrees; and the view's reprojection RMS in pixels. They are
~0 for a perfect robot and camera and grow with errors in either.
"""
from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import yaml

from robot_rl.calibration.board import Board, CalibrationError
from robot_rl.calibration.cell import mat_to_quat, quat_to_mat

SETUPS = ("eye_in_hand", "eye_to_hand")
MIN_POSES = 3  # the fewest that fix X (two independent relative motions)
RECOMMENDED_POSES = 12
MIN_ROTATION_DEG = 10.0  # the largest relative rotation between two poses must reach this
MIN_SPREAD_DEG = 3.0  # rotation (rms) about the second-best axis: rotations about one axis fix
                      # nothing along it (the translation along it is unobservable)


@dataclass
class HandEyeResult:
    setup: str
    X: np.ndarray  # camera optical frame in `parent`
    parent: str  # "flange" | "base"
    W: np.ndarray  # board frame in base (eye_in_hand) or in flange (eye_to_hand)
    per_pose: dict  # name -> dict(trans_mm, rot_deg, reproj_px)
    warnings: list = field(default_factory=list)

    def stats(self) -> dict:
        t = np.array([v["trans_mm"] for v in self.per_pose.values()])
        r = np.array([v["rot_deg"] for v in self.per_pose.values()])
        p = np.array([v["reproj_px"] for v in self.per_pose.values()])
        return dict(trans_mm_mean=float(t.mean()), trans_mm_max=float(t.max()), rot_deg_mean=float(r.mean()),
                    rot_deg_max=float(r.max()), reproj_px_rms=float(np.sqrt(np.mean(p ** 2))), n=len(t))

    def summary(self) -> str:
        s = self.stats()
        q = mat_to_quat(self.X[:3, :3])
        lines = [
            f"{self.setup}: camera optical frame in `{self.parent}`: position {np.round(self.X[:3, 3], 5).tolist()} m, "
            f"quaternion_wxyz {np.round(q, 6).tolist()}",
            f"residuals over {s['n']} poses: board position {s['trans_mm_mean']:.2f} mm mean / {s['trans_mm_max']:.2f} max, "
            f"rotation {s['rot_deg_mean']:.3f} deg mean / {s['rot_deg_max']:.3f} max, reprojection {s['reproj_px_rms']:.3f} px rms",
        ]
        worst = sorted(self.per_pose.items(), key=lambda kv: -kv[1]["trans_mm"])[:3]
        lines.append("worst poses: " + ", ".join(f"{n} ({v['trans_mm']:.2f} mm, {v['rot_deg']:.3f} deg, "
                                                 f"{v['reproj_px']:.2f} px)" for n, v in worst))
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# ---------------------------------------------------------------------------- small SE(3) helpers
def make_pose(R, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, np.asarray(t).reshape(3)
    return T


def inv(T) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    return make_pose(R.T, -R.T @ t)


def rot_angle_deg(R) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def rotvec(R) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(R, np.float64))[0].reshape(3)


def exp_pose(delta) -> np.ndarray:
    return make_pose(cv2.Rodrigues(np.asarray(delta[:3], np.float64).reshape(3, 1))[0], delta[3:])


# ---------------------------------------------------------------------------- robot poses file
def load_poses(path) -> dict:
    """Flange poses in the base frame, by image file name, from YAML or CSV.

    YAML:  poses: {img_000.png: {position: [x, y, z], quaternion_wxyz: [w, x, y, z]}, ...}
           (or `matrix: 4x4` per pose, or a list of {image: ..., position/quaternion_wxyz})
    CSV:   image,x,y,z,qw,qx,qy,qz   (header row; metres)
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"poses file {path} does not exist")
    out = {}
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        need = ["image", "x", "y", "z", "qw", "qx", "qy", "qz"]
        if not rows or any(k not in rows[0] for k in need):
            raise CalibrationError(f"{path}: a CSV of flange poses needs the header {','.join(need)}")
        for n, r in enumerate(rows, start=2):
            try:
                out[r["image"]] = make_pose(quat_to_mat([float(r[k]) for k in ("qw", "qx", "qy", "qz")]),
                                            [float(r[k]) for k in ("x", "y", "z")])
            except (TypeError, ValueError):
                raise CalibrationError(f"{path} line {n}: not numbers: {r}") from None
        return out
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CalibrationError(f"{path}: not valid YAML ({e})") from None
    entries = raw.get("poses") if isinstance(raw, dict) else None
    if isinstance(entries, list):
        entries = {e.get("image"): e for e in entries if isinstance(e, dict)}
    if not isinstance(entries, dict) or not entries:
        raise CalibrationError(f"{path}: expected `poses:` mapping image name -> {{position, quaternion_wxyz}}")
    for name, e in entries.items():
        try:
            if "matrix" in e:
                T = np.asarray(e["matrix"], np.float64).reshape(4, 4)
            else:
                T = make_pose(quat_to_mat(e["quaternion_wxyz"]), np.asarray(e["position"], np.float64))
        except (KeyError, TypeError, ValueError):
            raise CalibrationError(f"{path}: pose of {name!r} needs position + quaternion_wxyz (or matrix 4x4)") from None
        if not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-4):
            raise CalibrationError(f"{path}: pose of {name!r}: rotation is not orthonormal")
        out[str(name)] = T
    return out


def save_poses(path, poses: dict) -> None:
    """Write flange poses (name -> 4x4 in base) in the YAML layout load_poses reads."""
    data = {"frame": "base", "poses": {n: {"position": [float(v) for v in T[:3, 3]],
                                           "quaternion_wxyz": [float(v) for v in mat_to_quat(T[:3, :3])]}
                                       for n, T in poses.items()}}
    Path(path).write_text("# flange pose in the robot base frame when each image was taken\n"
                          + yaml.safe_dump(data, sort_keys=False))


# ---------------------------------------------------------------------------- checks
def check_motion(robot_poses: list) -> dict:
    """Raise CalibrationError if the flange orientations cannot fix a hand-eye transform:
    fewer than MIN_POSES, too little rotation, or rotations about (nearly) one axis only."""
    n = len(robot_poses)
    if n < MIN_POSES:
        raise CalibrationError(f"too few poses: {n} with the board found, need >= {MIN_POSES} "
                               f"(recommended {RECOMMENDED_POSES}-20)")
    vecs = np.array([rotvec(a[:3, :3].T @ b[:3, :3]) for a, b in itertools.combinations(robot_poses, 2)])
    vecs_deg = np.degrees(vecs)
    max_angle = float(np.linalg.norm(vecs_deg, axis=1).max())
    # sign-free spread: the singular values of the rotation vectors (axis * angle)
    s = np.linalg.svd(vecs_deg, compute_uv=False) / np.sqrt(len(vecs_deg))
    spread = float(s[1]) if len(s) > 1 else 0.0
    if max_angle < MIN_ROTATION_DEG:
        raise CalibrationError(
            f"degenerate motion: the flange rotated at most {max_angle:.1f} deg between poses (need >= "
            f"{MIN_ROTATION_DEG:.0f}); a hand-eye fit needs rotation: tilt the flange 20-30 deg about "
            "different axes (x, y and z of the flange) between poses, not only move it")
    if spread < MIN_SPREAD_DEG:
        raise CalibrationError(
            f"degenerate motion: all rotations are about nearly one axis (rotation about a second axis "
            f"{spread:.1f} deg rms, need >= {MIN_SPREAD_DEG:.0f}); rotate more about different axes "
            "(tilt the flange about its x and y as well as turning it about z)")
    return dict(max_rotation_deg=max_angle, spread_deg=spread)


# ---------------------------------------------------------------------------- solving
def board_pose_in_camera(board: Board, det, K, D) -> np.ndarray:
    """T_cam_board from one detection (planar PnP, then Levenberg-Marquardt refinement)."""
    obj, img = det.object_points.astype(np.float64), det.image_points.astype(np.float64)
    ok, r, t = cv2.solvePnP(obj, img, K, D, flags=cv2.SOLVEPNP_IPPE)
    if not ok:
        raise CalibrationError("solvePnP failed on a detected board")
    r, t = cv2.solvePnPRefineLM(obj, img, K, D, r, t)
    return make_pose(cv2.Rodrigues(r)[0], t)


def solve_axxb(P: list, C: list) -> np.ndarray:
    """X with P_i X C_i = const for all i (closed form: Park & Martin's rotation, least-squares
    translation), over all pairs of views."""
    if hasattr(cv2, "calibrateHandEye"):
        # OpenCV's gripper2base = P_i, target2cam = C_i: it solves the same relation
        R, t = cv2.calibrateHandEye([p[:3, :3] for p in P], [p[:3, 3] for p in P],
                                    [c[:3, :3] for c in C], [c[:3, 3] for c in C],
                                    method=cv2.CALIB_HAND_EYE_PARK)
        return make_pose(R, t)
    # P_j^-1 P_i X = X C_j C_i^-1: A X = X B for every pair
    A = [inv(P[j]) @ P[i] for i, j in itertools.combinations(range(len(P)), 2)]
    B = [C[j] @ inv(C[i]) for i, j in itertools.combinations(range(len(P)), 2)]
    alpha = np.array([rotvec(a[:3, :3]) for a in A])
    beta = np.array([rotvec(b[:3, :3]) for b in B])
    # alpha_k = R_X beta_k: orthogonal Procrustes (Kabsch), weighted by the angles themselves
    U, _, Vt = np.linalg.svd(alpha.T @ beta)
    R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    # (R_A - I) t_X = R_X t_B - t_A
    M = np.concatenate([a[:3, :3] - np.eye(3) for a in A])
    v = np.concatenate([R @ b[:3, 3] - a[:3, 3] for a, b in zip(A, B)])
    t = np.linalg.lstsq(M, v, rcond=None)[0]
    return make_pose(R, t)


def _mean_pose(poses: list) -> np.ndarray:
    R = sum(p[:3, :3] for p in poses)
    U, _, Vt = np.linalg.svd(R)
    return make_pose(U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt, np.mean([p[:3, 3] for p in poses], 0))


def _refine(P, dets, K, D, X, W, iters: int = 30):
    """Levenberg-Marquardt on all corners' reprojection error over X and W (12 parameters,
    numeric Jacobian: a handful of views x ~40 corners is cheap)."""
    Pinv = [inv(p) for p in P]

    def residuals(x_, w_):
        out = []
        for pinv, det in zip(Pinv, dets):
            C = inv(x_) @ pinv @ w_  # T_cam_board predicted
            proj, _ = cv2.projectPoints(det.object_points.astype(np.float64), rotvec(C[:3, :3]), C[:3, 3], K, D)
            out.append((proj.reshape(-1, 2) - det.image_points).ravel())
        return np.concatenate(out)

    def apply(delta):
        return X @ exp_pose(delta[:6]), W @ exp_pose(delta[6:])

    r = residuals(X, W)
    cost, lam, eps = float(r @ r), 1e-3, 1e-7
    for _ in range(iters):
        J = np.empty((r.size, 12))
        for k in range(12):
            d = np.zeros(12)
            d[k] = eps
            J[:, k] = (residuals(*apply(d)) - r) / eps
        H, g = J.T @ J, J.T @ r
        while True:
            step = -np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), g)
            Xn, Wn = apply(step)
            rn = residuals(Xn, Wn)
            if float(rn @ rn) < cost:
                X, W, r, improvement = Xn, Wn, rn, cost - float(rn @ rn)
                cost, lam = float(rn @ rn), max(lam / 10, 1e-9)
                break
            lam *= 10
            if lam > 1e6:
                return X, W
        if improvement < 1e-10 * max(cost, 1e-12):
            break
    return X, W


def calibrate_handeye(board: Board, views, robot_poses: dict, K, D, setup: str,
                      progress: Callable[[str], None] | None = None, refine: bool = True) -> HandEyeResult:
    """views: [(name, RGB image)]; robot_poses: name -> flange pose in base (4x4); K, D: the
    camera's intrinsics (calibrate those first)."""
    if setup not in SETUPS:
        raise CalibrationError(f"setup must be one of {SETUPS}, got {setup!r}")
    if not board.orientation_known:
        raise CalibrationError(
            f"a {board.squares_x}x{board.squares_y} checkerboard looks the same turned 180 deg, so its pose is "
            "ambiguous: use a ChArUco board, or a checkerboard whose square counts sum to an odd number (e.g. 8x7)")
    K, D = np.asarray(K, np.float64), np.asarray(D, np.float64).reshape(-1)
    missing_pose = [n for n, _ in views if n not in robot_poses]
    if missing_pose:
        raise CalibrationError(f"no robot pose for {len(missing_pose)} image(s): {', '.join(missing_pose[:5])}"
                               f"{' ...' if len(missing_pose) > 5 else ''} (the poses file names each image)")
    names, P, C, dets, no_board = [], [], [], [], []
    for i, (name, img) in enumerate(views):
        det = board.detect(img)
        if det is None:
            no_board.append(name)
            if progress:
                progress(f"[{i + 1}/{len(views)}] {name}: board NOT found (pose skipped)")
            continue
        T_cb = board_pose_in_camera(board, det, K, D)
        T_bf = robot_poses[name]
        names.append(name)
        P.append(T_bf if setup == "eye_in_hand" else inv(T_bf))
        C.append(T_cb)
        dets.append(det)
        if progress:
            progress(f"[{i + 1}/{len(views)}] {name}: {len(det.ids)} corners, board at "
                     f"{np.linalg.norm(T_cb[:3, 3]):.3f} m")
    if not names:
        raise CalibrationError(f"board not found in any of the {len(views)} images (looked for {board.spec_string()})")
    motion = check_motion([robot_poses[n] for n in names])
    warnings = []
    if len(names) < RECOMMENDED_POSES:
        warnings.append(f"only {len(names)} poses: {RECOMMENDED_POSES}-20 give a steadier result")
    if no_board:
        warnings.append(f"board not found in {len(no_board)} image(s), skipped: {', '.join(no_board[:8])}")
    X = solve_axxb(P, C)
    W = _mean_pose([p @ X @ c for p, c in zip(P, C)])
    if refine:
        X, W = _refine(P, dets, K, D, X, W)
    per_pose = {}
    centre = np.append(board.center, 1.0)
    for n, p, c, det in zip(names, P, C, dets):
        Wi = p @ X @ c
        Ci = inv(X) @ inv(p) @ W
        proj, _ = cv2.projectPoints(det.object_points.astype(np.float64), rotvec(Ci[:3, :3]), Ci[:3, 3], K, D)
        per_pose[n] = dict(
            trans_mm=float(1000 * np.linalg.norm((Wi @ centre - W @ centre)[:3])),
            rot_deg=rot_angle_deg(W[:3, :3].T @ Wi[:3, :3]),
            reproj_px=float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - det.image_points) ** 2, axis=1)))))
    if progress:
        progress(f"motion: largest rotation between poses {motion['max_rotation_deg']:.0f} deg, "
                 f"second-axis spread {motion['spread_deg']:.1f} deg rms")
    return HandEyeResult(setup, X, "flange" if setup == "eye_in_hand" else "base", W, per_pose, warnings)
