"""Calibration boards: definitions, detection with sub-pixel corners, printable/texture images,
and a small MuJoCo scene that renders a board through a camera of known intrinsics and pose.

Board frame (both kinds): origin at the top-left OUTER corner of the square grid as the board is
printed, x to the right along `squares_x`, y down along `squares_y`, z = x cross y, into the
board (away from a camera that sees the printed side). Corner k of the inner grid (row r, col c,
k = r * (squares_x - 1) + c) sits at ((c + 1) * square, (r + 1) * square, 0): the layout OpenCV's
CharucoBoard.getChessboardCorners() uses, so one pose means the same thing for both kinds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml


class CalibrationError(ValueError):
    """Bad input to a calibration (no board, too few views, degenerate motion, ...): the message
    says what is wrong and what to do; the CLI prints it and exits with 2."""


@dataclass(frozen=True)
class Board:
    kind: str  # "checkerboard" | "charuco"
    squares_x: int  # squares along x (columns)
    squares_y: int  # squares along y (rows)
    square: float  # square side, metres
    marker: float = 0.0  # ChArUco marker side, metres
    dictionary: str = "DICT_5X5_100"  # ChArUco ArUco dictionary (cv2.aruco.DICT_*)

    def __post_init__(self):
        if self.kind not in ("checkerboard", "charuco"):
            raise CalibrationError(f"board kind must be 'checkerboard' or 'charuco', got {self.kind!r}")
        if self.squares_x < 3 or self.squares_y < 3 or self.squares_x == self.squares_y and self.kind == "checkerboard":
            # a square checkerboard's corner order is ambiguous under 90 deg turns
            raise CalibrationError(
                f"board {self.squares_x}x{self.squares_y}: needs >= 3 squares per side"
                + (" and a checkerboard needs different counts on x and y" if self.squares_x == self.squares_y else ""))
        if not self.square > 0:
            raise CalibrationError(f"board square size must be > 0 m, got {self.square}")
        if self.kind == "charuco":
            if not 0 < self.marker < self.square:
                raise CalibrationError(f"ChArUco marker size must be in (0, square={self.square}), got {self.marker}")
            if not hasattr(cv2.aruco, self.dictionary):
                raise CalibrationError(f"unknown ArUco dictionary {self.dictionary!r} (e.g. DICT_5X5_100)")

    # ------------------------------------------------------------------ geometry
    @property
    def inner(self) -> tuple:
        """(columns, rows) of inner corners: OpenCV's pattern size."""
        return self.squares_x - 1, self.squares_y - 1

    @property
    def n_corners(self) -> int:
        return (self.squares_x - 1) * (self.squares_y - 1)

    @property
    def size(self) -> tuple:
        """(width, height) of the square grid, metres."""
        return self.squares_x * self.square, self.squares_y * self.square

    @property
    def center(self) -> np.ndarray:
        """Centre of the grid in the board frame."""
        return np.array([self.size[0] / 2, self.size[1] / 2, 0.0])

    def corners(self) -> np.ndarray:
        """(n_corners, 3) float64 board-frame positions of all inner corners, by corner id."""
        cols, rows = self.inner
        c, r = np.meshgrid(np.arange(cols), np.arange(rows))
        return np.stack([(c.ravel() + 1) * self.square, (r.ravel() + 1) * self.square,
                         np.zeros(c.size)], axis=1)

    @property
    def orientation_known(self) -> bool:
        """Whether a detection fixes which way round the board is (needed for poses, i.e. for
        hand-eye). ChArUco always; a checkerboard only when squares_x + squares_y is odd, so its
        two diagonal end squares differ in colour and tell a 180 deg turn apart."""
        return self.kind == "charuco" or (self.squares_x + self.squares_y) % 2 == 1

    def _aruco(self):
        d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square, self.marker, d)

    # ------------------------------------------------------------------ images
    def image(self, px_per_square: int = 100, margin_squares: float = 1.0) -> np.ndarray:
        """uint8 grayscale image of the board with a white margin (a quiet zone the detectors
        need), for printing or as the twin's texture. Square (row 0, col 0) is black."""
        p = int(px_per_square)
        m = int(round(margin_squares * p))
        w, h = self.squares_x * p, self.squares_y * p
        if self.kind == "charuco":
            grid = self._aruco().generateImage((w, h), marginSize=0, borderBits=1)
        else:
            r, c = np.mgrid[0:h, 0:w] // p
            grid = np.where((r + c) % 2 == 0, 0, 255).astype(np.uint8)
        out = np.full((h + 2 * m, w + 2 * m), 255, np.uint8)
        out[m:m + h, m:m + w] = grid
        return out

    def spec_string(self) -> str:
        if self.kind == "charuco":
            return f"charuco:{self.squares_x}x{self.squares_y}:{self.square:g}:{self.marker:g}:{self.dictionary}"
        return f"checkerboard:{self.squares_x}x{self.squares_y}:{self.square:g}"

    # ------------------------------------------------------------------ detection
    def detect(self, image: np.ndarray) -> "Detection | None":
        """Corners of the board in an image (sub-pixel), or None if the board is not found."""
        gray = to_gray(image)
        if self.kind == "charuco":
            return self._detect_charuco(gray)
        return self._detect_checkerboard(gray)

    def _detect_checkerboard(self, gray):
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
        found, pts = cv2.findChessboardCorners(gray, self.inner, flags=flags)
        if not found:
            return None
        cols, rows = self.inner
        grid = pts.reshape(rows, cols, 2)
        # half the corner spacing as the refinement window: wide enough to average the edge,
        # narrow enough never to reach the next corner
        spacing = float(np.median(np.linalg.norm(np.diff(grid, axis=1), axis=2)))
        half = int(np.clip(spacing * 0.4, 2, 11))
        pts = cv2.cornerSubPix(gray, pts, (half, half), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3))
        grid = pts.reshape(rows, cols, 2)
        if self.orientation_known and self._checker_flipped(gray, grid):
            grid = grid[::-1, ::-1]  # OpenCV started from the far corner: a 180 deg turn
        ids = np.arange(self.n_corners)
        return Detection(grid.reshape(-1, 2).astype(np.float32), self.corners()[ids].astype(np.float32), ids)

    @staticmethod
    def _checker_flipped(gray, grid) -> bool:
        """Square (0, 0) is black: sample the outer square diagonal to corner 0 and its white
        neighbour (0, 1); if the first is the brighter, the order starts at the other end."""
        c00, dx, dy = grid[0, 0], grid[0, 1] - grid[0, 0], grid[1, 0] - grid[0, 0]

        def mean_at(p):
            x, y = int(round(p[0])), int(round(p[1]))
            h, w = gray.shape
            x, y = np.clip(x, 1, w - 2), np.clip(y, 1, h - 2)
            return float(gray[y - 1:y + 2, x - 1:x + 2].mean())

        outer = mean_at(c00 - 0.5 * dx - 0.5 * dy)
        neighbour = mean_at(c00 + 0.5 * dx - 0.5 * dy)
        return outer > neighbour

    def _detect_charuco(self, gray):
        detector = cv2.aruco.CharucoDetector(self._aruco())
        ch_corners, ch_ids, _, _ = detector.detectBoard(gray)
        # 6 corners: the fewest that pin down a pose (and calibrateCamera's per-view minimum)
        if ch_ids is None or len(ch_ids) < 6:
            return None
        ids = ch_ids.reshape(-1).astype(int)
        img = ch_corners.reshape(-1, 2).astype(np.float32)
        obj = self.corners()[ids].astype(np.float32)
        if self._collinear(obj):
            return None  # one row of corners fixes no pose
        return Detection(img, obj, ids)

    @staticmethod
    def _collinear(obj) -> bool:
        centred = obj[:, :2] - obj[:, :2].mean(0)
        s = np.linalg.svd(centred, compute_uv=False)
        return s[1] < 1e-6


