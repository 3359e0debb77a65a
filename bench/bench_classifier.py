"""Reward classifier in the twin, from pixels: precision / recall on held-out episodes.

Records (once; reused when present) scripted-expert episodes of pick_cube with the wrist camera:
successes that hold the lifted cube `hold` steps, episodes truncated before the lift (a grasped
but not lifted cube: the hard negatives), and a noisy expert that mostly fails. Trains
`robot-rl classifier train`'s model on them, picks the threshold for the target precision on
validation episodes, and reports the confusion table on held-out test episodes: per frame (the
ONNX model under onnxruntime, one thread, as the node runs it) and per episode through the
node's hysteresis (success declared after k consecutive positive frames). Writes
bench/out/classifier.json.

    PYTHONPATH=. python bench/bench_classifier.py            # ~5 min on a shared 2-core CPU
    PYTHONPATH=. python bench/bench_classifier.py --quick     # smaller, for a smoke run
    PYTHONPATH=. python bench/bench_classifier.py --image-size 128 --steps 3000 --out runs/clf_bench/model128
                                                             # the figures in bench/out/classifier.json (~6 min)

Training draws half of each batch's negatives from the 3 frames before a success's onset (TrainConfig.hard_fraction,
docs/reward.md); the held-out evaluation counts every frame, labels unchanged.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from robot_rl.reward.classifier import OnnxClassifier, confusion, format_confusion  # noqa: E402
from robot_rl.reward.dataset import load_frames, record_twin  # noqa: E402
from robot_rl.reward.status import episode_outcomes  # noqa: E402
from robot_rl.reward.train import TrainConfig, train  # noqa: E402

ROOT = Path(__file__).resolve().parent


def record_data(data_dir: Path, scale: float, image_size: int, hold: int) -> list[str]:
    """The three stores (kind, episodes, seed, noise, max_steps); recorded only if absent."""
    plan = [("success", 100, 1000, 0.1, None), ("truncated20", 20, 2000, 0.1, 20),
            ("truncated23", 20, 3000, 0.1, 23), ("noisy", 40, 4000, 0.8, 40)]
    paths = []
    for name, n, seed, noise, max_steps in plan:
        path = data_dir / f"{name}_{image_size}px.zarr"
        n = max(2, int(round(n * scale)))
        if not path.exists():
            t = time.perf_counter()
            out = record_twin(path, n, camera="wrist", image_size=image_size, seed=seed, noise=noise,
                              hold=hold, max_steps=max_steps)
            print(f"recorded {path.name}: {out['episodes']} episodes, {out['steps']} steps, "
                  f"{out['successes']} successes in {time.perf_counter() - t:.0f} s", flush=True)
        paths.append(str(path))
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", default="runs/clf_bench", help="where the recorded stores live")
    ap.add_argument("--out", default="runs/clf_bench/model")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--hold", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--k", type=int, default=3, help="hysteresis: consecutive positive frames")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    scale, steps = (0.3, 300) if args.quick else (1.0, args.steps)
    data = Path(args.data) / ("quick" if args.quick else "full")
    stores = record_data(data, scale, args.image_size, args.hold)

    cfg = TrainConfig(camera="wrist", positive_last=args.hold + 1, steps=steps, seed=args.seed)
    report = train(stores, args.out, cfg, log=lambda s: print(s, flush=True))

    # the exported model, as the node runs it, on the held-out test episodes
    clf = OnnxClassifier(Path(args.out) / "classifier.onnx")
    frames = load_frames(stores, "wrist", cfg.positive_last)
    test = frames.subset(report["test_episode_ids"])
    t = time.perf_counter()
    scores = np.concatenate([clf.scores(img) for img in test.images])
    per_frame_ms = (time.perf_counter() - t) / len(test) * 1e3
    onnx_frames = confusion(scores, test.labels, clf.threshold)
    episodes = episode_outcomes(scores >= clf.threshold, test.episode, test.episode_success, args.k, test.labels)
    print(format_confusion(onnx_frames, f"ONNX per frame, held-out episodes ({len(test)} frames)"))
    e = episodes
    print(f"per episode with hysteresis k={args.k}: {e['tp']} successes declared / {e['tp'] + e['fn']} successful, "
          f"{e['fp']} false successes / {e['fp'] + e['tn']} failed episodes; "
          f"declared {e['mean_delay']} frames after the success became visible (mean)")
    print(f"ONNX inference {per_frame_ms:.2f} ms/frame (one thread); training {report['train_seconds']} s")
    result = {"bench": "classifier", "quick": args.quick, "report": report, "onnx_test_frames": onnx_frames,
              "episodes_hysteresis": episodes, "k": args.k, "onnx_ms_per_frame": per_frame_ms,
              "targets": {"precision": 0.98, "recall": 0.95},
              "met": onnx_frames["precision"] >= 0.98 and onnx_frames["recall"] >= 0.95}
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    (out / "classifier.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {out / 'classifier.json'}; targets met: {result['met']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
