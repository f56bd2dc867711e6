"""Independent judges that score images: which digit is it, and by what angle is it rotated?

Generators (studies 01 and 03) are scored by models trained separately on real MNIST digits and evaluated
on real test digits first, so a reader knows how far to trust them:

* :func:`digit_judge` with ``rotated=True``: a digit classifier for digits at any angle (an escnn C16
  G-CNN trained with random rotations, as in study 05). Being invariant by design, it cannot separate a 6
  from a 9 turned by 180° from shape alone: report 6 and 9 separately.
* :func:`digit_judge` with ``rotated=False``: a plain CNN trained on upright digits (study 03's judge).
* :func:`angle_judge`: the MNIST angle regressor (study 04), predicting (cos θ, sin θ).

The rotated-digit judge and the angle judge train with **bicubic** rotations (the generators use bilinear)
and binarise a share (``binarize_prob``) of their training digits, so they cannot score generations by reading
one interpolation's artefacts; the angle judge's ``bilinear_prob`` share is rotated bilinearly instead, as its
test digits are (``cpu`` and ``gpu``: half), so what it reads at test time is not new to it. The upright judge
trains on the digits as they are (no rotation, no binarising). Each judge is
cache-or-train: the first call trains it through :func:`rotcore.train.fit` and saves a checkpoint under
``$ROTBOOK_RUNS/judges/``; later calls (from any study) load it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rotcore import config as _config
from rotcore.config import check_choice, check_positive
from rotcore.data import Images, mnist_splits
from rotcore.metrics import accuracy_pct, angle_error_summary, circular_error_deg
from rotcore.models.classifier import ClassifierConfig, build_classifier
from rotcore.models.regressor import AngleCNN, AngleCNNConfig
from rotcore.rotate import INTERPOLATIONS, random_angles, rotate_batch
from rotcore.train import FitConfig, TensorLoader, default_device, fit, predict, run_dir

Tensor = torch.Tensor


def _augment(x: Tensor, *, interpolation: str, binarize_prob: float, bilinear_prob: float = 0.0
             ) -> tuple[Tensor, Tensor]:
    """Rotate each digit by a fresh uniform angle (a ``bilinear_prob`` share bilinearly, the rest with
    ``interpolation``); binarise a random share of them (at 0.5)."""
    angle = random_angles(len(x), device=x.device)
    rotated = rotate_batch(x, angle, interpolation=interpolation)
    if bilinear_prob > 0 and interpolation != "bilinear":
        pick = torch.rand(len(x), 1, 1, 1, device=x.device) < bilinear_prob
        rotated = torch.where(pick, rotate_batch(x, angle, interpolation="bilinear"), rotated)
    x = rotated.clamp_(0, 1)
    if binarize_prob > 0:
        pick = torch.rand(len(x), 1, 1, 1, device=x.device) < binarize_prob
        x = torch.where(pick, (x > 0.5).to(x.dtype), x)
    return x, angle


# ---------------------------------------------------------------------------------------------------------
# Digit judges


@dataclasses.dataclass(frozen=True)
class _JudgeData:
    """What both judges train on: MNIST train (``train_size`` of it, ``None`` = all after ``val_size``),
    rotated with ``interpolation`` and a ``binarize_prob`` share binarised (see :func:`_augment`)."""

    train_size: int | None = None
    val_size: int = 5_000
    interpolation: str = "bicubic"
    binarize_prob: float = 0.2

    def __post_init__(self):
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        if not 0 <= self.binarize_prob <= 1:
            raise _config.ConfigError(f"binarize_prob must be in [0, 1], got {self.binarize_prob}")
        check_positive("val_size", self.val_size)


@dataclasses.dataclass(frozen=True)
class DigitJudgeConfig(_JudgeData):
    rotated: bool = True
    model: ClassifierConfig = ClassifierConfig(group="C16")
    fit: FitConfig = FitConfig(epochs=12, batch_size=128, lr=2e-3, weight_decay=1e-5, lr_schedule="cosine",
                               monitor="val_acc_pct", monitor_mode="max")


DIGIT_JUDGE_PROFILES = {
    "smoke": DigitJudgeConfig(model=ClassifierConfig(group="C8", width=0.1), train_size=1_024, val_size=256,
                              fit=FitConfig(epochs=1, batch_size=256, lr=2e-3, monitor="val_acc_pct", monitor_mode="max")),
    # cpu: a C8 G-CNN at width 0.25 (about 550 img/s training on 2 cores in bf16); the studies may set the digit
    # count (study 01's judge_train_size)
    "cpu": DigitJudgeConfig(model=ClassifierConfig(group="C8", width=0.25), train_size=30_000,
                            fit=FitConfig(epochs=5, batch_size=128, lr=2e-3, weight_decay=1e-5, lr_schedule="cosine",
                                          monitor="val_acc_pct", monitor_mode="max")),
    "gpu": DigitJudgeConfig(),
}
UPRIGHT_JUDGE_PROFILES = {
    "smoke": dataclasses.replace(DIGIT_JUDGE_PROFILES["smoke"], rotated=False,
                                 model=ClassifierConfig(group="C1", width=0.1)),
    "cpu": DigitJudgeConfig(rotated=False, model=ClassifierConfig(group="C1", width=0.5), train_size=30_000,
                            fit=FitConfig(epochs=4, batch_size=128, lr=2e-3, lr_schedule="cosine",
                                          monitor="val_acc_pct", monitor_mode="max")),
    "gpu": DigitJudgeConfig(rotated=False, model=ClassifierConfig(group="C1", width=0.5),
                            fit=FitConfig(epochs=8, batch_size=128, lr=2e-3, lr_schedule="cosine",
                                          monitor="val_acc_pct", monitor_mode="max")),
}


class _Judge(nn.Module):
    """A trained model in eval mode with the config it was trained from; calling it calls the model."""

    def __init__(self, model: nn.Module, config: Any):
        super().__init__()
        self.model, self.config = model.eval(), config

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class DigitJudge(_Judge):
    """A trained digit classifier. ``predict(x)`` gives labels, ``probs(x)`` class probabilities."""

    def probs(self, x: Tensor, *, batch_size: int = 1_000) -> Tensor:
        return predict(self.model, x, batch_size=batch_size).softmax(-1)

    def predict(self, x: Tensor, *, batch_size: int = 1_000) -> Tensor:
        return predict(self.model, x, batch_size=batch_size).argmax(-1)


def _mnist_splits(train_size: int | None, val_size: int) -> tuple[Images, Images]:
    train, val, _ = mnist_splits(train_size=train_size, val_size=val_size, test_size=0)
    return train, val


def _resolve(profiles: Mapping[str, Any], profile_or_config: Any, overrides: Mapping[str, Any] | None):
    if isinstance(profile_or_config, str):
        return _config.resolve(profiles, profile_or_config, overrides)
    return _config.override(profile_or_config, overrides)


def digit_judge(profile_or_config: str | DigitJudgeConfig = "cpu", *, rotated: bool = True,
                overrides: Mapping[str, Any] | None = None, device=None, progress: bool | None = None) -> DigitJudge:
    """The digit judge for a profile (or an explicit config): loaded from its checkpoint, trained if absent."""
    profiles = DIGIT_JUDGE_PROFILES if rotated else UPRIGHT_JUDGE_PROFILES
    cfg = _resolve(profiles, profile_or_config, overrides)
    device = torch.device(device) if device is not None else default_device()
    train, val = (s.to(device) for s in _mnist_splits(cfg.train_size, cfg.val_size))
    torch.manual_seed(cfg.fit.seed)
    model = build_classifier(cfg.model)

    def loss_fn(m, batch):
        x, y = batch
        if cfg.rotated:
            x, _ = _augment(x, interpolation=cfg.interpolation, binarize_prob=cfg.binarize_prob)
        logits = m(x)
        return F.cross_entropy(logits, y), {"acc": (logits.argmax(-1) == y).float().mean()}

    def validate(m):
        x = val.x if not cfg.rotated else rotate_batch(val.x, val_angles, interpolation="bilinear")
        return {"val_acc_pct": accuracy_pct(predict(m, x, batch_size=1_000), val.y)}

    val_angles = random_angles(len(val), generator=torch.Generator().manual_seed(123)).to(device)
    name = "digit-rotated" if cfg.rotated else "digit-upright"
    run_cfg = {"judge": name, "config": cfg}
    fit(model, loss_fn, TensorLoader(train.x, train.y, batch_size=cfg.fit.batch_size, drop_last=True,
                                     seed=cfg.fit.seed),
        config=cfg.fit, validate=validate, checkpoint=run_dir("judges", name, run_cfg) / "checkpoint.pt",
        run_config=run_cfg, device=device, progress=progress, desc=f"judge: {name}")
    return DigitJudge(model, cfg)


def evaluate_digit_judge(judge: DigitJudge, test: Images, angles_deg=(0.0,), *, interpolation: str = "bilinear"):
    """The judge's own accuracy on real test digits at each angle: a DataFrame (angle, overall, per digit)."""
    import pandas as pd

    rows = []
    for a in angles_deg:
        pred = judge.predict(rotate_batch(test.x, float(a), interpolation=interpolation)).cpu()
        y = test.y.cpu()
        row = {"angle_deg": float(a), "acc_pct": accuracy_pct(pred, y)}
        row.update({f"acc_pct_{d}": accuracy_pct(pred[y == d], y[y == d]) for d in range(10)})
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------
# The angle judge


