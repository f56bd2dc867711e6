"""Study 05: does a network recognise a digit at any angle?

Five classifiers with one layer plan and similar parameter counts (``MODELS``): a plain CNN, the same CNN
trained with rotation augmentation, and escnn G-CNNs over C8, C16 and D16 restricted to C16 after layer 5
(the E(2)-CNN paper's best MNIST-rot model), invariant by group pooling. Two protocols:

* **upright → rotated**: train on upright MNIST, test on the MNIST test set rotated every 15°;
* **MNIST-rot replica**: train and test on rotated digits (:func:`rotcore.data.mnist_rot_replica`),
  repeated over seeds; training uses random-rotation augmentation as in the E(2)-CNN paper.

The notebook ``notebooks/05_rotation_invariance.py`` narrates; everything it computes is here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from rotcore import config as _config
from rotcore.config import ConfigError, check_angles, check_positive
from rotcore.data import Images, mnist_rot_replica, mnist_splits, subset
from rotcore.metrics import (
    accuracy_by_angle,
    accuracy_pct,
    confusion_matrix,
    invariance_error,
    precision_recall_f1,
)
from rotcore.models.classifier import ClassifierConfig, build_classifier
from rotcore.rotate import random_angles, rotate_batch
from rotcore.studies import Anchor
from rotcore.train import FitConfig, FitResult, TensorLoader, count_parameters, fit, predict, run_dir

STUDY = "05_rotation_invariance"
TITLE = "Rotation invariance of digit classifiers"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    label: str
    group: str
    restrict_at: int | None = None
    augment: bool = False
    width: float = 1.0  # on top of the config's width: evens out parameter counts


MODELS: dict[str, ModelSpec] = {
    "cnn": ModelSpec("CNN", "C1", width=0.8),
    "cnn_aug": ModelSpec("CNN + rotation aug.", "C1", augment=True, width=0.8),
    "c8": ModelSpec("C8 G-CNN", "C8"),
    "c16": ModelSpec("C16 G-CNN", "C16"),
    "d16c16": ModelSpec("D16|5C16 G-CNN", "D16", restrict_at=5),
}


COLORS = {spec.label: color for spec, color in zip(MODELS.values(), ("#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd", "#d62728"))}


@dataclasses.dataclass(frozen=True)
class InvarianceConfig:
    """Everything the study varies. Sizes of ``None`` mean the whole split."""

    width: float = 1.0
    upright_models: tuple[str, ...] = tuple(MODELS)
    upright_train_size: int | None = None
    upright_val_size: int = 5_000
    test_size: int | None = None
    test_angles_deg: tuple[float, ...] = tuple(float(a) for a in range(0, 360, 15))
    upright_fit: FitConfig = FitConfig(epochs=8, batch_size=128, lr=2e-3, optimizer="adam", weight_decay=1e-5,
                                       lr_schedule="exponential", lr_step_epochs=3, lr_gamma=0.7,
                                       monitor="val_acc_pct", monitor_mode="max")
    replica_models: tuple[str, ...] = tuple(MODELS)
    replica_seeds: tuple[int, ...] = (0, 1, 2)
    replica_data_seed: int = 0
    replica_train_size: int | None = None
    replica_test_size: int | None = None
    replica_train_on_val: bool = True
    replica_augment: bool = True
    replica_fit: FitConfig = FitConfig(epochs=40, batch_size=64, lr=5e-3, optimizer="adam", weight_decay=1e-6,
                                       lr_schedule="exponential", lr_step_epochs=15, lr_gamma=0.8)
    invariance_probe_size: int = 256
    eval_batch_size: int = 1_000

    def __post_init__(self):
        check_positive("width", self.width)
        for name in ("upright_models", "replica_models"):
            models = getattr(self, name)
            unknown = [m for m in models if m not in MODELS]
            if unknown:
                raise ConfigError(f"{name}: unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
        if not self.upright_models and not self.replica_models:
            raise ConfigError("nothing to do: both upright_models and replica_models are empty")
        check_angles("test_angles_deg", self.test_angles_deg)
        if not self.replica_seeds and self.replica_models:
            raise ConfigError("replica_seeds must name at least one seed")
        for name in ("upright_train_size", "test_size", "replica_train_size", "replica_test_size"):
            v = getattr(self, name)
            if v is not None:
                check_positive(name, v)
        check_positive("upright_val_size", self.upright_val_size)
        check_positive("invariance_probe_size", self.invariance_probe_size)
        check_positive("eval_batch_size", self.eval_batch_size)


PROFILES: dict[str, InvarianceConfig] = {
    "smoke": InvarianceConfig(
        width=0.1, upright_train_size=512, upright_val_size=128, test_size=100,
        test_angles_deg=tuple(float(a) for a in range(0, 360, 45)),
        upright_fit=FitConfig(epochs=1, batch_size=256, lr=2e-3, monitor="val_acc_pct", monitor_mode="max"),
        replica_models=("cnn_aug", "c8"), replica_seeds=(0, 1), replica_train_size=512, replica_test_size=500,
        replica_fit=FitConfig(epochs=1, batch_size=256, lr=2e-3),
        invariance_probe_size=16, eval_batch_size=500,
    ),
    "full": InvarianceConfig(),
}

ANCHORS = (
    Anchor("rotmnist_test_error_pct", "MNIST-rot replica test error, best G-CNN (mean over seeds, %)", 0.682,
           "E(2)-CNN D16|5C16 on MNIST-rot (Weiler & Cesa 2019)", "≤ 0.68", "lower", 0.68),
    Anchor("rotmnist_test_error_pct_c8", "MNIST-rot replica test error, C8 G-CNN (%)", 2.04,
           "escnn C8 tutorial model on MNIST-rot", "informative", "lower", None),
    Anchor("upright_to_rotated_mean_acc_pct", "Train upright, test rotated: best G-CNN mean accuracy (%)", None,
           "issue target", "≥ 97", "higher", 97.0),
    Anchor("upright_to_rotated_mean_acc_pct_cnn", "Train upright, test rotated: plain CNN mean accuracy (%)", 42.0,
           "plain CNN in a published G-CNN reproduction", "collapses", "lower", None),
    Anchor("invariance_err_rot90_max", "Max logit change under 90° turns, G-CNNs (float64)", None,
           "exact by construction", "≤ 1e-5", "lower", 1e-5),
)


def resolve_config(profile: str, overrides: Mapping[str, Any] | None = None) -> InvarianceConfig:
    return _config.resolve(PROFILES, profile, overrides)


def model_config(key: str, cfg: InvarianceConfig) -> ClassifierConfig:
    spec = MODELS[key]
    return ClassifierConfig(group=spec.group, restrict_at=spec.restrict_at, width=cfg.width * spec.width)


def build_model(key: str, cfg: InvarianceConfig, *, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_classifier(model_config(key, cfg))


def model_table(cfg: InvarianceConfig):
    """Parameter counts and groups of every model in the study (a DataFrame)."""
    import pandas as pd

    keys = list(dict.fromkeys(cfg.upright_models + cfg.replica_models))
    rows = []
    for k in keys:
        mc = model_config(k, cfg)
        rows.append({"model": k, "label": MODELS[k].label, "group": mc.group + (f"|{mc.restrict_at}C{mc.rotations}" if mc.restrict_at else ""),
                     "augmentation": MODELS[k].augment, "parameters": count_parameters(build_model(k, cfg))})
    return pd.DataFrame(rows).set_index("model")


# ---------------------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class StudyData:
    upright_train: Images
    upright_val: Images
    upright_test: Images
    replica_train: Images
    replica_test: Images
    replica_test_upright: Images


def load_data(cfg: InvarianceConfig, device: torch.device | str = "cpu") -> StudyData:
    """All splits of both protocols, on ``device``."""
    train, val, test = mnist_splits(train_size=cfg.upright_train_size, val_size=cfg.upright_val_size,
                                    test_size=cfg.test_size)
    rep = mnist_rot_replica(seed=cfg.replica_data_seed)
    rep_up = mnist_rot_replica(seed=cfg.replica_data_seed, rotate=False)
    rtrain = rep["train"]
    if cfg.replica_train_on_val:
        rtrain = Images(torch.cat([rtrain.x, rep["val"].x]), torch.cat([rtrain.y, rep["val"].y]),
                        torch.cat([rtrain.angle_deg, rep["val"].angle_deg]))
    rtrain = subset(rtrain, cfg.replica_train_size, seed=3)
    rtest = rep["test"].head(cfg.replica_test_size)
    rtest_up = rep_up["test"].head(cfg.replica_test_size)
    return StudyData(*(s.to(device) for s in (train, val, test, rtrain, rtest, rtest_up)))


def data_signature(cfg: InvarianceConfig, protocol: str) -> dict[str, Any]:
    """What identifies a training set (part of every checkpoint's config)."""
    if protocol == "upright":
        return {"protocol": protocol, "train_size": cfg.upright_train_size, "val_size": cfg.upright_val_size}
    return {"protocol": protocol, "seed": cfg.replica_data_seed, "train_size": cfg.replica_train_size,
            "train_on_val": cfg.replica_train_on_val, "augment": cfg.replica_augment}


# ---------------------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class Trained:
    key: str
    seed: int
    model: torch.nn.Module
    result: FitResult


def classification_loss(augment: bool):
    """Cross-entropy on a batch, optionally rotating each image by a fresh uniform angle (on the device)."""

    def loss_fn(model, batch):
        x, y = batch
        if augment:
            x = rotate_batch(x, random_angles(len(x), device=x.device))
        logits = model(x)
        return F.cross_entropy(logits, y), {"acc": (logits.argmax(-1) == y).float().mean()}

    return loss_fn


def train(key: str, cfg: InvarianceConfig, protocol: str, train_set: Images, *, seed: int = 0,
          val_set: Images | None = None, device=None, progress: bool | None = None) -> Trained:
    """Train (or load from its checkpoint) one model for one protocol and seed."""
    if protocol not in ("upright", "replica"):
        raise ValueError(f"protocol={protocol!r}; choose 'upright' or 'replica'")
    fit_cfg = dataclasses.replace(cfg.upright_fit if protocol == "upright" else cfg.replica_fit, seed=seed)
    augment = MODELS[key].augment or (protocol == "replica" and cfg.replica_augment)
    model = build_model(key, cfg, seed=seed)
    # the fit config is part of the run's identity (and so of its folder): more epochs train anew instead
    # of being refused by the finished checkpoint of a shorter run
    run_cfg = {"study": STUDY, "model": model_config(key, cfg), "augment": augment,
               "data": data_signature(cfg, protocol), "fit": fit_cfg}
    loader = TensorLoader(train_set.x, train_set.y, batch_size=fit_cfg.batch_size, drop_last=True, seed=seed)
    validate = None
    if val_set is not None:
        def validate(m):
            return {"val_acc_pct": accuracy_pct(predict(m, val_set.x, batch_size=cfg.eval_batch_size), val_set.y)}
    ckpt = run_dir(STUDY, f"{protocol}-{key}-s{seed}", run_cfg) / "checkpoint.pt"
    result = fit(model, classification_loss(augment), loader, config=fit_cfg, validate=validate, checkpoint=ckpt,
                 run_config=run_cfg, device=device, progress=progress, desc=f"{protocol}: {MODELS[key].label} (seed {seed})")
    return Trained(key, seed, model, result)


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def evaluate_upright_protocol(trained: Sequence[Trained], test: Images, cfg: InvarianceConfig):
    """Accuracy per test angle for each model trained upright: ``(long DataFrame, {model: predictions})``."""
    import pandas as pd

    frames, preds = [], {}
    for t in trained:
        df, p = accuracy_by_angle(t.model, test.x, test.y, cfg.test_angles_deg, batch_size=cfg.eval_batch_size)
        df.insert(0, "model", MODELS[t.key].label)
        frames.append(df)
        preds[t.key] = p
    return pd.concat(frames, ignore_index=True), preds


def evaluate_replica(trained: Sequence[Trained], data: StudyData, cfg: InvarianceConfig):
    """Test error on the replica's rotated test set and accuracy on the same digits upright, per model and
    seed (a DataFrame), plus each model's pooled confusion matrix over seeds."""
    import pandas as pd

    rows, cms = [], {}
    for t in trained:
        p_rot = predict(t.model, data.replica_test.x, batch_size=cfg.eval_batch_size).argmax(-1)
        p_up = predict(t.model, data.replica_test_upright.x, batch_size=cfg.eval_batch_size).argmax(-1)
        rows.append({"model": t.key, "label": MODELS[t.key].label, "seed": t.seed,
                     "test_error_pct": 100 - accuracy_pct(p_rot, data.replica_test.y),
                     "upright_acc_pct": accuracy_pct(p_up, data.replica_test_upright.y),
                     "rotated_acc_pct": accuracy_pct(p_rot, data.replica_test.y),
                     "train_time_s": t.result.train_time_s})
        cm = confusion_matrix(data.replica_test.y, p_rot, 10)
        cms[t.key] = cms[t.key] + cm if t.key in cms else cm
    return pd.DataFrame(rows), cms


def summarize_replica(df):
    """Mean and standard deviation of the test error over seeds, per model (sorted, best first)."""
    g = df.groupby("model", sort=False)
    out = g.agg(label=("label", "first"), seeds=("seed", "count"), test_error_pct=("test_error_pct", "mean"),
                test_error_std_pct=("test_error_pct", "std"), upright_acc_pct=("upright_acc_pct", "mean"),
                rotated_acc_pct=("rotated_acc_pct", "mean"), train_time_s=("train_time_s", "mean"))
    out["test_error_std_pct"] = out["test_error_std_pct"].fillna(0.0)
    return out.sort_values("test_error_pct")


def invariance_errors(trained: Sequence[Trained], probe: Images, angles_deg: Sequence[float] = (90, 180, 270, 45)):
    """Max |logit change| under rotation per model: 90° multiples in float64, other angles in float32."""
    import pandas as pd

    exact = [float(a) for a in angles_deg if float(a) % 90 == 0]
    other = [float(a) for a in angles_deg if float(a) % 90 != 0]
    rows = []
    for t in trained:
        row = {"model": t.key, "label": MODELS[t.key].label}
        errs = invariance_error(t.model, probe.x, exact, dtype=torch.float64) if exact else {}
        errs.update(invariance_error(t.model, probe.x, other) if other else {})
        row.update({f"rot{a:g}": errs[float(a)] for a in angles_deg})
        rows.append(row)
    df = pd.DataFrame(rows).set_index("model")
    quarter = [c for c in df.columns if c.startswith("rot") and float(c[3:]) % 90 == 0]
    df["rot90_max"] = df[quarter].max(axis=1)
    return df


def six_nine_confusion(preds: Mapping[str, torch.Tensor], test: Images, cfg: InvarianceConfig):
    """Per model and angle: share of 6s predicted as 9 and of 9s predicted as 6 (percent)."""
    import pandas as pd

    y = test.y.cpu()
    rows = []
    for key, p in preds.items():
        for a, pa in zip(cfg.test_angles_deg, p):
            rows.append({"model": MODELS[key].label, "angle_deg": a,
                         "six_as_nine_pct": 100 * (pa[y == 6] == 9).double().mean().item(),
                         "nine_as_six_pct": 100 * (pa[y == 9] == 6).double().mean().item()})
    return pd.DataFrame(rows)


def class_report(cm: torch.Tensor):
    """Per-digit precision, recall and F1 (percent) from a confusion matrix (a DataFrame)."""
    import pandas as pd

    r = precision_recall_f1(cm)
    return pd.DataFrame({k: r[k].numpy() for k in ("precision_pct", "recall_pct", "f1_pct")}).rename_axis("digit")


def discussion(m: Mapping[str, Any]) -> dict[str, str]:
    """Sentences for the notebook's discussion, written from the run's metrics (so no claim is typed)."""
    out = {}
    aug, best = m.get("rotmnist_test_error_pct_cnn_aug"), m.get("rotmnist_test_error_pct")
    if aug is not None and best is not None and m.get("rotmnist_best_model") != "cnn_aug":
        ratio = aug / best if best > 0 else float("inf")
        out["inv_aug_sentence"] = (
            f"With rotation augmentation the plain CNN reaches {aug:.2f} % test error on the replica, "
            + (f"{ratio:.1f}× the best G-CNN's {best:.2f} %: augmentation teaches part of the invariance from "
               "data, the architecture guarantees it." if aug > best else
               f"no worse than the best G-CNN's {best:.2f} %: on this run augmentation alone closed the gap."))
    else:
        out["inv_aug_sentence"] = "The augmented CNN was not part of this run's replica protocol."
    cnn, cnn_up = m.get("upright_to_rotated_mean_acc_pct_cnn"), m.get("upright_acc_pct_cnn")
    if cnn is not None and cnn_up is not None:
        out["inv_cnn_sentence"] = (
            f"Trained only on upright digits, the plain CNN reaches {cnn_up:.1f} % on the upright test set but "
            f"averages {cnn:.1f} % over all angles, a drop of {cnn_up - cnn:.1f} points "
            "(a published reproduction of this experiment reports 42 %).")
    else:
        out["inv_cnn_sentence"] = "The plain CNN was not part of this run's upright protocol."
    sixes = {k: v for k, v in m.items() if k.startswith("six_as_nine_max_pct_")}
    if sixes:
        worst = max(sixes, key=sixes.get)
        key = worst.removeprefix("six_as_nine_max_pct_")
        out["inv_six_nine_sentence"] = (
            f"At its worst angle the {MODELS[key].label} reads {sixes[worst]:.1f} % of the 6s as 9s "
            f"(and {m.get('nine_as_six_max_pct_' + key, float('nan')):.1f} % of the 9s as 6s).")
    return out


def headline_metrics(upright_df, replica_summary, inv_df, model_df, six_nine) -> dict[str, Any]:
    """The flat ``metrics`` object of ``results/05_rotation_invariance.json``."""
    m: dict[str, Any] = {}
    label_to_key = {s.label: k for k, s in MODELS.items()}
    if len(upright_df):
        mean_acc = upright_df[upright_df.label == "all"].groupby("model")["acc_pct"].mean()
        zero = upright_df[(upright_df.label == "all") & (upright_df.angle_deg == 0)].set_index("model")["acc_pct"]
        for label, v in mean_acc.items():
            m[f"upright_to_rotated_mean_acc_pct_{label_to_key[label]}"] = v
            m[f"upright_acc_pct_{label_to_key[label]}"] = zero.get(label)
        g = [lbl for lbl in mean_acc.index if MODELS[label_to_key[lbl]].group != "C1"]
        if g:
            best = max(g, key=lambda lbl: mean_acc[lbl])
            m["upright_to_rotated_mean_acc_pct"] = mean_acc[best]
            m["upright_to_rotated_best_model"] = label_to_key[best]
        for label, part in six_nine.groupby("model"):
            m[f"six_as_nine_max_pct_{label_to_key[label]}"] = part.six_as_nine_pct.max()
            m[f"nine_as_six_max_pct_{label_to_key[label]}"] = part.nine_as_six_pct.max()
    if len(replica_summary):
        for key, row in replica_summary.iterrows():
            m[f"rotmnist_test_error_pct_{key}"] = row.test_error_pct
            m[f"rotmnist_test_error_std_pct_{key}"] = row.test_error_std_pct
            m[f"rotmnist_upright_acc_pct_{key}"] = row.upright_acc_pct
        g = replica_summary[[MODELS[k].group != "C1" for k in replica_summary.index]]
        best = g if len(g) else replica_summary
        m["rotmnist_best_model"] = best.index[0]
        m["rotmnist_test_error_pct"] = best.iloc[0].test_error_pct
        m["rotmnist_test_error_std_pct"] = best.iloc[0].test_error_std_pct
        m["rotmnist_seeds"] = int(best.iloc[0].seeds)
    for key, row in inv_df.iterrows():
        m[f"invariance_err_rot90_{key}"] = row.rot90_max
        m[f"invariance_err_rot45_{key}"] = row.get("rot45")
    eq = [k for k in inv_df.index if MODELS[k].group != "C1"]
    if eq:
        m["invariance_err_rot90_max"] = float(inv_df.loc[eq, "rot90_max"].max())
    for key, row in model_df.iterrows():
        m[f"params_{key}"] = int(row.parameters)
    return m
