"""Twin alignment check: a real camera frame blended with the twin's render of the cell from the
calibrated camera, and one figure for how well they line up.

Figure: mean edge distance in pixels. Canny edges of both images; for every edge pixel of the
render, the distance to the nearest edge pixel of the real frame (distance transform), capped at
`cap_px` so one twin edge with no real counterpart (an object that is not there) counts as a
bounded miss; the mean over the render's edges. Render -> real, not both ways: the real frame
holds clutter the twin does not model, and that must not count against the calibration.
A well-placed camera scores ~1 px; a camera 2 cm / 2 deg off scores several times that.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from robot_rl.calibration.board import CalibrationError, to_gray


@dataclass
class EdgeFigure:
    mean_px: float
    median_px: float
    n_render_edges: int
    n_real_edges: int
    cap_px: float

    def __str__(self):
        return (f"mean edge distance {self.mean_px:.2f} px (median {self.median_px:.2f}, capped at "
                f"{self.cap_px:g}; {self.n_render_edges} twin edge pixels, {self.n_real_edges} real)")


def edges(image: np.ndarray, low: int = 50, high: int = 150) -> np.ndarray:
    gray = cv2.GaussianBlur(to_gray(image), (5, 5), 0)  # sensor noise and aliasing make no edges
    return cv2.Canny(gray, low, high) > 0


def edge_distance(real: np.ndarray, render: np.ndarray, cap_px: float = 40.0) -> EdgeFigure:
    if real.shape[:2] != render.shape[:2]:
        raise CalibrationError(f"frame is {real.shape[1]}x{real.shape[0]} but the render is "
                               f"{render.shape[1]}x{render.shape[0]}")
    e_real, e_render = edges(real), edges(render)
    if not e_real.any():
        raise CalibrationError("the real frame has no edges (blank, black or out of focus?)")
    if not e_render.any():
        raise CalibrationError("the twin's render has no edges: is the camera looking at the cell?")
    dist = cv2.distanceTransform((~e_real).astype(np.uint8), cv2.DIST_L2, 5)
    d = np.minimum(dist[e_render], cap_px)
    return EdgeFigure(float(d.mean()), float(np.median(d)), int(e_render.sum()), int(e_real.sum()), cap_px)


def blend(real: np.ndarray, render: np.ndarray, figure: EdgeFigure | None = None) -> np.ndarray:
    """RGB image: half real, half twin, with the twin's edges in magenta on top, so an offset
    shows as doubled outlines; the figure written in the corner."""
    out = (0.5 * real.astype(np.float32) + 0.5 * render.astype(np.float32)).astype(np.uint8)
    out[edges(render)] = (255, 0, 255)
    if figure is not None:
        text = f"edge distance {figure.mean_px:.2f} px"
        cv2.putText(out, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def render_twin(cell_path, camera: str, width: int, height: int, joints=None, seed: int = 0,
                twin_config: dict | None = None) -> np.ndarray:
    """The twin's render of `camera` (placed from the cell YAML, as the twin always places it) at
    width x height, with the arm at `joints` (arm joint positions, rad; default: home) and the
    task objects where reset(seed) puts them."""
    import mujoco

    from robot_rl.calibration.cell import load_cell
    from robot_rl.twin.config import TwinConfig
    from robot_rl.twin.env import TwinEnv

    try:
        cam = load_cell(cell_path).camera(camera)
    except (OSError, KeyError, ValueError) as e:
        raise CalibrationError(f"cell {cell_path}: {e}") from None
    if abs(width / height - cam.width / cam.height) > 0.01:
        raise CalibrationError(f"frame is {width}x{height} but camera {camera!r} is calibrated at "
                               f"{cam.width}x{cam.height}: a different aspect ratio is a different camera mode")
    cfg = TwinConfig.from_dict({**(twin_config or {}), "cell": str(cell_path), "image_size": (height, width),
                                "cameras": (camera,)})
    env = TwinEnv(cfg)
    try:
        env.reset(seed=seed)
        q = np.asarray(cfg.robot.home_qpos if joints is None else joints, np.float64)
        if q.shape != (len(env.arm_qpos),):
            raise CalibrationError(f"joints: the arm has {len(env.arm_qpos)} joints, got {q.size} values")
        env.data.qpos[env.arm_qpos] = q
        mujoco.mj_forward(env.model, env.data)
        return env.render(camera)
    finally:
        env.close()


def overlay(frame: np.ndarray, cell_path, camera: str, joints=None, seed: int = 0,
            twin_config: dict | None = None) -> tuple:
    """(blended RGB image, EdgeFigure, the twin's render) for a real RGB frame."""
    h, w = frame.shape[:2]
    render = render_twin(cell_path, camera, w, h, joints, seed, twin_config)
    fig = edge_distance(frame, render)
    return blend(frame, render, fig), fig, render


def write_rgb(path, image: np.ndarray) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1])):
        raise CalibrationError(f"cannot write {path} (an image suffix such as .png?)")
