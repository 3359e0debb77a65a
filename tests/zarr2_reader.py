"""Open a robot_rl store with zarr-python 2 the way Diffusion Policy's ReplayBuffer does.

Run with a python that has `zarr<3` (tests/test_store_zarr2.py finds it through the env var
ROBOT_RL_ZARR2_PYTHON). Prints a JSON summary for the test to compare with what it wrote.
Usage: python tests/zarr2_reader.py STORE_PATH
"""
import json
import sys

import numpy as np
import zarr

assert int(zarr.__version__.split(".")[0]) == 2, f"needs zarr 2, this is zarr {zarr.__version__}"

root = zarr.open(sys.argv[1], "r")
# Diffusion Policy's ReplayBuffer.__init__ / copy_from_store: every meta member loads as an
# array, every data array holds at least episode_ends[-1] rows.
meta = {key: (np.array(value) if len(value.shape) == 0 else value[:]) for key, value in root["meta"].items()}
ends = meta["episode_ends"]
data = {key: value[: ends[-1]] for key, value in root["data"].items()}
for key, value in data.items():
    assert value.shape[0] == ends[-1], key
print(json.dumps({
    "zarr_version": zarr.__version__,
    "episode_ends": ends.tolist(),
    "shapes": {k: list(v.shape) for k, v in data.items()},
    "dtypes": {k: v.dtype.str for k, v in data.items()},
    "sums": {k: float(np.asarray(v, np.float64).sum()) for k, v in data.items()},
    # per-episode arrays other than episode_ends may hold a row for an episode still open
    "source": [str(s) for s in meta["source"][: len(ends)]],
    "success": meta["success"][: len(ends)].tolist(),
}))
