"""A real zarr-python 2 reader (as Diffusion Policy uses) opens what EpisodeStore writes.

Needs a second python with `zarr==2.18.*`: the one named by ROBOT_RL_ZARR2_PYTHON, else
<repo>/.venv-zarr2/bin/python if present, e.g.
    python -m venv .venv-zarr2 && .venv-zarr2/bin/pip install "zarr==2.18.*"
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from robot_rl.data.store import EpisodeStore
from robot_rl.data.synthetic import make_schema, obs_at, step_at

READER = Path(__file__).with_name("zarr2_reader.py")
_DEFAULT = READER.parents[1] / ".venv-zarr2" / "bin" / "python"
ZARR2_PYTHON = os.environ.get("ROBOT_RL_ZARR2_PYTHON") or (str(_DEFAULT) if _DEFAULT.exists() else None)


@pytest.mark.skipif(not ZARR2_PYTHON, reason="set ROBOT_RL_ZARR2_PYTHON to a python with zarr==2.18.* "
                                             "(or create .venv-zarr2)")
def test_zarr2_reader_opens_store(tmp_path):
    schema = make_schema(cameras=("front", "wrist"), image_size=24)
    path = tmp_path / "run.zarr"
    written = []
    with EpisodeStore.create(path, schema) as s:
        i = 0
        for e, (T, source) in enumerate([(5, "demo"), (9, "policy"), (2, "intervention")]):
            s.begin_episode(task="pick_cube", source=source)
            for _ in range(T):
                step = step_at(schema, i, realistic_images=True)
                s.append_step(step)
                written.append(step)
                i += 1
            s.end_episode(obs_at(schema, 99), success=e != 1)
        s.begin_episode()  # left open: the reader must still see exactly the closed episodes
        s.append_step(step_at(schema, i))
    out = subprocess.run([ZARR2_PYTHON, str(READER), str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["zarr_version"].startswith("2.")
    assert got["episode_ends"] == [5, 14, 16]
    assert got["source"] == ["demo", "policy", "intervention"] and got["success"] == [True, False, True]
    for key in written[0]:
        want = np.stack([np.asarray(st[key]) for st in written])
        assert got["shapes"][key] == list(want.shape), key
        assert got["dtypes"][key] == EpisodeStore.open(path).step_schema[key][1], key
        assert got["sums"][key] == pytest.approx(float(want.astype(np.float64).sum()), rel=1e-6), key
