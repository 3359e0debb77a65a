"""Train the success classifier on zarr episode stores and report it on held-out episodes.

Episodes are split three ways, by episode and stratified by outcome: train (the network),
validation (the threshold is picked there, for the target precision) and test (the figures
reported, at that threshold: never the data the threshold was picked on). Batches are half
positive frames, half negative (successes are a few frames per episode), random-shifted.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from robot_rl.learn.encoders import random_shift
from robot_rl.reward.classifier import (NetConfig, SuccessNet, confusion, export_onnx, format_confusion,
                                        pick_threshold, save_checkpoint)
from robot_rl.reward.dataset import ClassifierDataError, check_trainable, load_frames, parse_cameras, split_episodes


@dataclass
class TrainConfig:
    camera: str = "wrist"           # or several: "front,wrist" (one encoder each, features joined)
    positive_last: int = 6        # frames at the end of a successful episode (final obs included) labelled positive
    image_size: int | None = None  # None: the stores' size; else block-mean downsampled to it
    held_out: float = 0.25        # fraction of episodes (per outcome) for the test report
    val: float = 0.2              # fraction of the remaining episodes for picking the threshold
    target_precision: float = 0.98
    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    shift_pad: int = 4            # random-shift augmentation, pixels (at the training size)
    hard_window: int = 3          # the negative frames just before a success's first positive frame ...
    hard_fraction: float = 0.5    # ... make this fraction of each batch's negative half (0: uniform negatives)
    seed: int = 0
    threads: int = 1              # torch CPU threads (the machine is shared)
    channels: tuple = (16, 32, 32)
    first_stride: int = 2
    feature_dim: int = 64

    def __post_init__(self):
        if not 0.0 < self.held_out < 1.0 or not 0.0 < self.val < 1.0:
            raise ValueError(f"held_out and val must be fractions in (0, 1), got {self.held_out}, {self.val}")
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"steps must be >= 1 and batch_size >= 2, got {self.steps}, {self.batch_size}")


@torch.no_grad()
def predict(net: SuccessNet, images: np.ndarray, batch: int = 256) -> np.ndarray:
    net.eval()
    out = [torch.sigmoid(net(torch.as_tensor(images[i:i + batch]))).numpy() for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def train(stores, out_dir, cfg: TrainConfig | None = None, log=print) -> dict:
    """Train on `stores`, write out_dir/classifier.pt, classifier.onnx and report.json; return the report."""
    cfg = cfg or TrainConfig()
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    frames = load_frames(stores, cfg.camera, cfg.positive_last, cfg.image_size)
    check_trainable(frames)
    n_cameras = len(parse_cameras(cfg.camera))
    h, w = frames.images.shape[-3:-1]
    size = h
    if h != w:
        raise ClassifierDataError(f"frames are {h}x{w}; the classifier takes square images: pass --image-size")
    rest, test_eps = split_episodes(frames.episode_success, cfg.held_out, cfg.seed)
    sub_ok = frames.episode_success[rest]
    tr_i, va_i = split_episodes(sub_ok, cfg.val, cfg.seed + 1)
    train_eps, val_eps = rest[tr_i], rest[va_i]
    tr, va, te = frames.subset(train_eps), frames.subset(val_eps), frames.subset(test_eps)
    for name, part in (("train", tr), ("validation", va), ("test", te)):
        if not part.labels.any():
            raise ClassifierDataError(f"the {name} episodes hold no positive frame: record more successful episodes "
                                      f"(have {int(frames.episode_success.sum())})")
    t_load = time.perf_counter() - t0
    log(f"classifier: {len(frames)} frames {size}x{size} of camera {cfg.camera!r} from {len(frames.episode_success)} "
        f"episodes ({int(frames.episode_success.sum())} successful); {int(frames.labels.sum())} positive frames; "
        f"episodes train/val/test {len(train_eps)}/{len(val_eps)}/{len(test_eps)} (loaded in {t_load:.1f} s)")

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = SuccessNet(NetConfig(size, cfg.channels, cfg.first_stride, cfg.feature_dim, n_cameras))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    images = torch.as_tensor(tr.images)
    pos, neg = np.flatnonzero(tr.labels), np.flatnonzero(~tr.labels)
    hard = hard_negatives(tr, cfg.hard_window)
    half = cfg.batch_size // 2
    n_hard = int(round((cfg.batch_size - half) * cfg.hard_fraction)) if len(hard) else 0
    target = torch.cat([torch.ones(half), torch.zeros(cfg.batch_size - half)])
    t1 = time.perf_counter()
    net.train()
    for step in range(cfg.steps):
        idx = np.concatenate([rng.choice(pos, half), rng.choice(neg, cfg.batch_size - half - n_hard),
                              rng.choice(hard, n_hard) if n_hard else np.zeros(0, np.int64)])
        x = images[idx]
        # each camera's frame shifted on its own (the views are separate images)
        x = random_shift(x.reshape((-1,) + x.shape[-3:]), cfg.shift_pad, gen).reshape(x.shape)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % max(1, cfg.steps // 5) == 0:
            log(f"  step {step + 1}/{cfg.steps}: loss {loss.item():.4f}")
    t_train = time.perf_counter() - t1

    val_scores = predict(net, va.images)
    picked = pick_threshold(val_scores, va.labels, cfg.target_precision)
    thr = picked["threshold"]
    test_scores = predict(net, te.images)
    test = confusion(test_scores, te.labels, thr)
    test_auc = _auc(test_scores, te.labels)
    report = {
        "camera": cfg.camera, "image_size": int(size), "threshold": float(thr),
        "target_precision": cfg.target_precision, "target_reached_on_validation": bool(picked["reached"]),
        "validation": picked, "test": test, "test_auc": test_auc,
        "data": {"stores": [{"path": p, "episodes": n} for p, n in frames.sources],
                 "frames": len(frames), "positive_frames": int(frames.labels.sum()),
                 "episodes": len(frames.episode_success), "successful_episodes": int(frames.episode_success.sum()),
                 "train_episodes": len(train_eps), "val_episodes": len(val_eps), "test_episodes": len(test_eps),
                 "train_frames": len(tr), "val_frames": len(va), "test_frames": len(te)},
        "test_episode_ids": test_eps.tolist(),
        "test_scores": [round(float(x), 5) for x in test_scores], "test_labels": te.labels.astype(int).tolist(),
        "train_seconds": round(t_train, 2), "load_seconds": round(t_load, 2),
        "config": asdict(cfg),
    }
    out = Path(out_dir)
    meta = {"threshold": float(thr), "camera": cfg.camera, "image_size": int(size),
            "positive_last": cfg.positive_last, "test": test, "target_precision": cfg.target_precision}
    save_checkpoint(out / "classifier.pt", net, {**meta, "report": report})
    export_onnx(net, out / "classifier.onnx", meta)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    if not picked["reached"]:
        log(f"classifier: WARNING the target precision {cfg.target_precision} was not reached on the validation "
            f"episodes (best {picked['precision']:.4f}); record more episodes or train longer")
    log(format_confusion(picked, f"validation ({len(val_eps)} episodes, {len(va)} frames): threshold picked here"))
    log(format_confusion(test, f"held-out test ({len(test_eps)} episodes, {len(te)} frames)"))
    log(f"classifier: trained {cfg.steps} steps in {t_train:.1f} s; wrote {out / 'classifier.pt'}, "
        f"{out / 'classifier.onnx'}, {out / 'report.json'}")
    return report


def hard_negatives(frames, window: int) -> np.ndarray:
    """Indices of the `window` negative frames just before each successful episode's first
    positive frame: the cube grasped and rising, under the lift line. They are the frames a
    success classifier confuses (the errors sit within a frame or two of the onset) and a few
    per episode among thousands of negatives, so uniform sampling rarely shows them."""
    out = []
    if window < 1:
        return np.zeros(0, np.int64)
    for ep in np.unique(frames.episode[frames.labels]):
        idx = np.flatnonzero(frames.episode == ep)
        first = idx[np.argmax(frames.labels[idx])]
        before = idx[(idx < first) & ~frames.labels[idx]]
        out += list(before[-window:])
    return np.asarray(out, np.int64)


def _auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC (the chance that a positive frame outscores a negative one), ties counted half."""
    labels = np.asarray(labels, bool)
    p, n = scores[labels], scores[~labels]
    if not len(p) or not len(n):
        return None
    greater = (p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()
    return float(greater / (len(p) * len(n)))