@dataclasses.dataclass(frozen=True)
class AngleJudgeConfig(_JudgeData):
    """The angle judge: ``bilinear_prob`` of its training digits are rotated bilinearly (as at test), the rest
    with ``interpolation``."""

    model: AngleCNNConfig = AngleCNNConfig()
    bilinear_prob: float = 0.5
    fit: FitConfig = FitConfig(epochs=20, batch_size=128, lr=2e-3, weight_decay=1e-5, lr_schedule="cosine",
                               warmup_fraction=0.02, monitor="val_mae_deg", monitor_mode="min")

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.bilinear_prob <= 1:
            raise _config.ConfigError(f"bilinear_prob must be in [0, 1], got {self.bilinear_prob}")


ANGLE_JUDGE_PROFILES = {
    "smoke": AngleJudgeConfig(model=AngleCNNConfig(width=0.25), train_size=1_024, val_size=256,
                              fit=FitConfig(epochs=1, batch_size=256, lr=2e-3, monitor="val_mae_deg")),
    # cpu: more optimiser steps than the former 10 epochs at batch 256 (~580 steps on 15k digits): batch 64 and
    # 12 epochs, ~2,800 steps (batch 64 alone took the error from 16.4° to 14.05° at 5 epochs); ~187 s on 2 cores
    # for 15k digits (study 01's budget)
    "cpu": AngleJudgeConfig(train_size=30_000,
                            fit=FitConfig(epochs=12, batch_size=64, lr=2e-3, weight_decay=1e-5, lr_schedule="cosine",
                                          warmup_fraction=0.02, monitor="val_mae_deg", monitor_mode="min")),
    "gpu": AngleJudgeConfig(),
}


