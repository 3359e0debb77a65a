"""Camera intrinsics from views of a calibration board, and writing them into the cell YAML.

Views are named images (a folder of files, or arrays with names). The board is found in each;
cv2.calibrateCamera fits K and the plumb_bob distortion; views whose reprojection RMS is far above
the others' (blur, a mis-detection, a moved board) are dropped by name and the fit is repeated.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import yaml

from robot_rl.calibration.board import Board, CalibrationError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MIN_VIEWS = 6  # calibrateCamera fits 9 parameters + 6 per view: fewer views over-fit badly
RECOMMENDED_VIEWS = 15


@dataclass
class IntrinsicsResult:
    width: int
    height: int
    K: np.ndarray
    D: np.ndarray  # k1 k2 p1 p2 k3
    rms: float  # overall reprojection RMS of the kept views, pixels
    per_view: dict  # name -> RMS pixels (kept views, final fit)
    dropped: dict = field(default_factory=dict)  # name -> RMS pixels in the first fit (outliers)
    no_board: list = field(default_factory=list)  # names of views where the board was not found
    detections: dict = field(default_factory=dict)  # name -> Detection (kept views)

    @property
    def fx(self):
        return float(self.K[0, 0])

    @property
    def fy(self):
        return float(self.K[1, 1])

    def camera_info(self, frame_id: str) -> dict:
        """The dict codec.camera_info_msg takes (sensor_msgs/CameraInfo fields)."""
        return dict(width=self.width, height=self.height, K=self.K.copy(), D=self.D.copy(),
                    distortion_model="plumb_bob", R=np.eye(3),
                    P=np.hstack([self.K, np.zeros((3, 1))]), frame_id=frame_id)

    def summary(self) -> str:
        lines = [f"{len(self.per_view)} views used, RMS {self.rms:.3f} px; fx {self.fx:.2f} fy {self.fy:.2f} "
                 f"cx {self.K[0, 2]:.2f} cy {self.K[1, 2]:.2f}; D {np.round(self.D, 5).tolist()}"]
        if self.dropped:
            lines.append("dropped as outliers: " + ", ".join(f"{n} ({e:.2f} px)" for n, e in self.dropped.items()))
        if self.no_board:
            lines.append("board not found in: " + ", ".join(self.no_board))
        return "\n".join(lines)


def list_images(folder) -> list:
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_image(path) -> np.ndarray:
    """RGB uint8 image from a file (OpenCV reads BGR)."""
    if not Path(path).is_file():
        raise CalibrationError(f"{path}: no such image file")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise CalibrationError(f"{path}: not a readable image")
    return img[:, :, ::-1].copy()


def load_views(source) -> list:
    """[(name, RGB image)] from a folder, a list of files, or a list of (name, array) / arrays."""
    if isinstance(source, (str, Path)):
        return [(p.name, read_image(p)) for p in list_images(source)]
    out = []
    for i, item in enumerate(source):
        if isinstance(item, (str, Path)):
            out.append((Path(item).name, read_image(item)))
        elif isinstance(item, tuple):
            out.append((str(item[0]), np.asarray(item[1])))
        else:
            out.append((f"view_{i:03d}", np.asarray(item)))
    return out


def check_sizes(views) -> tuple:
    """(width, height) shared by all views, or an error naming the ones that differ."""
    sizes = {}
    for name, img in views:
        sizes.setdefault((img.shape[1], img.shape[0]), []).append(name)
    if len(sizes) > 1:
        common = max(sizes, key=lambda s: len(sizes[s]))
        odd = [f"{n} is {w}x{h}" for (w, h), names in sizes.items() if (w, h) != common for n in names]
        raise CalibrationError(
            f"image sizes differ: most are {common[0]}x{common[1]} but {'; '.join(odd[:5])}"
            f"{' ...' if len(odd) > 5 else ''}. Calibrate one camera at one resolution at a time.")
    (w, h), = sizes
    return w, h


def detect_all(board: Board, views, progress: Callable[[str], None] | None = None) -> tuple:
    """({name: Detection}, [names without the board])."""
    found, missing = {}, []
    for i, (name, img) in enumerate(views):
        det = board.detect(img)
        if det is None:
            missing.append(name)
        else:
            found[name] = det
        if progress:
            progress(f"[{i + 1}/{len(views)}] {name}: " + (f"{len(det.ids)} corners" if det else "board NOT found"))
    return found, missing


def _per_view_rms(dets, rvecs, tvecs, K, D) -> list:
    out = []
    for det, r, t in zip(dets, rvecs, tvecs):
        proj, _ = cv2.projectPoints(det.object_points, r, t, K, D)
        out.append(float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - det.image_points) ** 2, axis=1)))))
    return out


def calibrate_intrinsics(board: Board, source, *, min_views: int = MIN_VIEWS, outlier_factor: float = 3.0,
                         outlier_floor_px: float = 0.5, fix_k3: bool = False,
                         progress: Callable[[str], None] | None = None) -> IntrinsicsResult:
    """Calibrate from a folder / list of images. Views with RMS > outlier_factor x the median
    (and > outlier_floor_px: on clean views a 3x of 0.05 px is noise, not an outlier) are
    dropped and the fit repeated."""
    views = load_views(source)
    if not views:
        raise CalibrationError("no images given")
    width, height = check_sizes(views)
    found, missing = detect_all(board, views, progress)
    if not found:
        raise CalibrationError(
            f"board not found in any of the {len(views)} images (looked for {board.spec_string()}): check the "
            "board spec (squares, not inner corners), focus, lighting, and that the whole board is in view")
    if len(found) < min_views:
        raise CalibrationError(
            f"too few views: the board was found in {len(found)} of {len(views)} images, need >= {min_views} "
            f"(recommended {RECOMMENDED_VIEWS}+: board tilted ~30 deg in different directions, near and far, "
            f"covering the corners of the image){'; not found in: ' + ', '.join(missing[:8]) if missing else ''}")
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0

    def fit(names):
        dets = [found[n] for n in names]
        rms, K, D, rvecs, tvecs = cv2.calibrateCamera(
            [d.object_points for d in dets], [d.image_points for d in dets], (width, height), None, None,
            flags=flags, criteria=(cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 100, 1e-9))
        return rms, K, D.reshape(-1)[:5], dict(zip(names, _per_view_rms(dets, rvecs, tvecs, K, D)))

    names = list(found)
    rms, K, D, per_view = fit(names)
    med = float(np.median(list(per_view.values())))
    limit = max(outlier_factor * med, outlier_floor_px)
    dropped = {n: e for n, e in per_view.items() if e > limit}
    if dropped:
        keep = [n for n in names if n not in dropped]
        if len(keep) < min_views:
            raise CalibrationError(
                f"too few good views: {len(dropped)} of {len(names)} views are outliers (> {limit:.2f} px: "
                f"{', '.join(dropped)}), leaving {len(keep)} < {min_views}; retake sharper images")
        if progress:
            progress(f"dropping {len(dropped)} outlier view(s) (> {limit:.2f} px): {', '.join(dropped)}")
        rms, K, D, per_view = fit(keep)
    D = np.concatenate([D, np.zeros(5 - len(D))]) if len(D) < 5 else D
    return IntrinsicsResult(width, height, K, D, float(rms), per_view, dropped, missing,
                            {n: found[n] for n in per_view})


# ---------------------------------------------------------------------------- the cell YAML
def _fmt(v) -> str:
    return f"{float(v):.6f}".rstrip("0").rstrip(".") if abs(float(v)) >= 1e-6 or v == 0 else f"{float(v):.6e}"


def _camera_block_lines(name: str, fields: dict, indent: str) -> list:
    """YAML lines for the given camera fields (scalars, lists, or the extrinsic matrix)."""
    out = []
    for key, value in fields.items():
        if key == "extrinsic":
            from robot_rl.calibration.cell import mat_to_quat

            value = np.asarray(value, np.float64)
            out.append(f"{indent}extrinsic:")
            out.append(f"{indent}  position: [{', '.join(f'{x:.6f}' for x in value[:3, 3])}]")
            out.append(f"{indent}  quaternion_wxyz: [{', '.join(f'{x:.7f}' for x in mat_to_quat(value[:3, :3]))}]")
        elif isinstance(value, (list, tuple, np.ndarray)):
            out.append(f"{indent}{key}: [{', '.join(_fmt(x) for x in value)}]")
        elif isinstance(value, str):
            out.append(f"{indent}{key}: {value}")
        elif isinstance(value, (int, np.integer)):
            out.append(f"{indent}{key}: {int(value)}")
        else:
            out.append(f"{indent}{key}: {_fmt(value)}")
    return out


def update_cell_camera(cell_path, camera: str, fields: dict, cell_name: str | None = None) -> None:
    """Set `fields` of one camera in a cell YAML, keeping everything else in the file as it was
    (other cameras, comments, order): a person reviews this file in a diff. The file is created
    if missing. `fields` may hold width, height, fx, fy, cx, cy, distortion, distortion_model,
    parent, frame_id, extrinsic (4x4). The result is parsed back to check it."""
    from robot_rl.calibration.cell import load_cell

    path = Path(cell_path)
    text = path.read_text() if path.exists() else f"cell: {cell_name or path.stem}\n\ncameras:\n"
    lines = text.splitlines()
    try:
        new = _edit_lines(lines, camera, fields)
    except _NotEditable:
        new = None
    if new is not None:
        out = "\n".join(new) + "\n"
    else:  # a layout the line editor does not know (flow style...): rewrite as plain YAML
        raw = yaml.safe_load(text) or {}
        cam = dict((raw.setdefault("cameras", {}) or {}).get(camera) or {})
        for k, v in fields.items():
            if k == "extrinsic":
                from robot_rl.calibration.cell import mat_to_quat

                v = {"position": np.asarray(v)[:3, 3].tolist(), "quaternion_wxyz": mat_to_quat(np.asarray(v)[:3, :3]).tolist()}
            elif isinstance(v, np.ndarray):
                v = v.tolist()
            cam[k] = v
        raw["cameras"][camera] = cam
        out = yaml.safe_dump(raw, sort_keys=False)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(out)
    try:
        cell = load_cell(tmp)
    except ValueError as e:
        if camera in (yaml.safe_load(out).get("cameras") or {}) and "lacks" in str(e):
            # a new camera whose extrinsic (or intrinsics) another step writes: fine, keep it
            pass
        else:
            tmp.unlink()
            raise CalibrationError(f"writing {path}: the result does not load ({e})") from None
    else:
        got = cell.camera(camera)
        for k in ("fx", "fy", "cx", "cy"):
            if k in fields and abs(getattr(got, k) - float(fields[k])) > 1e-3:
                tmp.unlink()
                raise CalibrationError(f"writing {path}: {k} did not round-trip")
    tmp.replace(path)


class _NotEditable(Exception):
    pass


def _edit_lines(lines, camera, fields):
    def indent_of(s):
        return len(s) - len(s.lstrip(" "))

    def is_content(s):
        return s.strip() and not s.lstrip().startswith("#")

    cams = next((i for i, s in enumerate(lines) if re.match(r"^cameras:\s*(#.*)?$", s)), None)
    if cams is None:
        if any(s.startswith("cameras:") for s in lines):
            raise _NotEditable
        lines = lines + ["", "cameras:"]
        cams = len(lines) - 1
    # the camera entries' indent: that of the first content line under `cameras:`
    first = next((i for i in range(cams + 1, len(lines)) if is_content(lines[i])), None)
    cam_indent = indent_of(lines[first]) if first is not None and indent_of(lines[first]) > 0 else 2
    end_cams = next((i for i in range(cams + 1, len(lines)) if is_content(lines[i]) and indent_of(lines[i]) == 0),
                    len(lines))
    start = next((i for i in range(cams + 1, end_cams)
                  if indent_of(lines[i]) == cam_indent and re.match(rf"^\s*{re.escape(camera)}:\s*(#.*)?$", lines[i])),
                 None)
    key_indent = " " * (cam_indent + 2)
    if start is None:  # a new camera at the end of the section
        block = [" " * cam_indent + f"{camera}:"] + _camera_block_lines(camera, fields, key_indent)
        while end_cams > cams + 1 and not lines[end_cams - 1].strip():
            end_cams -= 1
        return lines[:end_cams] + block + lines[end_cams:]
    end = next((i for i in range(start + 1, end_cams) if is_content(lines[i]) and indent_of(lines[i]) <= cam_indent),
               end_cams)
    body = lines[start + 1:end]
    key_ind = next((indent_of(s) for s in body if is_content(s)), len(key_indent))
    key_indent = " " * key_ind
    out_body, done = [], set()
    i = 0
    while i < len(body):
        s = body[i]
        m = re.match(rf"^ {{{key_ind}}}([A-Za-z_][A-Za-z0-9_]*):", s) if is_content(s) else None
        if m and m.group(1) in fields:
            key = m.group(1)
            j = i + 1  # the key's own nested lines (the extrinsic's position/quaternion/matrix)
            while j < len(body) and (not body[j].strip() or indent_of(body[j]) > key_ind):
                j += 1
            while j > i + 1 and not body[j - 1].strip():  # blank lines after it stay
                j -= 1
            if "{" in s or ("[" in s and "]" not in s):
                raise _NotEditable  # flow mappings / multi-line lists: leave to the YAML rewrite
            out_body += _camera_block_lines(camera, {key: fields[key]}, key_indent)
            done.add(key)
            i = j
            continue
        out_body.append(s)
        i += 1
    # fields the camera did not have yet go after its last content line
    rest = {k: v for k, v in fields.items() if k not in done}
    if rest:
        last = max((k for k, s in enumerate(out_body) if is_content(s)), default=-1)
        out_body = out_body[:last + 1] + _camera_block_lines(camera, rest, key_indent) + out_body[last + 1:]
    return lines[:start + 1] + out_body + lines[end:]


def intrinsics_fields(res: IntrinsicsResult) -> dict:
    return dict(width=res.width, height=res.height, fx=res.fx, fy=res.fy, cx=float(res.K[0, 2]),
                cy=float(res.K[1, 2]), distortion=[float(v) for v in res.D[:5]], distortion_model="plumb_bob")
