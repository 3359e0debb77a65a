"""Frames and labels for the success classifier, from zarr episode stores (docs/store.md).

Labels come from the episode outcome (meta/success), as on a robot where the operator's success
key is the only ground truth: the last `positive_last` frames of a successful episode, its final
observation included, are positive; every other frame is negative (earlier frames of successful
episodes, and all frames of failed, truncated or interrupted ones).

Why the final observation counts: in the twin an episode terminates on the step at which the
success check first holds, so the only stored frame that shows the success is final_obs; the
recorder below keeps successful episodes running `hold` more steps so the last frames show it too
(on a robot the person presses the key a moment after the success is visible: the same shape).

Splits are by episode, never by frame: neighbouring frames of one episode are near-duplicates,
and a frame split would report memorisation as generalisation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_rl.data.store import EpisodeStore


class ClassifierDataError(ValueError):
    """Stores that cannot train or evaluate a classifier; the message names the store and why."""


@dataclass
class Frames:
    images: np.ndarray              # (N, H, W, 3) uint8
    labels: np.ndarray              # (N,) bool
    episode: np.ndarray             # (N,) int: a global episode id over all stores
    episode_success: np.ndarray     # (E,) bool per global episode id
    sources: list = field(default_factory=list)  # (store path, episodes) per store

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, episodes) -> "Frames":
        keep = np.isin(self.episode, np.asarray(list(episodes), dtype=np.int64))
        return Frames(self.images[keep], self.labels[keep], self.episode[keep], self.episode_success, self.sources)


def parse_cameras(camera) -> tuple:
    """"wrist" | "front,wrist" | ("front", "wrist") -> ("front", "wrist"); refuses none."""
    names = tuple(c.strip() for c in (camera.split(",") if isinstance(camera, str) else camera) if c.strip())
    if not names:
        raise ClassifierDataError(f"no camera named in {camera!r}")
    if len(set(names)) != len(names):
        raise ClassifierDataError(f"a camera is named twice in {camera!r}")
    return names


def downsample(img: np.ndarray, size: tuple) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., h, w, 3) by block means, for H, W integer multiples of h, w.

    The one resize of the classifier, in training and in the node alike, so both see the same
    pixels. Anything else is refused with the sizes named: a silent stretch would feed the
    model images unlike any it was trained on."""
    h, w = int(size[0]), int(size[1])
    if img.ndim < 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected uint8 (H, W, 3) images, got {img.dtype} {img.shape}")
    H, W = img.shape[-3:-1]
    if (H, W) == (h, w):
        return img
    if H % h or W % w or H < h or W < w:
        raise ValueError(f"image is {H}x{W}, the classifier takes {h}x{w} (or an integer multiple of it); "
                         f"retrain with --image-size matching the camera, or set the camera to {h}x{w}")
    fh, fw = H // h, W // w
    blocks = img.reshape(img.shape[:-3] + (h, fh, w, fw, 3)).astype(np.uint16)
    return (blocks.mean(axis=(-4, -2)) + 0.5).astype(np.uint8)


def load_frames(stores, camera: str, positive_last: int = 6, image_size: int | None = None,
                include_final: bool = True) -> Frames:
    """Every frame of `camera` in the stores, labelled by episode outcome (see module doc).
    image_size: downsample to this (square) size; None keeps the stores' size (which must agree).
    camera "front,wrist" (several cameras): images are (N, n_cameras, H, W, 3), the cameras in
    the order named, one step's frames together."""
    cameras = parse_cameras(camera)
    if positive_last < 1:
        raise ClassifierDataError(f"positive_last must be >= 1, got {positive_last}")
    if not stores:
        raise ClassifierDataError("no stores given")
    images, labels, episode, ep_success, sources = [], [], [], [], []
    size = None
    for path in stores:
        path = Path(path)
        try:
            store = EpisodeStore.open(path, "r")
        except FileNotFoundError as e:
            raise ClassifierDataError(str(e)) from None
        for cam in cameras:
            if cam not in store.schema:
                cams = [k for k, (shape, dt) in store.schema.items() if len(shape) == 3 and shape[-1] == 3]
                raise ClassifierDataError(f"{path}: no camera {cam!r} in this store (cameras: {cams or 'none'}); "
                                          f"record with --cameras {','.join(cameras)}")
        table = store.episode_table()
        n_ep = len(table["end"])
        if n_ep == 0:
            raise ClassifierDataError(f"{path}: the store has no closed episodes")
        per_cam, per_final = [], []
        for cam in cameras:
            frames = store.read(cam)
            finals = store.read_final_obs(cam) if include_final else None
            target = (image_size, image_size) if image_size else frames.shape[1:3]
            if size is None:
                size = tuple(target)
            try:
                per_cam.append(downsample(frames, size))
                per_final.append(downsample(finals, size) if finals is not None else None)
            except ValueError as e:
                raise ClassifierDataError(f"{path}: camera {cam!r}: {e}") from None
        if len(cameras) == 1:
            frames, finals = per_cam[0], per_final[0]
        else:
            frames = np.stack(per_cam, axis=1)
            finals = np.stack(per_final, axis=1) if include_final else None
        base = len(ep_success)
        for i in range(n_ep):
            s, t = int(table["start"][i]), int(table["end"][i])
            ok = bool(table["success"][i]) and not bool(table["interrupted"][i])
            n = t - s
            lab = np.zeros(n, bool)
            if ok:
                lab[max(0, n - (positive_last - (1 if include_final else 0))):] = True
            images.append(frames[s:t])
            labels.append(lab)
            episode.append(np.full(n, base + i, np.int64))
            # final_obs of an interrupted episode is zeros (docs/store.md): never a frame to learn from
            if include_final and not bool(table["interrupted"][i]):
                images.append(finals[i:i + 1])
                labels.append(np.array([ok]))
                episode.append(np.array([base + i], np.int64))
            ep_success.append(ok)
        sources.append((str(path), n_ep))
        store.close()
    return Frames(np.concatenate(images), np.concatenate(labels), np.concatenate(episode),
                  np.asarray(ep_success, bool), sources)