@dataclass
class Detection:
    image_points: np.ndarray  # (N, 2) float32 pixels
    object_points: np.ndarray  # (N, 3) float32 board frame, metres
    ids: np.ndarray  # (N,) corner ids


def to_gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise CalibrationError(f"images must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # RGB or BGR: the weights barely matter here
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2GRAY)
    raise CalibrationError(f"images must be HxW or HxWx3, got shape {image.shape}")


def parse_board(text: str) -> Board:
    """A board from 'checkerboard:COLSxROWS:SQUARE' or 'charuco:COLSxROWS:SQUARE:MARKER[:DICT]'
    (squares, not inner corners; metres), or from a YAML file with the same fields as Board."""
    p = Path(text)
    if text.endswith((".yaml", ".yml")):
        if not p.is_file():
            raise CalibrationError(f"board file {text} does not exist")
        d = yaml.safe_load(p.read_text()) or {}
        try:
            return Board(**d)
        except TypeError as e:
            raise CalibrationError(f"board file {text}: {e}") from None
    parts = text.split(":")
    usage = ("board spec must be 'checkerboard:COLSxROWS:SQUARE_M' or "
             "'charuco:COLSxROWS:SQUARE_M:MARKER_M[:DICT]' (counts of squares), e.g. charuco:8x6:0.04:0.03")
    try:
        kind = parts[0]
        sx, sy = (int(v) for v in parts[1].lower().split("x"))
        square = float(parts[2])
        if kind == "checkerboard" and len(parts) == 3:
            return Board(kind, sx, sy, square)
        if kind == "charuco" and len(parts) in (4, 5):
            return Board(kind, sx, sy, square, float(parts[3]), *(parts[4:] or []))
    except (IndexError, ValueError) as e:
        if isinstance(e, CalibrationError):
            raise
        raise CalibrationError(f"{usage}; got {text!r}") from None
    raise CalibrationError(f"{usage}; got {text!r}")


