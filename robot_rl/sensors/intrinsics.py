"""Which intrinsics a camera publishes: the cell's calibration when it has the camera (scaled to
the stream size), else the device's own (RealSense factory calibration), else none."""
from __future__ import annotations

import numpy as np

from robot_rl.sensors.base import CameraError, StreamInfo


def resolve_intrinsics(camera: str, stream: StreamInfo, cell_path: str = "") -> tuple[dict, str]:
    """-> (info dict for codec.camera_info_msg without frame_id, a sentence for the log)."""
    W, H = stream.width, stream.height
    if cell_path:
        from robot_rl.calibration.cell import load_cell
        from robot_rl.paths import share_file

        try:  # a path, or a name under the package's calibration/ ("default_cell.yaml")
            cell = load_cell(share_file("calibration", cell_path))
        except (OSError, ValueError) as e:
            raise CameraError(f"cannot read the cell calibration {cell_path}: {e}") from None
        if camera in cell.cameras:
            cal = cell.cameras[camera]
            if abs(W / cal.width - H / cal.height) > 1e-3 * max(W / cal.width, 1):
                # A different aspect ratio means a cropped mode: a scaled K would be wrong.
                raise CameraError(
                    f"camera {camera!r} streams {W}x{H} but {cell_path} is calibrated at "
                    f"{cal.width}x{cal.height}, another aspect ratio: recalibrate at this mode")
            # Distortion coefficients act on normalised coordinates: unchanged by scaling.
            info = dict(width=W, height=H, K=cal.scaled_K(W, H), D=list(cal.distortion),
                        distortion_model=cal.distortion_model)
            return info, (f"intrinsics of {camera!r} from {cell_path} "
                          f"({cal.width}x{cal.height} scaled to {W}x{H})")
        why = f"{cell_path} has no camera {camera!r} (it has {sorted(cell.cameras)})"
    else:
        why = "no cell calibration given"
    if stream.K is not None:
        return (dict(width=W, height=H, K=np.asarray(stream.K, np.float64), D=list(stream.D),
                     distortion_model=stream.distortion_model),
                f"intrinsics of {camera!r} from the device itself ({why})")
    return (dict(width=W, height=H, K=np.zeros((3, 3)), D=[0.0] * 5, distortion_model="plumb_bob"),
            f"no intrinsics for {camera!r}: {why} and the device reports none; camera_info has K = 0")