def split_episodes(episode_success: np.ndarray, held_out: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / held-out episode ids, stratified by outcome so both sides see successes and
    failures. Raises when there are too few successful episodes to hold any out."""
    rng = np.random.default_rng(seed)
    ids = np.arange(len(episode_success))
    train, test = [], []
    for outcome in (True, False):
        group = rng.permutation(ids[episode_success == outcome])
        n_test = int(round(len(group) * held_out))
        if len(group) >= 2:
            n_test = min(max(n_test, 1), len(group) - 1)
        else:
            n_test = 0
        test += list(group[:n_test])
        train += list(group[n_test:])
    return np.sort(np.asarray(train, np.int64)), np.sort(np.asarray(test, np.int64))


def check_trainable(frames: Frames) -> None:
    n_pos = int(frames.labels.sum())
    n_succ = int(frames.episode_success.sum())
    where = ", ".join(p for p, _ in frames.sources)
    if n_succ == 0:
        raise ClassifierDataError(f"no successful episodes in {where}: the classifier has no positive frames "
                                  "to learn from (record successes, or mark them with the operator's success key)")
    if n_succ < 2:
        raise ClassifierDataError(f"only {n_succ} successful episode in {where}: need >= 2 (one to train on, one held out)")
    if n_pos == len(frames):
        raise ClassifierDataError(f"every frame in {where} is positive: nothing to tell success from")


# --------------------------------------------------------------------------- twin recording
def hold_after_success(env, hold: int):
    """A gymnasium wrapper: once the env reports success, keep stepping `hold` more steps, then
    terminate (with info["success"] True). Needs the env built with terminate_on_success=False.
    Gives recorded successful episodes `hold` frames that show the success, as a person's late
    success key does on a robot."""
    import gymnasium as gym

    class HoldAfterSuccess(gym.Wrapper):
        def reset(self, **kw):
            self._since = None
            return self.env.reset(**kw)

        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            if self._since is None and info.get("success"):
                self._since = 0
            elif self._since is not None:
                self._since += 1
            if self._since is not None:
                info = dict(info, success=True)  # the task was achieved in this episode
                if self._since >= hold:
                    terminated, truncated = True, False
                else:
                    truncated = False  # a success still holding is not cut by the time limit
            return obs, reward, terminated, truncated, info

    return HoldAfterSuccess(env)


class WanderOperator:
    """Smooth random motion over the workspace, the gripper opening and closing at random, the
    arm often rising: the negatives an expert never shows. A classifier trained on the expert's
    episodes alone learned "the table recedes in the wrist view" as success, and an early policy
    that lifted an empty gripper was declared successful in every episode (reward hacking, as in
    hil-serl #32); these episodes show it what an empty lift looks like. Actions (x, y, z, ...,
    grip) in [-1, 1]: the twin's ActionSpec, the last one the gripper."""

    def __init__(self, action_dim: int, seed: int = 0, smooth: float = 0.85):
        self.dim, self.smooth = int(action_dim), float(smooth)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        self.a = np.zeros(self.dim)
        self.rise = self.rng.uniform(0.0, 0.6)  # this episode's upward drift on z
        self.grip = float(self.rng.choice([-1.0, 1.0]))

    def act(self, obs) -> np.ndarray:
        self.a = self.smooth * self.a + (1 - self.smooth) * self.rng.normal(0, 1.5, self.dim)
        a = np.clip(self.a, -1, 1)
        a[2] = np.clip(a[2] + self.rise, -1, 1)
        if self.rng.random() < 0.05:
            self.grip = -self.grip
        a[-1] = self.grip
        return a.astype(np.float32)


def record_twin(store, n_episodes: int, camera="wrist", image_size: int = 64, seed: int = 0,
                noise: float = 0.1, hold: int = 5, max_steps: int | None = None, task: str = "pick_cube",
                randomize: bool = False, progress=None, operator: str = "expert") -> dict:
    """Scripted-expert episodes of the twin into `store` (record_expert_episodes): successes hold
    `hold` steps after the success check first holds; max_steps (short) or noise (large) give
    failed, truncated episodes: the realistic negatives (a grasp not yet lifted).
    operator "wander": WanderOperator's episodes instead (negatives: empty lifts, odd poses).
    camera: one camera name, several as a tuple or "front,wrist" (each stored under its name)."""
    from robot_rl.data.record import record_expert_episodes
    from robot_rl.twin import make_env, make_expert

    cameras = parse_cameras(camera)
    env = make_env(task, cameras=cameras, image_size=image_size, randomize=randomize or None,
                   terminate_on_success=hold <= 0, max_episode_steps=max_steps)
    if hold > 0:
        env = hold_after_success(env, hold)
    if operator not in ("expert", "wander"):
        raise ValueError(f"operator must be expert or wander, not {operator!r}")
    expert = (make_expert(task, noise=noise, seed=seed) if operator == "expert"
              else WanderOperator(env.action_space.shape[0], seed=seed))
    try:
        return record_expert_episodes(store, env, expert, n_episodes, seed, source="demo", task=task,
                                      robot="twin", progress=progress)
    finally:
        env.close()
