"""`robot-rl classifier train|record|eval`: the reward classifier from zarr episode stores.

  robot-rl classifier record STORE -n 40 [--noise 0.1] [--hold 5] [--max-steps 20]   (twin data)
  robot-rl classifier train STORE [STORE ...] --camera wrist --out runs/clf
  robot-rl classifier eval runs/clf/classifier.onnx STORE [STORE ...] [--k 3]

User errors (a missing store or camera, no successes, a wrong image size) print one line naming
the problem and exit with 2. Also runnable as python -m robot_rl.reward.commands ...
"""
from __future__ import annotations

import argparse
import json
import sys


def _fail(msg: str) -> int:
    print(f"robot-rl classifier: {msg}", file=sys.stderr)
    return 2


def cmd_train(args) -> int:
    from robot_rl.reward.dataset import ClassifierDataError
    from robot_rl.reward.train import TrainConfig, train

    try:
        cfg = TrainConfig(camera=args.camera, positive_last=args.positive_last, image_size=args.image_size,
                          held_out=args.held_out, val=args.val, target_precision=args.target_precision,
                          steps=args.steps, batch_size=args.batch_size, seed=args.seed, threads=args.threads,
                          hard_fraction=args.hard_negatives)
        report = train(args.stores, args.out, cfg, log=lambda s: print(s, flush=True))
    except (ClassifierDataError, ValueError) as e:
        return _fail(str(e))
    return 0 if report["target_reached_on_validation"] or not args.strict else 1


def cmd_record(args) -> int:
    from robot_rl.reward.dataset import record_twin

    if args.episodes < 1:
        return _fail(f"-n must be >= 1, got {args.episodes}")

    def progress(ep, steps, success):
        print(f"episode {ep + 1}/{args.episodes}: {steps} steps, {'success' if success else 'failure'}", flush=True)

    out = record_twin(args.store, args.episodes, camera=args.camera, image_size=args.image_size, seed=args.seed,
                      noise=args.noise, hold=args.hold, max_steps=args.max_steps, task=args.task,
                      randomize=args.randomize, progress=progress, operator=args.operator)
    print(f"recorded {out['episodes']} episodes ({out['steps']} steps, {out['successes']} successes) into {out['store']}")
    return 0


def cmd_eval(args) -> int:
    import numpy as np

    from robot_rl.reward.classifier import OnnxClassifier, confusion, format_confusion
    from robot_rl.reward.dataset import ClassifierDataError, load_frames
    from robot_rl.reward.status import episode_outcomes

    try:
        clf = OnnxClassifier(args.model, threshold=args.threshold)
        frames = load_frames(args.stores, args.camera or clf.camera,
                             args.positive_last or int(clf.meta.get("positive_last", 6)))
        scores = np.concatenate([clf.scores(frames.images[i:i + 256]) for i in range(0, len(frames), 256)])
    except (ClassifierDataError, ValueError, FileNotFoundError) as e:
        return _fail(str(e))
    c = confusion(scores, frames.labels, clf.threshold)
    e = episode_outcomes(scores >= clf.threshold, frames.episode, frames.episode_success, args.k, frames.labels)
    print(format_confusion(c, f"per frame ({len(frames)} frames, {len(frames.episode_success)} episodes)"))
    print(f"per episode, success after {args.k} consecutive frames: {json.dumps(e)}")
    return 0


def add_classifier_parser(sub) -> None:
    c = sub.add_parser("classifier", help="reward classifier: train on episode stores, record twin data, evaluate")
    csub = c.add_subparsers(dest="action", required=True)

    t = csub.add_parser("train", help="train on zarr stores; labels from the episodes' outcomes")
    t.add_argument("stores", nargs="+")
    t.add_argument("--camera", default="wrist", help='a camera, or several: "front,wrist" (one encoder each)')
    t.add_argument("--out", default="runs/clf", help="writes classifier.pt, classifier.onnx, report.json")
    t.add_argument("--positive-last", type=int, default=6,
                   help="frames at the end of a successful episode labelled success, its final frame included")
    t.add_argument("--image-size", type=int, default=None, help="downsample to this (a divisor of the stores' size)")
    t.add_argument("--held-out", type=float, default=0.25, help="fraction of episodes for the test report")
    t.add_argument("--val", type=float, default=0.2, help="fraction of the rest for picking the threshold")
    t.add_argument("--target-precision", type=float, default=0.98)
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--hard-negatives", type=float, default=0.5,
                   help="fraction of each batch's negatives drawn from the 3 frames before a success's onset")
    t.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--strict", action="store_true", help="exit 1 if the target precision is not reached")
    t.set_defaults(func=cmd_train)

    r = csub.add_parser("record", help="twin episodes for the classifier: successes hold the success --hold steps")
    r.add_argument("store")
    r.add_argument("-n", "--episodes", type=int, default=40)
    r.add_argument("--task", default="pick_cube")
    r.add_argument("--camera", default="wrist", help='a camera, or several: "front,wrist"')
    r.add_argument("--image-size", type=int, default=64)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--noise", type=float, default=0.1, help="expert action noise (large: failures)")
    r.add_argument("--hold", type=int, default=5, help="steps a success is held before the episode ends")
    r.add_argument("--max-steps", type=int, default=None, help="short: episodes truncated before the success")
    r.add_argument("--randomize", action="store_true")
    r.add_argument("--operator", default="expert", choices=("expert", "wander"),
                   help="wander: smooth random motion, empty lifts (negatives the expert never shows)")
    r.set_defaults(func=cmd_record)

    e = csub.add_parser("eval", help="a trained classifier on stores: frame and episode confusion tables")
    e.add_argument("model")
    e.add_argument("stores", nargs="+")
    e.add_argument("--camera", default=None)
    e.add_argument("--threshold", type=float, default=None)
    e.add_argument("--positive-last", type=int, default=None)
    e.add_argument("--k", type=int, default=3)
    e.set_defaults(func=cmd_eval)


def main(argv=None) -> int:
    """python -m robot_rl.reward.commands train|record|eval ... (the same as robot-rl classifier ...)."""
    p = argparse.ArgumentParser(prog="robot-rl")
    add_classifier_parser(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(["classifier", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
