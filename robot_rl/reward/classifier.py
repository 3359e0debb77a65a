"""The success classifier: uint8 camera frame -> P(success), its threshold, and its ONNX form.

The network is the learner's image encoder (robot_rl/learn/encoders.py ConvEncoder: uint8
(B, H, W, 3) in, normalised inside, so the exported graph takes camera pixels as they come)
followed by one linear logit. Nothing pretrained: trained from the cell's own episodes.

A checkpoint (`classifier.pt`) holds the torch state and everything needed to use it: threshold,
image size, camera, the network's shape and the held-out report; `classifier.onnx` holds the
same network for the node (onnxruntime, one thread) with the threshold etc. in metadata_props.
"""
from __future__ import annotations

import copy
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from robot_rl.learn.encoders import ConvEncoder

OPSET = 17
ONNX_INPUT, ONNX_OUTPUT = "image", "p_success"


@dataclass
class NetConfig:
    image_size: int = 64
    channels: tuple = (16, 32, 32)
    first_stride: int = 2
    feature_dim: int = 64
    n_cameras: int = 1

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16 px, got {self.image_size}")
        if self.n_cameras < 1:
            raise ValueError(f"n_cameras must be >= 1, got {self.n_cameras}")


class SuccessNet(nn.Module):
    """uint8 (B, H, W, 3) -> logit (B,); with n_cameras > 1, uint8 (B, n_cameras, H, W, 3) (the
    cameras in the model's order) -> logit (B,): one encoder per camera (views differ, no weights
    shared), their features concatenated into the one logit."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        s = cfg.image_size
        if cfg.n_cameras == 1:
            self.encoder = ConvEncoder((s, s, 3), cfg.channels, cfg.first_stride, cfg.feature_dim)
        else:
            self.encoders = nn.ModuleList(ConvEncoder((s, s, 3), cfg.channels, cfg.first_stride, cfg.feature_dim)
                                          for _ in range(cfg.n_cameras))
        self.head = nn.Linear(cfg.feature_dim * cfg.n_cameras, 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.cfg.n_cameras == 1:
            return self.head(self.encoder(img)).squeeze(-1)
        feats = torch.cat([enc(img[:, i]) for i, enc in enumerate(self.encoders)], dim=-1)
        return self.head(feats).squeeze(-1)


class _Probability(nn.Module):
    """What the ONNX graph computes: probabilities, so the threshold means the same everywhere."""

    def __init__(self, net: SuccessNet):
        super().__init__()
        self.net = net

    def forward(self, img):
        return torch.sigmoid(self.net(img))


# --------------------------------------------------------------------------- metrics
def confusion(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    pred = np.asarray(scores) >= threshold
    labels = np.asarray(labels, bool)
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    tn = int((~pred & ~labels).sum())
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": tp / (tp + fp) if tp + fp else 1.0,  # no positive call: none wrong
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "threshold": float(threshold)}


def pick_threshold(scores: np.ndarray, labels: np.ndarray, target_precision: float = 0.98) -> dict:
    """The decision threshold with the best recall among those reaching `target_precision`
    (ties: the highest threshold, the most conservative). If none reaches it, the threshold with
    the best precision (then recall), flagged `reached: False` so the caller can say so.

    Why precision first (hil-serl #32): a false success ends an episode as a success and teaches
    the learner to stop short; a missed success only costs an episode of learning time."""
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {target_precision}")
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    if not labels.any():
        raise ValueError("no positive frames to pick a threshold on")
    # candidate thresholds: every distinct score (a threshold between two scores changes nothing)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[s[1:] != s[:-1], True]  # the last index of each run of equal scores
    tp, fp, thr = tp[last], fp[last], s[last]
    precision = tp / (tp + fp)
    recall = tp / labels.sum()
    ok = precision >= target_precision
    if ok.any():
        i = np.flatnonzero(ok)[np.argmax(recall[ok])]  # argmax: the first (highest threshold) of the best
        out = confusion(scores, labels, thr[i])
        out["reached"] = True
    else:
        best = np.lexsort((-thr, -recall, -precision))[0]  # precision, then recall, then higher thr
        out = confusion(scores, labels, thr[best])
        out["reached"] = False
    out["target_precision"] = float(target_precision)
    return out


def format_confusion(c: dict, title: str = "") -> str:
    rows = [title] if title else []
    rows += ["                 predicted +   predicted -",
             f"  success     {c['tp']:>12d}  {c['fn']:>12d}",
             f"  not success {c['fp']:>12d}  {c['tn']:>12d}",
             f"  precision {c['precision']:.4f}  recall {c['recall']:.4f}  threshold {c['threshold']:.4f}"]
    return "\n".join(rows)


# --------------------------------------------------------------------------- save / load / export
def save_checkpoint(path, net: SuccessNet, meta: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"state": net.state_dict(), "net": asdict(net.cfg), **meta}, path)


def load_checkpoint(path) -> tuple[SuccessNet, dict]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    net = SuccessNet(NetConfig(**ck.pop("net")))
    net.load_state_dict(ck.pop("state"))
    return net.eval(), ck


def export_onnx(net: SuccessNet, path, meta: dict, verify: bool = True) -> None:
    """The network as ONNX (input "image" uint8 (B, S, S, 3), output "p_success" (B,)), meta
    (threshold, camera, ...) in metadata_props; checked against PyTorch on random frames."""
    import onnx

    module = _Probability(copy.deepcopy(net).cpu().float().eval())
    s, n = net.cfg.image_size, net.cfg.n_cameras
    x = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (2,) + ((n,) if n > 1 else ()) + (s, s, 3),
                                                          dtype=np.uint8))
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module, (x,), buf, input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                          dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    model = onnx.load_model_from_string(buf.getvalue())
    onnx.helper.set_model_props(model, {k: json.dumps(v) for k, v in meta.items()})
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if verify:
        with torch.no_grad():
            expected = module(x).numpy()
        got = OnnxClassifier(data).scores(x.numpy())
        err = float(np.abs(got - expected).max())
        if not err < 1e-4:
            raise RuntimeError(f"exported classifier differs from PyTorch by {err:.2e} (limit 1e-4)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = os.fspath(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class OnnxClassifier:
    """The exported classifier under onnxruntime on one CPU thread (the node's and the bench's).

    model: a path or the ONNX bytes. `meta` holds threshold, camera, image_size, ...;
    threshold: override the saved one (None keeps it). A model of several cameras (`cameras`,
    in input order; `camera` is then "front,wrist") takes (B, n, H, W, 3) or (n, H, W, 3)."""

    def __init__(self, model, threshold: float | None = None):
        import onnx
        import onnxruntime as ort

        if isinstance(model, (str, os.PathLike)):
            if not os.path.isfile(model):
                raise FileNotFoundError(f"no classifier at {model}: train one with robot-rl classifier train")
            proto = onnx.load(os.fspath(model))
            data = proto.SerializeToString()
        else:
            data = bytes(model)
            proto = onnx.load_model_from_string(data)
        self.meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        self.n_cameras = int(shape[1]) if len(shape) == 5 else 1
        self.image_size = (int(shape[-3]), int(shape[-2]))
        self.threshold = float(self.meta.get("threshold", 0.5) if threshold is None else threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        self.camera = self.meta.get("camera", "")
        self.cameras = tuple(c for c in self.camera.split(",") if c) or (("",) if self.n_cameras == 1 else ())
        if len(self.cameras) != self.n_cameras:
            raise ValueError(f"the model takes {self.n_cameras} cameras but names {self.camera!r}")

    def scores(self, images: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) or (H, W, 3) at the model's size, or an integer multiple of it
        (block-mean downsampled, as in training) -> P(success) (B,) float32. A model of n > 1
        cameras: (B, n, H, W, 3) or (n, H, W, 3)."""
        from robot_rl.reward.dataset import downsample

        images = np.asarray(images)
        per = 3 if self.n_cameras == 1 else 4
        if images.ndim not in (per, per + 1) or (self.n_cameras > 1 and images.shape[-4] != self.n_cameras):
            raise ValueError(f"the classifier takes {self.n_cameras} camera(s) {self.camera!r}, "
                             f"got images of shape {images.shape}")
        single = images.ndim == per
        batch = downsample(images[None] if single else images, self.image_size)
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: np.ascontiguousarray(batch)})[0]

    def __call__(self, image: np.ndarray) -> tuple[float, bool]:
        """One frame -> (P(success), positive at the threshold)."""
        p = float(self.scores(image)[0])
        return p, p >= self.threshold