# ---------------------------------------------------------------------------- rendered board
class BoardScene:
    """A MuJoCo scene of one textured board and one camera (intrinsics given as a
    CameraCalibration), with a mocap body `flange` that the robot's flange poses drive.

    setup "eye_in_hand": the camera rides on `flange` at cam.extrinsic (optical frame in flange);
    the board is fixed in the world at `board_pose` (board frame in base).
    setup "eye_to_hand": the camera is fixed in the world at cam.extrinsic (in base); the board is
    held by `flange` at `board_pose` (board frame in flange).
    setup "fixed": camera at cam.extrinsic in base, board at board_pose in base (no robot).
    Images are ideal pinhole renders (no distortion), as the twin's are.
    """

    def __init__(self, board: Board, cam, setup: str, board_pose: np.ndarray, px_per_square: int = 64):
        import mujoco

        from robot_rl.calibration.cell import CameraCalibration, mat_to_quat
        from robot_rl.twin.scene import _add_camera  # the twin's own camera placement

        if setup not in ("eye_in_hand", "eye_to_hand", "fixed"):
            raise ValueError(f"setup must be eye_in_hand, eye_to_hand or fixed, got {setup!r}")
        self.board, self.cam, self.setup = board, cam, setup
        spec = mujoco.MjSpec()
        spec.visual.global_.offwidth, spec.visual.global_.offheight = cam.width, cam.height
        spec.visual.quality.shadowsize, spec.visual.quality.offsamples = 0, 0
        # flat, bright lighting: the headlight only, so every square reads as clean black/white
        spec.visual.headlight.ambient = [0.6, 0.6, 0.6]
        spec.visual.headlight.diffuse = [0.4, 0.4, 0.4]
        spec.visual.headlight.specular = [0, 0, 0]
        img = board.image(px_per_square, margin_squares=1.0)
        h, w = img.shape
        tex = spec.add_texture(name="board", type=mujoco.mjtTexture.mjTEXTURE_2D, width=w, height=h, nchannel=3)
        tex.data = np.repeat(img[:, :, None], 3, axis=2).tobytes()
        mat = spec.add_material(name="board")
        mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "board"
        mat.texrepeat = [1, 1]
        mat.texuniform = False
        mat.specular, mat.shininess, mat.reflectance = 0.0, 0.0, 0.0

        flange = spec.worldbody.add_body(name="flange", mocap=True)
        board_parent = flange if setup == "eye_to_hand" else spec.worldbody
        # The plane geom's +z is its visible side and the texture's top row lies at +y: the board
        # frame (y down, z into the board) is the geom frame turned by pi about x.
        geom_in_board = np.eye(4)
        geom_in_board[:3, :3] = np.diag([1.0, -1.0, -1.0])
        geom_in_board[:3, 3] = board.center
        pose = np.asarray(board_pose, np.float64) @ geom_in_board
        margin = board.square  # margin_squares=1.0 above
        board_parent.add_geom(
            name="board", type=mujoco.mjtGeom.mjGEOM_PLANE, material="board",
            size=[board.size[0] / 2 + margin, board.size[1] / 2 + margin, 0.01],
            pos=pose[:3, 3], quat=mat_to_quat(pose[:3, :3]), contype=0, conaffinity=0)
        parent = "flange" if setup == "eye_in_hand" else "base"
        c = CameraCalibration(name="cam", width=cam.width, height=cam.height, fx=cam.fx, fy=cam.fy,
                              cx=cam.cx, cy=cam.cy, parent=parent, extrinsic=np.asarray(cam.extrinsic))
        _add_camera(spec, c)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        self._mujoco = mujoco
        self._renderer = None

    def render(self, flange_pose: np.ndarray | None = None) -> np.ndarray:
        """RGB uint8 (H, W, 3) with the flange at flange_pose (4x4 in base)."""
        from robot_rl.calibration.cell import mat_to_quat
        from robot_rl.twin.rendering import _headless_fallback

        mujoco = self._mujoco
        if flange_pose is not None:
            self.data.mocap_pos[0] = flange_pose[:3, 3]
            self.data.mocap_quat[0] = mat_to_quat(flange_pose[:3, :3])
        mujoco.mj_forward(self.model, self.data)
        if self._renderer is None:
            _headless_fallback()
            self._renderer = mujoco.Renderer(self.model, self.cam.height, self.cam.width)
        self._renderer.update_scene(self.data, camera="cam")
        return self._renderer.render()

    def close(self):
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
