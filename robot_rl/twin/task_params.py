"""Task parameters as plain data (no MuJoCo): what the tasks build from and what the scripted
experts plan with, so a robot-side process can run an expert without loading the simulator."""
from __future__ import annotations

TABLE_Z = 0.0  # table top in the base frame (sim/cell.xml)

TASK_DEFAULTS = {
    "pick_cube": dict(
        cube_half=0.02,  # m (a 4 cm cube)
        cube_mass=0.05,  # kg
        x_range=(0.35, 0.6),  # cube centre, base frame
        y_range=(-0.2, 0.2),
        yaw_range=0.3,  # +- rad (the 4-D action cannot turn the gripper)
        lift_height=0.1,  # m above its rest height
    ),
    "peg_insert": dict(
        peg_half=0.01,  # m, half side of the square peg (2 cm)
        peg_length=0.08,
        peg_mass=0.05,
        clearance=0.001,  # m per side between peg and hole
        hole_depth=0.04,
        block_half=0.05,  # half side of the block the hole is cut in
        insert_depth=0.025,  # success: peg tip this far below the rim
        x_range=(0.42, 0.58),  # hole centre, base frame
        y_range=(-0.15, 0.15),
        hole_yaw_range=0.0,  # +- rad; > 0 needs rotation actions to align the peg
        peg_start="hand",  # hand | table
        grip_depth_range=(0.03, 0.045),  # peg in hand: tip this far below the TCP
        peg_x_range=(0.35, 0.6),  # peg on the table
        peg_y_range=(-0.2, 0.2),
    ),
}


def task_params(name: str, params: dict | None = None) -> dict:
    """The task's defaults updated with `params`; an unknown task or key is an error naming
    the valid ones."""
    if name not in TASK_DEFAULTS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASK_DEFAULTS)}")
    params = dict(params or {})
    unknown = sorted(set(params) - set(TASK_DEFAULTS[name]))
    if unknown:
        raise ValueError(
            f"task {name!r}: unknown task_params {unknown}; expected some of {sorted(TASK_DEFAULTS[name])}"
        )
    return {**TASK_DEFAULTS[name], **params}
