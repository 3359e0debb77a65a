"""`robot-rl calibrate board|intrinsics|handeye|overlay`: calibrate a cell from files on disk.

Inputs are folders of images (and, for hand-eye, a file of flange poses per image); results go
into the cell YAML the twin and the camera node read. User errors (no board, too few views,
degenerate motion, image sizes that differ, missing files) print one line naming the problem and
exit with 2. Capturing live through the camera node and the robot-state topics is a later step
(it will write the same folder + poses file layout, so these commands stay the back end).

Also runnable without the main CLI: python -m robot_rl.calibration.commands intrinsics ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from robot_rl.calibration.board import CalibrationError, parse_board

_BOARD_HELP = ("board: 'charuco:COLSxROWS:SQUARE_M:MARKER_M[:DICT]' or 'checkerboard:COLSxROWS:SQUARE_M' "
               "(counts of squares, sizes in metres as printed: measure them), or a board YAML file")


def _say(msg: str) -> None:
    print(msg, flush=True)


def cmd_board(args) -> int:
    from robot_rl.calibration.overlay import write_rgb

    board = parse_board(args.board)
    img = board.image(args.px_per_square)
    write_rgb(args.out, np.repeat(img[:, :, None], 3, axis=2))
    w_m, h_m = board.size
    _say(f"wrote {args.out}: {board.spec_string()}, {img.shape[1]}x{img.shape[0]} px. Print it flat at a scale "
         f"where one square measures {board.square * 1000:g} mm (grid {w_m * 1000:g} x {h_m * 1000:g} mm), "
         "then measure a square and pass the measured size")
    return 0


def cmd_intrinsics(args) -> int:
    from robot_rl.calibration.intrinsics import (
        RECOMMENDED_VIEWS,
        calibrate_intrinsics,
        intrinsics_fields,
        list_images,
        update_cell_camera,
    )

    board = parse_board(args.board)
    files = list_images(args.images)
    _say(f"intrinsics of camera {args.camera!r} from {len(files)} images in {args.images}, board {board.spec_string()}")
    res = calibrate_intrinsics(board, files, min_views=args.min_views, outlier_factor=args.outlier_factor,
                               fix_k3=args.fix_k3, progress=_say)
    for name, err in res.per_view.items():
        _say(f"  {name}: {err:.3f} px")
    _say(res.summary())
    if len(res.per_view) < RECOMMENDED_VIEWS:
        _say(f"note: {len(res.per_view)} views used; {RECOMMENDED_VIEWS}+ (tilted, near/far, image corners) "
             "give a steadier result")
    if res.rms > 1.0:
        _say(f"warning: RMS {res.rms:.2f} px is high (a good calibration is < 0.5 px): blur, a board that is "
             "not flat, or a wrong square count?")
    if args.dry_run:
        _say("dry run: cell file not written")
        return 0
    fields = intrinsics_fields(res)
    if args.frame_id:
        fields["frame_id"] = args.frame_id
    update_cell_camera(args.cell, args.camera, fields)
    _say(f"wrote camera {args.camera!r} intrinsics into {args.cell} (extrinsic and other cameras unchanged)")
    return 0


def cmd_handeye(args) -> int:
    from robot_rl.calibration.cell import load_cell
    from robot_rl.calibration.handeye import calibrate_handeye, load_poses
    from robot_rl.calibration.intrinsics import check_sizes, load_views, update_cell_camera

    board = parse_board(args.board)
    setup = args.setup.replace("-", "_")
    try:
        cam = load_cell(args.cell).camera(args.camera)
    except FileNotFoundError:
        raise CalibrationError(f"cell file {args.cell} does not exist: run `calibrate intrinsics` first") from None
    except (KeyError, ValueError) as e:
        raise CalibrationError(f"{args.cell}: {e.args[0] if e.args else e} (run `calibrate intrinsics` first)") from None
    poses = load_poses(args.poses)
    views = load_views(args.images)
    w, h = check_sizes(views)
    if (w, h) != (cam.width, cam.height):
        raise CalibrationError(f"images are {w}x{h} but camera {args.camera!r} is calibrated at "
                               f"{cam.width}x{cam.height} in {args.cell}: use the same camera mode")
    _say(f"hand-eye ({setup}) of camera {args.camera!r}: {len(views)} images, {len(poses)} poses from {args.poses}")
    res = calibrate_handeye(board, views, poses, cam.K, np.asarray(cam.distortion), setup, progress=_say)
    for name, r in res.per_pose.items():
        _say(f"  {name}: {r['trans_mm']:.2f} mm  {r['rot_deg']:.3f} deg  {r['reproj_px']:.2f} px")
    _say(res.summary())
    s = res.stats()
    if s["trans_mm_max"] > 5 or s["rot_deg_max"] > 1:
        _say("warning: residuals above 5 mm / 1 deg: check that each image's pose is the one recorded with it "
             "(timestamps), that the board did not move, and the robot's TCP/flange frame")
    if args.dry_run:
        _say("dry run: cell file not written")
        return 0
    update_cell_camera(args.cell, args.camera, {"parent": res.parent, "extrinsic": res.X})
    _say(f"wrote camera {args.camera!r} extrinsic (parent {res.parent}) into {args.cell}")
    return 0


def cmd_overlay(args) -> int:
    from robot_rl.calibration.intrinsics import read_image
    from robot_rl.calibration.overlay import overlay, write_rgb

    frame = read_image(args.frame)
    joints = None
    if args.joints:
        try:
            joints = [float(v) for v in args.joints.split(",")]
        except ValueError:
            raise CalibrationError(f"--joints takes comma-separated radians, got {args.joints!r}") from None
    _say(f"rendering the twin's {args.camera!r} camera from {args.cell} at {frame.shape[1]}x{frame.shape[0]}")
    img, fig, _ = overlay(frame, args.cell, args.camera, joints=joints, seed=args.seed)
    out = args.out or str(Path(args.frame).with_name(Path(args.frame).stem + "_overlay.png"))
    write_rgb(out, img)
    _say(str(fig))
    _say(f"wrote {out} (twin edges in magenta over a 50/50 blend)")
    if fig.mean_px > 3:
        _say("the twin and the frame disagree by more than ~3 px: check the camera's extrinsic (hand-eye), the "
             "arm's joints (--joints), and objects on the table that the twin places elsewhere")
    return 0


def add_calibrate_parser(subparsers, capture_func=None) -> argparse.ArgumentParser:
    """Add `calibrate` (with board|intrinsics|handeye|overlay) to an argparse subparsers object;
    the parsed args carry func=cmd_calibrate, which returns the exit code. capture_func(args):
    `calibrate capture` from the live graph (it needs ROS, so the CLI passes it in)."""
    c = subparsers.add_parser("calibrate", help="camera intrinsics, hand-eye, twin overlay (into the cell YAML)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = c.add_subparsers(dest="calibrate_cmd", required=True)

    b = sub.add_parser("board", help="write a printable board image")
    b.add_argument("out", help="image file, e.g. board.png")
    b.add_argument("--board", required=True, help=_BOARD_HELP)
    b.add_argument("--px-per-square", type=int, default=200)
    b.set_defaults(calibrate_func=cmd_board)

    i = sub.add_parser("intrinsics", help="intrinsics from a folder of board images")
    i.add_argument("images", help="folder of images of the board (one camera, one resolution)")
    i.add_argument("--board", required=True, help=_BOARD_HELP)
    i.add_argument("--camera", required=True, help="camera name in the cell YAML, e.g. front or wrist")
    i.add_argument("--cell", required=True, help="cell YAML to update (created if missing)")
    i.add_argument("--frame-id", default=None, help="optical frame id to record (default: keep)")
    i.add_argument("--min-views", type=int, default=6)
    i.add_argument("--outlier-factor", type=float, default=3.0, help="drop views with RMS > this x the median")
    i.add_argument("--fix-k3", action="store_true", help="fit k1 k2 p1 p2 only (narrow lenses, few views)")
    i.add_argument("--dry-run", action="store_true", help="report only, write nothing")
    i.set_defaults(calibrate_func=cmd_intrinsics)

    h = sub.add_parser("handeye", help="camera extrinsic from board images + flange poses")
    h.add_argument("images", help="folder of images, each named in the poses file")
    h.add_argument("--poses", required=True,
                   help="flange pose in the base frame per image: YAML (poses: {img.png: {position, "
                        "quaternion_wxyz}}) or CSV (image,x,y,z,qw,qx,qy,qz)")
    h.add_argument("--setup", required=True, choices=["eye-in-hand", "eye-to-hand"],
                   help="eye-in-hand: camera on the flange, board fixed; eye-to-hand: camera fixed, board on the flange")
    h.add_argument("--board", required=True, help=_BOARD_HELP)
    h.add_argument("--camera", required=True)
    h.add_argument("--cell", required=True, help="cell YAML holding the camera's intrinsics; its extrinsic is written")
    h.add_argument("--dry-run", action="store_true")
    h.set_defaults(calibrate_func=cmd_handeye)

    o = sub.add_parser("overlay", help="blend a real frame with the twin's render; mean edge distance")
    o.add_argument("frame", help="real image from the camera")
    o.add_argument("--cell", required=True)
    o.add_argument("--camera", required=True)
    o.add_argument("--joints", default=None, help="arm joint positions (rad, comma-separated) when the frame "
                                                   "was taken; default: the twin's home pose")
    o.add_argument("--seed", type=int, default=0, help="twin reset seed (where task objects are placed)")
    o.add_argument("--out", default=None, help="overlay image (default: FRAME_overlay.png)")
    o.set_defaults(calibrate_func=cmd_overlay)
    if capture_func is not None:
        k = sub.add_parser("capture", help="capture views (+ ee poses) live from the robot graph")
        k.add_argument("out", help="folder for view_NNN.png (+ poses.yaml with --poses)")
        k.add_argument("--camera", required=True, help="the contract camera name, e.g. front")
        k.add_argument("--poses", action="store_true", help="also record the ee pose (TCP) per view, for hand-eye")
        k.add_argument("--namespace", default="cell", help="the robot graph's namespace")
        k.add_argument("--every", type=float, default=1.0, help="with --count: seconds between captures")
        k.add_argument("--count", type=int, default=0, help="capture this many unattended (0 = Enter per view)")
        k.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the topics")
        k.set_defaults(calibrate_func=capture_func)
    c.set_defaults(func=cmd_calibrate)
    return c


def cmd_calibrate(args) -> int:
    try:
        return args.calibrate_func(args)
    except CalibrationError as e:
        print(f"robot-rl calibrate {args.calibrate_cmd}: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"robot-rl calibrate {args.calibrate_cmd}: {e}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="robot-rl")
    add_calibrate_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(["calibrate", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
