"""info / ls / export_episode on a small store."""
import imageio.v2 as imageio
import numpy as np
import pytest

from robot_rl.data import inspect as store_inspect
from robot_rl.data.store import EpisodeStore
from robot_rl.data.synthetic import make_schema, obs_at, step_at

SCHEMA = make_schema(cameras=("front", "wrist"), image_size=32)


def make_store(path):
    with EpisodeStore.create(path, SCHEMA) as s:
        i = 0
        for e, (T, source) in enumerate([(6, "demo"), (9, "policy"), (4, "intervention")]):
            s.begin_episode(task="pick_cube", source=source)
            for t in range(T):
                s.append_step(step_at(SCHEMA, i, intervened=source == "intervention" and t < 2,
                                      realistic_images=True))
                i += 1
            s.end_episode(obs_at(SCHEMA, i, realistic_images=True), success=e != 1)
        s.begin_episode(source="policy")
        s.append_step(step_at(SCHEMA, i))
    return path


def test_info_and_ls(tmp_path):
    path = make_store(tmp_path / "run.zarr")
    text = store_inspect.info(path)
    assert "3 closed, 20 steps" in text
    assert "success    2/3" in text
    assert "demo: 1 (1 successful)" in text and "intervention: 1" in text
    assert "interventions  2 steps in 1 episodes" in text
    assert "open episode  1 steps" in text and "no writer" in text
    lines = store_inspect.ls(path).splitlines()
    assert len(lines) == 4
    assert lines[2].split()[:4] == ["1", "6", "9", "policy"] and " no " in lines[2]
    rewards = EpisodeStore.open(path).read("reward", 15, 19)
    assert lines[3].split()[-1] == f"{rewards.sum():.2f}" and lines[3].split()[-2] == "2"


def test_export_episode_writes_videos_and_plot(tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg (a robot_rl dependency) is not installed")
    path = make_store(tmp_path / "run.zarr")
    written = store_inspect.export_episode(path, 1, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["episode_00001_front.mp4", "episode_00001_plot.png", "episode_00001_wrist.mp4"]
    frames = np.stack([f for f in imageio.get_reader(tmp_path / "out" / "episode_00001_front.mp4").iter_data()])
    assert frames.shape == (10, 32, 32, 3)  # 9 steps + the final observation
    want = EpisodeStore.open(path).read("front", 6, 15).astype(float)
    assert np.abs(frames[:9].astype(float) - want).mean() < 12  # lossy, but the same pictures
    png = imageio.imread(tmp_path / "out" / "episode_00001_plot.png")
    assert png.ndim == 3 and png.shape[0] > 200
