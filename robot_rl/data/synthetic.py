"""Deterministic fake steps for tests and benchmarks of the store and replay.

Every value is a function of the global step index, so a reader (or a test after a crash) can
check any stored row without having kept a copy."""
from __future__ import annotations

import numpy as np

from robot_rl.spec import POSE_DIM, PROPRIO_DIM


def make_schema(cameras=("front", "wrist"), image_size: int = 128, n_objects: int = 1,
                action_dim: int = 4) -> dict:
    schema = {"proprio": ((PROPRIO_DIM,), "<f4"), "object": ((POSE_DIM * n_objects,), "<f4")}
    for cam in cameras:
        schema[cam] = ((image_size, image_size, 3), "|u1")
    schema["action"] = ((action_dim,), "<f4")
    return schema


def scene_image(i: int, size: int, seed: int = 0) -> np.ndarray:
    """A rendered-looking frame: smooth background, a few flat-shaded boxes, a little noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.empty((size, size, 3), np.float32)
    img[..., 0] = 90 + 60 * yy
    img[..., 1] = 100 + 40 * xx
    img[..., 2] = 120 + 30 * (xx + yy)
    rng = np.random.default_rng(seed * 1_000_003 + i)
    for b in range(3):
        x0, y0 = ((np.array([0.2, 0.5]) + 0.3 * np.sin(0.05 * i + b)) * size).astype(int)
        w = size // (6 + b)
        img[max(y0, 0):y0 + w, max(x0, 0):x0 + w] = [200 - 50 * b, 60 + 60 * b, 40 + 30 * b]
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def obs_at(schema: dict, i: int, realistic_images: bool = False) -> dict:
    """Observation number i (global step index)."""
    obs = {}
    for key, (shape, dtype) in schema.items():
        if key == "action":
            continue
        if len(shape) == 3:
            if realistic_images:
                obs[key] = scene_image(i, shape[0], seed=len(key))
            else:
                obs[key] = np.full(shape, (i + len(key)) % 251, np.uint8)
                obs[key][0, :, 0] = np.arange(shape[1]) % 256  # rows differ, so a slicing bug shows
        else:
            obs[key] = (i + 0.001 * np.arange(shape[0])).astype(dtype)
    return obs


def step_at(schema: dict, i: int, terminated: bool = False, truncated: bool = False,
            intervened: bool = False, realistic_images: bool = False) -> dict:
    """Step number i: observation i, action and reward derived from i, the given flags."""
    step = obs_at(schema, i, realistic_images)
    (adim,) = schema["action"][0]
    step["action"] = (np.sin(i + np.arange(adim))).astype(np.float32)
    step.update(reward=np.float32(i % 7) / 7, terminated=terminated, truncated=truncated,
                intervened=intervened, policy_version=i // 100, timestamp=1000.0 + 0.1 * i, eval=False)
    return step


def run_writer(path, schema: dict, seed: int = 0, max_steps: int | None = None, out=None,
               realistic_images: bool = False) -> None:
    """Append random-length episodes of step_at() rows to the store at `path` until max_steps.

    After each append_step returns it prints "S <global step index>", after each end_episode
    "E <episodes>", flushed, so a parent that kills this process knows exactly what completed.
    Used by the crash and concurrent-reader tests."""
    import sys

    from robot_rl.data.store import EpisodeStore

    out = out or sys.stdout
    rng = np.random.default_rng(seed)
    store = EpisodeStore.open_or_create(path, schema)
    print("ready", store.n_steps, store.n_episodes, file=out, flush=True)
    while max_steps is None or store.n_steps < max_steps:
        length = int(rng.integers(1, 16))
        store.begin_episode(task="synthetic", source="policy", writer_seed=seed)
        for t in range(length):
            i = store.n_steps
            store.append_step(step_at(schema, i, terminated=t == length - 1 and length % 2 == 0,
                                      realistic_images=realistic_images))
            print("S", i, file=out, flush=True)
        store.end_episode(obs_at(schema, final_obs_index(store.n_episodes)), success=length % 2 == 0)
        print("E", store.n_episodes, file=out, flush=True)
    store.close()


def final_obs_index(episode: int) -> int:
    """The fake observation index run_writer stores as episode `episode`'s final observation."""
    return 1_000_000 + episode


if __name__ == "__main__":  # python -m robot_rl.data.synthetic STORE SEED [MAX_STEPS] [CAMERAS]
    import sys

    cams = tuple(sys.argv[4].split(",")) if len(sys.argv) > 4 and sys.argv[4] else ()
    run_writer(sys.argv[1], make_schema(cameras=cams, image_size=32), seed=int(sys.argv[2]),
               max_steps=int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] != "-" else None)
