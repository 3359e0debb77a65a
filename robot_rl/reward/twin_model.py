"""A reward classifier trained in the twin, for runs that have none yet (robot-rl sim --reward
classifier): the recipe of docs/reward.md (successes held a few steps, episodes cut before the
lift, noisy failures), recorded and trained once per task / camera / image size and kept under
runs/classifier/, so later runs reuse it. Nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

# (store name, record_twin arguments): the successes and the two kinds of realistic negatives
RECIPE = (
    ("success", dict(n_episodes=100, hold=5, seed=0)),
    ("trunc", dict(n_episodes=40, max_steps=20, seed=2000)),
    ("noisy", dict(n_episodes=40, noise=0.8, max_steps=40, seed=4000)),
    # what an early policy does and the expert never: empty lifts, odd poses (reward/dataset.py)
    ("wander", dict(n_episodes=60, operator="wander", max_steps=50, seed=6000)),
)


def twin_classifier_dir(task: str, camera: str, image_size: int, root="runs/classifier") -> Path:
    return Path(root) / f"{task}_{camera}_{image_size}px"


def ensure_twin_classifier(task: str, camera: str, image_size: int, root="runs/classifier", log=print) -> Path:
    """The classifier.onnx for (task, camera, image_size), recorded and trained in the twin the
    first time (about a minute of recording and a few of training on a 2-core CPU)."""
    from robot_rl.reward.dataset import record_twin
    from robot_rl.reward.train import TrainConfig, train

    out = twin_classifier_dir(task, camera, image_size, root)
    model = out / "model" / "classifier.onnx"
    if model.exists():
        return model
    log(f"  reward classifier: none for {task}/{camera}/{image_size}px yet; recording twin episodes and "
        f"training one into {out} (once; later runs reuse it)")
    stores = []
    for name, kwargs in RECIPE:
        store = out / f"{name}.zarr"
        if not store.exists():
            record_twin(str(store), camera=camera, image_size=image_size, task=task, **kwargs)
        stores.append(str(store))
    report = train(stores, str(out / "model"), TrainConfig(camera=camera), log=lambda s: None)
    test = report.get("test", {})
    log(f"  reward classifier: held-out precision {test.get('precision', float('nan')):.3f}, "
        f"recall {test.get('recall', float('nan')):.3f} -> {model}")
    return model