class AngleJudge(_Judge):
    """A trained angle regressor. ``predict_deg(x)`` gives angles in [0, 360)."""

    def predict_deg(self, x: Tensor, *, batch_size: int = 1_000) -> Tensor:
        return self.model.decode_deg(predict(self.model, x, batch_size=batch_size))


def angle_judge(profile_or_config: str | AngleJudgeConfig = "cpu", *, overrides: Mapping[str, Any] | None = None,
                device=None, progress: bool | None = None) -> AngleJudge:
    """The MNIST angle judge for a profile (or config): loaded from its checkpoint, trained if absent."""
    cfg = _resolve(ANGLE_JUDGE_PROFILES, profile_or_config, overrides)
    device = torch.device(device) if device is not None else default_device()
    train, val = (s.to(device) for s in _mnist_splits(cfg.train_size, cfg.val_size))
    torch.manual_seed(cfg.fit.seed)
    model = AngleCNN(cfg.model)
    val_angles = random_angles(len(val), generator=torch.Generator().manual_seed(321)).to(device)
    val_x = rotate_batch(val.x, val_angles, interpolation="bilinear")

    def loss_fn(m, batch):
        (x,) = batch
        x, angle = _augment(x, interpolation=cfg.interpolation, binarize_prob=cfg.binarize_prob,
                            bilinear_prob=cfg.bilinear_prob)
        return m.loss(m(x), angle)

    def validate(m):
        pred = m.decode_deg(predict(m, val_x, batch_size=1_000))
        return {"val_mae_deg": circular_error_deg(pred, val_angles).mean().item()}

    run_cfg = {"judge": "angle", "config": cfg}
    fit(model, loss_fn, TensorLoader(train.x, batch_size=cfg.fit.batch_size, drop_last=True, seed=cfg.fit.seed),
        config=cfg.fit, validate=validate, checkpoint=run_dir("judges", "angle", run_cfg) / "checkpoint.pt",
        run_config=run_cfg, device=device, progress=progress, desc="judge: angle")
    return AngleJudge(model, cfg)


def evaluate_angle_judge(judge: AngleJudge, test: Images, *, seeds=(0, 1, 2), interpolation: str = "bilinear",
                         per_image: bool = False):
    """The judge's own error on real test digits rotated by uniform angles, one draw per seed.

    Returns ``(summary, per_digit)``: the pooled :func:`rotcore.metrics.angle_error_summary` with the
    per-seed MAE spread, and a DataFrame of MAE per digit; with ``per_image``, also the circular error of
    every reading ``(len(seeds) * len(test),)``, seed-major (so a caller needs no second pass to bootstrap it).
    """
    import pandas as pd

    errs, ys = [], []
    for s in seeds:
        a = random_angles(len(test), generator=torch.Generator().manual_seed(1000 + s)).to(test.x.device)
        pred = judge.predict_deg(rotate_batch(test.x, a, interpolation=interpolation))
        errs.append(circular_error_deg(pred, a).cpu())
        ys.append(test.y.cpu())
    err, y = torch.cat(errs), torch.cat(ys)
    summary = angle_error_summary(err)
    per_seed = torch.stack([e.mean() for e in errs])
    summary["mae_std_over_seeds_deg"] = per_seed.std().item() if len(seeds) > 1 else 0.0
    per_digit = pd.DataFrame({"digit": list(range(10)),
                              "mae_deg": [err[y == d].mean().item() for d in range(10)],
                              "median_deg": [err[y == d].median().item() for d in range(10)]})
    return (summary, per_digit, err) if per_image else (summary, per_digit)
