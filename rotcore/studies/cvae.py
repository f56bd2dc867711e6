"""Study 01: can a conditional VAE learn "rotation", and can one be built that generalises to every angle?

Four conditional VAEs (:mod:`rotcore.models.cvae`) with one encoder, one latent size and one decoder trunk,
differing only in how the angle enters (``MODELS``): the seed's single scalar, (cos θ, sin θ) through FiLM,
a learned rotation of the code (2-D latent blocks turned by θ, an ordinary decoder), and an explicit
rotation of an upright drawing. They are trained (once per seed in ``seeds``) on MNIST digits rotated by
angles from a set of intervals that leaves whole bands out (``train_angles_deg``), then judged at every 15°
over the full circle by the independent judges of :mod:`rotcore.judges` (a rotation-invariant digit
classifier and the MNIST angle regressor), which are first scored on real rotated test digits. The
generators train only on digits the judges never saw (:func:`load_data`), so a memorised training digit
does not flatter its generations.

Angle errors are **axial** (modulo 180°) for 0, 1 and 8, which look alike after a half turn, and circular
for the other digits, for the judge's own error and for the generations alike (:func:`angle_error_deg`).

The explicit-rotation model decodes an upright digit and rotates it, and the digit judge is
rotation-invariant: its numbers are the by-construction *ceiling* of the comparison, not a target met; its
equivariance is a check (``ANCHORS``) guaranteed by a test.

The notebook ``notebooks/01_cvae_rotation.py`` narrates; everything it computes is here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rotcore import judges
from rotcore.config import ConfigError, check_angle_intervals, check_angles, check_choice, check_positive
from rotcore.data import Images, mnist_splits, subset
from rotcore.judges import ANGLE_JUDGE_PROFILES, DIGIT_JUDGE_PROFILES, AngleJudge, DigitJudge
from rotcore.metrics import (
    axial_error_deg,
    bootstrap_ci95,
    circular_error_deg,
    mean_ci95,
    mse_per_image,
    ssim_per_image,
    with_ci,
)
from rotcore.models.cvae import CVAE, CVAEConfig, elbo_loss, kl_per_dim
from rotcore.rotate import (
    complement_intervals,
    distance_to_intervals_deg,
    in_intervals,
    random_angles,
    random_angles_in,
    rotate_batch,
    signed_diff_deg,
)
from rotcore.studies import Anchor
from rotcore.train import (
    FitConfig,
    FitResult,
    TensorLoader,
    autocast,
    count_parameters,
    fit,
    images_seen,
    run_dir,
    step_flops,
)

STUDY = "01_cvae_rotation"
TITLE = "Conditional VAEs and rotation"

MODELS: dict[str, str] = {
    "scalar": "seed-style (angle scalar)",
    "film": "FiLM (cos θ, sin θ)",
    "latent": "learned rotation (latent blocks)",
    "rotation": "explicit rotation",
}
COLORS = {"seed-style (angle scalar)": "#7f7f7f", "FiLM (cos θ, sin θ)": "#1f77b4",
          "learned rotation (latent blocks)": "#2ca02c", "explicit rotation": "#d62728"}

# 6 and 9 swap under a half turn and the digit judge is rotation-invariant: near 180° they are reported
# separately and left out of the headline digit accuracy (the rule).
SIX_NINE = (6, 9)
SIX_NINE_BAND_DEG = 45.0
# 0, 1 and 8 look (almost) the same after a half turn: their angle is only defined modulo 180°
AXIAL_DIGITS = (0, 1, 8)
# the seed's qualitative claim: generations "degraded significantly beyond ±30° from trained angles"
SEED_CLAIM_DEG = 30.0


@dataclasses.dataclass(frozen=True)
class CVAEStudyConfig:
    """Everything the study varies. Sizes of ``None`` mean the whole split.

    ``train_angles_deg``: the training angles as ``(lo, hi)`` degree intervals (see
    :func:`rotcore.config.check_angle_intervals`); every other angle is unseen. The default trains on
    [-90°, 90°] except a hole (30°, 60°): one band unseen inside the range, and the whole far half beyond
    its ends. ``seeds``: every model is trained once per seed (its weights, batches and the prior draws it
    is judged on); headline numbers are means over seeds with a Student-t CI (one seed: a bootstrap over
    the prior draws, clustered by draw). ``rot_blocks``: the learned-rotation model's turned 2-D latent
    blocks. ``judge_train_size``: digits the judges train on (``None``: their profile's own); the generators
    train only on the rest (:func:`load_data`).
    """

    models: tuple[str, ...] = tuple(MODELS)
    train_angles_deg: tuple[tuple[float, float], ...] = ((0.0, 30.0), (60.0, 90.0), (270.0, 360.0))
    latent_dim: int = 16
    enc_channels: tuple[int, ...] = (32, 64)
    dec_channels: tuple[int, ...] = (64, 32)
    hidden: int = 256
    film_hidden: int = 64
    rot_blocks: int = 4
    beta: float = 1.0
    train_size: int | None = None
    val_size: int = 2_000
    test_size: int | None = 2_000
    eval_angles_deg: tuple[float, ...] = tuple(float(a) for a in range(0, 360, 15))
    samples_per_cell: int = 200  # generations per (digit, angle), per seed
    sweep_step_deg: float = 5.0
    judge_profile: str = "gpu"
    judge_train_size: int | None = None
    judge_test_size: int | None = None
    fit: FitConfig = FitConfig(epochs=30, batch_size=256, lr=1e-3, lr_schedule="cosine", weight_decay=0.0,
                               monitor="val_loss", monitor_mode="min")
    eval_batch_size: int = 2_000
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self):
        if not self.models:
            raise ConfigError(f"models is empty; choose from {', '.join(MODELS)}")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ConfigError(f"models: unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
        # normalise (sorted float pairs) so that lists from papermill/YAML hash like tuples
        object.__setattr__(self, "train_angles_deg", check_angle_intervals("train_angles_deg", self.train_angles_deg))
        if self.train_angles_deg == ((0.0, 360.0),):
            raise ConfigError("train_angles_deg covers the whole circle: leave at least one band out, "
                              "or there is no unseen angle to test")
        check_angles("eval_angles_deg", self.eval_angles_deg)
        check_choice("judge_profile", self.judge_profile, ("smoke", "cpu", "gpu"))
        seeds = tuple(self.seeds) if isinstance(self.seeds, (list, tuple)) else None
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds must be a non-empty sequence of distinct non-negative integers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        for name in ("latent_dim", "hidden", "film_hidden", "val_size", "samples_per_cell", "sweep_step_deg",
                     "eval_batch_size"):
            check_positive(name, getattr(self, name))
        check_positive("beta", self.beta, allow_zero=True)
        for name in ("train_size", "test_size", "judge_train_size", "judge_test_size"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        for key in self.models:  # channel tuples, sizes and rot_blocks are checked by the model's own config
            self.model_config(key)

    def model_config(self, key: str) -> CVAEConfig:
        return CVAEConfig(conditioning=key, latent_dim=self.latent_dim, enc_channels=tuple(self.enc_channels),
                          dec_channels=tuple(self.dec_channels), enc_hidden=self.hidden, dec_hidden=self.hidden,
                          film_hidden=self.film_hidden, rot_blocks=self.rot_blocks)

    def judge_configs(self):
        """``(digit judge config, angle judge config)``: the ``judge_profile`` configs, trained on
        ``judge_train_size`` digits when that is set."""
        over = {} if self.judge_train_size is None else {"train_size": self.judge_train_size}
        return (dataclasses.replace(DIGIT_JUDGE_PROFILES[self.judge_profile], **over),
                dataclasses.replace(ANGLE_JUDGE_PROFILES[self.judge_profile], **over))

    @property
    def unseen_angles_deg(self) -> tuple[tuple[float, float], ...]:
        return complement_intervals(self.train_angles_deg)


PROFILES: dict[str, CVAEStudyConfig] = {
    "smoke": CVAEStudyConfig(
        latent_dim=8, enc_channels=(8, 16), dec_channels=(16, 8), hidden=64, film_hidden=16,
        train_size=512, val_size=256, test_size=100, eval_angles_deg=tuple(float(a) for a in range(0, 360, 45)),
        samples_per_cell=4, sweep_step_deg=45.0, judge_profile="smoke", judge_test_size=300,
        fit=FitConfig(epochs=1, batch_size=32, lr=3e-3, monitor="val_loss", monitor_mode="min"),
        eval_batch_size=500,
    ),
    # cpu, the published profile: <= 25 min on 2 cores. Two measured runs on this machine:
    #   16k generator digits, judges on 30k, fp32 evaluation: 1,878 s (judges 629, training 781,
    #     reconstruction 304, generation + judging 142, the rest ~20);
    #   12k generator digits, judges on 20k, bf16 reconstruction: 1,640 s (judges 495: the C8 digit judge
    #     ~330 of it, training 657, reconstruction 253, generation + judging 202, the rest ~33) on a day
    #     when the same code ran 1.1-1.4x slower than the day before.
    # Trimmed from the second: judges on 15k (~-120 s), generators on 10k (~-110 s; 3 seeds and 5 epochs
    # kept), 500 test digits (~-130 s), 16 prior draws per (digit, angle) cell (~-65 s): about 1,220 s
    # (20.3 min), leaving room for a 1.2x slower day.
    "cpu": CVAEStudyConfig(
        train_size=10_000, val_size=2_000, test_size=500, samples_per_cell=16, judge_profile="cpu",
        judge_train_size=15_000,
        fit=FitConfig(epochs=5, batch_size=128, lr=2e-3, lr_schedule="cosine", weight_decay=0.0,
                      monitor="val_loss", monitor_mode="min"),
        seeds=(0, 1, 2),
    ),
    # gpu: the former `full` sizes (one seed: CIs from the clustered bootstrap over prior draws), with the
    # judges on half of MNIST train and the generators on the other half
    "gpu": CVAEStudyConfig(judge_train_size=27_500),
}

_CEILING = ("decodes an upright digit, then rotates it, and the digit judge is rotation-invariant: "
            "this measures the judges, not a learned rotation")
_SEED = "seed project ('MNIST with a twist'): generations 'degraded significantly beyond ±30° from trained angles'"
_BY_EYE = "a qualitative claim judged by eye, with no number to compare"

def check_data(cfg) -> None:
    """What ``rotbook run`` checks before any notebook starts: MNIST on disk or downloadable (reads nothing)."""
    from rotcore.data import check_mnist

    check_mnist()


ANCHORS = (
    Anchor("judge_digit_acc_pct", "Digit judge: accuracy on real rotated test digits, every 15° (%)", None,
           "our target: a judge a reviewer would trust", "≥ 98", "higher", 98.0, unit=" %", fmt="{:.1f}"),
    Anchor("judge_angle_mae_deg", "Angle judge: error on real rotated test digits (axial for 0/1/8) (°)", None,
           "our target; RotNet reports 6–7° for its MNIST model", "≤ 5", "lower", 5.0, unit="°", fmt="{:.2f}",
           caveat="the 6–7° is quoted, not verified here, and is a circular error over all digits"),
    Anchor("gen_digit_acc_drop_pts_scalar", "Seed-style: digit accuracy, trained minus unseen angles (points)", None,
           _SEED, "informative", "lower", None, unit=" pts", fmt="{:.1f}", caveat=_BY_EYE),
    Anchor("gen_angle_err_unseen_deg_scalar", "Seed-style: generated-angle error at unseen angles (°)", None,
           "seed project: judged by eye", "informative", "lower", None, unit="°", fmt="{:.1f}", caveat=_BY_EYE),
    Anchor("gen_digit_acc_drop_pts_film", "FiLM: digit accuracy, trained minus unseen angles (points)", None,
           "this study", "informative", "lower", None, unit=" pts", fmt="{:.1f}"),
    Anchor("gen_angle_err_unseen_deg_film", "FiLM: generated-angle error at unseen angles (°)", None,
           "this study", "informative", "lower", None, unit="°", fmt="{:.1f}"),
    Anchor("gen_digit_acc_drop_pts_latent", "Learned rotation: digit accuracy, trained minus unseen angles (points)",
           None, "our target (the same judge on both sides); judged only when the samples at trained angles are "
           "the intended digit", "≤ 2", "lower", 2.0, unit=" pts", fmt="{:.1f}", floor="gen_digit_acc_seen_pct_latent",
           floor_threshold=90.0, floor_unit=" %", floor_label="samples at trained angles read as the intended digit"),
    Anchor("gen_angle_err_gap_deg_latent", "Learned rotation: angle error, unseen minus trained angles (°)", None,
           "our target (axial for 0/1/8); judged only when the samples at trained angles are the intended digit",
           "≤ 1", "lower", 1.0, unit="°", fmt="{:.1f}", floor="gen_digit_acc_seen_pct_latent", floor_threshold=90.0,
           floor_unit=" %", floor_label="samples at trained angles read as the intended digit"),
    Anchor("z_angle_probe_r2_scalar", "Seed-style: the angle read linearly from the code (R², test digits)", None,
           "this study", "informative", "lower", None, fmt="{:.2f}"),
    Anchor("z_angle_probe_r2_film", "FiLM: the angle read linearly from the code (R², test digits)", None,
           "this study", "informative", "lower", None, fmt="{:.2f}"),
    Anchor("gen_digit_acc_drop_pts_rotation", "Explicit rotation: digit accuracy, trained minus unseen (points)", None,
           "by construction", "ceiling", "lower", None, unit=" pts", fmt="{:.1f}", caveat=_CEILING),
    Anchor("gen_angle_err_unseen_deg_rotation", "Explicit rotation: generated-angle error at unseen angles (°)", None,
           "by construction", "ceiling", "lower", None, unit="°", fmt="{:.1f}", caveat=_CEILING),
    Anchor("explicit_equivariance_err_rotation",
           "Explicit rotation: decode at θ vs rotate_batch of decode at 0°, max |Δpixel| (trained models)", None,
           "by construction", "≤ 1e-6", "lower", 1e-6, fmt="{:.1e}", kind="check",
           test="tests/test_cvae.py::test_rotation_decoder_decodes_upright_then_rotates"),
)


def angle_error_deg(pred_deg: torch.Tensor, true_deg: torch.Tensor, digits: torch.Tensor) -> torch.Tensor:
    """The study's angle error: axial (modulo 180°, in [0, 90]) for the digits in ``AXIAL_DIGITS`` (0, 1, 8),
    circular (in [0, 180]) for the others, elementwise."""
    axial = torch.isin(digits.to(pred_deg.device), torch.tensor(AXIAL_DIGITS, device=pred_deg.device))
    return torch.where(axial, axial_error_deg(pred_deg, true_deg), circular_error_deg(pred_deg, true_deg))


def build_model(key: str, cfg: CVAEStudyConfig, *, seed: int | None = None) -> CVAE:
    torch.manual_seed(cfg.seeds[0] if seed is None else seed)
    return CVAE(cfg.model_config(key))


def model_table(cfg: CVAEStudyConfig):
    """How each model conditions on the angle, and its parameter count (a DataFrame)."""
    import pandas as pd

    how = {"scalar": "signed angle / 180 concatenated to [z, one-hot]",
           "film": "(cos θ, sin θ) → MLP → FiLM scale/shift on every decoder stage",
           "latent": f"turns {cfg.rot_blocks} 2-D code blocks by θ, 2θ, …; decoder never sees θ",
           "rotation": "decoder draws upright; rotate_batch turns it by θ"}
    return pd.DataFrame([{"model": k, "label": MODELS[k], "angle enters as": how[k],
                          "parameters": count_parameters(build_model(k, cfg))} for k in cfg.models]).set_index("model")


def angle_labels(cfg: CVAEStudyConfig, angles_deg: Sequence[float] | None = None) -> list[str]:
    """``"45°"`` for trained angles, ``"45°*"`` for unseen ones."""
    angles = cfg.eval_angles_deg if angles_deg is None else angles_deg
    seen = in_intervals(torch.tensor(angles, dtype=torch.float64), cfg.train_angles_deg)
    return [f"{a:g}°" + ("" if s else "*") for a, s in zip(angles, seen.tolist())]


def angles_sentence(cfg: CVAEStudyConfig) -> str:
    """The training and unseen angle sets, in words (glued in the notebook)."""
    fmt = ", ".join(f"[{lo:g}°, {hi:g}°]" for lo, hi in cfg.train_angles_deg)
    unseen = ", ".join(f"({lo:g}°, {hi:g}°)" for lo, hi in cfg.unseen_angles_deg)
    return f"Training angles: {fmt}. Unseen: {unseen}."


# ---------------------------------------------------------------------------------------------------------
# Cost


@functools.cache
def _judge_flops_per_image(judge_cfg) -> float:
    """A judge's training FLOPs per image: 3 × its eval-mode forward on one image (forward + backward, the
    usual rule). Counting escnn's training step directly would add its per-step filter expansion, which at
    the judges' batch of 128 is under 1 % per image, and takes far longer to count."""
    from torch.utils.flop_counter import FlopCounterMode

    from rotcore.judges import DigitJudgeConfig
    from rotcore.models.classifier import build_classifier
    from rotcore.models.regressor import AngleCNN

    model = build_classifier(judge_cfg.model) if isinstance(judge_cfg, DigitJudgeConfig) else AngleCNN(judge_cfg.model)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 1, 28, 28))
    return 3.0 * counter.get_total_flops()


def _mnist_train_size(train_size: int | None, val_size: int) -> int:
    return min(train_size, 60_000 - val_size) if train_size is not None else 60_000 - val_size


def _generator_train_size(cfg: CVAEStudyConfig) -> int:
    """Digits the generators train on, from the sizes alone (MNIST train less the validation digits and the
    judges' training and validation digits; :func:`load_data` removes them by content)."""
    judge = cfg.judge_configs()[0]
    judge_val = max(judge.val_size, cfg.val_size)
    pool = 60_000 - judge_val - _mnist_train_size(judge.train_size, judge.val_size)
    return min(cfg.train_size, pool) if cfg.train_size is not None else pool


def train_flops(cfg: CVAEStudyConfig) -> float:
    """Training FLOPs of a config: every cVAE (models × seeds), counted by :func:`rotcore.train.step_flops`
    (per image and per step), and both judges of ``judge_profile`` (counted as if not cached), each scaled by
    the images and steps it sees (epochs × full batches). A few seconds on an idle CPU (building the G-CNN judge dominates; cached per judge config)."""
    loss = cvae_loss(cfg.train_angles_deg, beta=cfg.beta)
    g = torch.Generator().manual_seed(0)
    total = 0.0
    seen, steps = images_seen(_generator_train_size(cfg), cfg.fit)
    for key in cfg.models:
        torch.manual_seed(0)
        per_image, per_step = step_flops(CVAE(cfg.model_config(key)).train(), lambda m, b: loss(m, b)[0],
                                         lambda b: (torch.rand(b, 1, 28, 28, generator=g), torch.arange(b) % 10))
        total += (per_image * seen + per_step * steps) * len(cfg.seeds)
    for judge in cfg.judge_configs():
        total += _judge_flops_per_image(judge) * images_seen(_mnist_train_size(judge.train_size, judge.val_size),
                                                             judge.fit)[0]
    return float(total)


# ---------------------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class StudyData:
    train: Images
    val: Images
    test: Images


def _digit_keys(images: Images) -> list[bytes]:
    """One key per image: its pixels at 8 bits (MNIST's own resolution)."""
    q = (images.x.detach().cpu() * 255).round().to(torch.uint8).flatten(1).numpy()
    return [row.tobytes() for row in q]


def load_data(cfg: CVAEStudyConfig, device: torch.device | str = "cpu") -> StudyData:
    """Upright MNIST splits on ``device`` (training rotates them batch by batch; evaluation rotates the test
    digits to every evaluation angle).

    The generators' training digits are disjoint from the judges': every MNIST training digit that the
    judges of ``cfg.judge_configs()`` train or validate on is removed (by its pixels, so an exact duplicate
    goes too) before ``train_size`` digits are drawn from the rest. A ``train_size`` larger than what is left
    is an error."""
    pool, val, test = mnist_splits(train_size=None, val_size=cfg.val_size, test_size=cfg.test_size)
    judged: set[bytes] = set()
    for j_train_size, j_val_size in {(jc.train_size, jc.val_size) for jc in cfg.judge_configs()}:
        j_train, j_val, _ = mnist_splits(train_size=j_train_size, val_size=j_val_size, test_size=0)
        judged.update(_digit_keys(j_train))
        judged.update(_digit_keys(j_val))
    keep = torch.tensor([k not in judged for k in _digit_keys(pool)])
    pool = pool.take(torch.nonzero(keep).squeeze(1))
    if len(pool) == 0 or (cfg.train_size is not None and cfg.train_size > len(pool)):
        raise ConfigError(f"train_size={cfg.train_size} but only {len(pool)} MNIST training digits are left once the "
                          f"judges' digits are removed; lower train_size or judge_train_size")
    train = subset(pool, cfg.train_size, seed=1)
    return StudyData(train.to(device), val.to(device), test.to(device))


def disjoint_sentence(cfg: CVAEStudyConfig, data: StudyData) -> str:
    """Who trains on which digits, in words (glued in the notebook)."""
    jc = cfg.judge_configs()[0]
    j_train = _mnist_train_size(jc.train_size, jc.val_size)
    return (f"The judges train on {j_train:,} MNIST training digits and select their epoch on {jc.val_size:,} "
            f"others; the generators train on {len(data.train):,} of the remaining digits, none of them "
            "pixel-identical to a digit the judges saw, so a generator that memorises its training digits gets "
            "no help from judges that memorised the same ones.")


def load_judges(cfg: CVAEStudyConfig, device=None, *, progress: bool | None = None) -> tuple[DigitJudge, AngleJudge]:
    """The digit and angle judges of ``cfg.judge_configs()`` (loaded from their checkpoints, trained if absent)."""
    digit_cfg, angle_cfg = cfg.judge_configs()
    return (judges.digit_judge(digit_cfg, device=device, progress=progress),
            judges.angle_judge(angle_cfg, device=device, progress=progress))


# ---------------------------------------------------------------------------------------------------------
# Training


@dataclasses.dataclass
class Trained:
    key: str
    model: CVAE
    result: FitResult
    seed: int = 0

    @property
    def label(self) -> str:
        return MODELS[self.key]


def cvae_loss(train_angles_deg: Sequence[tuple[float, float]], *, beta: float = 1.0):
    """``loss_fn`` for :func:`rotcore.train.fit`: rotate each digit of the batch by a fresh angle drawn from
    the training intervals (on the device), encode and decode conditioned on it, return ``BCE + β·KL``.

    The learned-rotation model (``model.latent_rotation``) trains on **pairs**: the encoder sees each digit at
    one training angle and the decoder must draw it at a second one, drawn independently from the same
    intervals (otherwise turning the code back and forth would cancel and teach nothing about rotation).
    Every image it sees or is asked for is at a training angle."""

    def loss_fn(model, batch):
        x, y = batch
        angle = random_angles_in(train_angles_deg, len(x), device=x.device)
        x_in = rotate_batch(x, angle)
        if getattr(model, "latent_rotation", False):
            target = random_angles_in(train_angles_deg, len(x), device=x.device)
            return elbo_loss(model(x_in, y, angle, target_angle_deg=target), rotate_batch(x, target), beta=beta)
        return elbo_loss(model(x_in, y, angle), x_in, beta=beta)

    return loss_fn


def _val_angles(cfg: CVAEStudyConfig, n: int, device, *, seed: int = 77) -> torch.Tensor:
    return random_angles_in(cfg.train_angles_deg, n, generator=torch.Generator().manual_seed(seed)).to(device)


def train(key: str, cfg: CVAEStudyConfig, data: StudyData, *, seed: int | None = None, device=None,
          progress: bool | None = None) -> Trained:
    """Train (or load from its checkpoint) one cVAE for one seed (default: the first of ``cfg.seeds``).

    Validation, and the choice of the epoch whose weights are kept (``fit``'s best state), use the ELBO
    loss (posterior mean, no sampling) on **validation** digits at fixed random training angles; the test
    digits are never read here."""
    seed = cfg.seeds[0] if seed is None else seed
    fit_cfg = dataclasses.replace(cfg.fit, seed=seed)
    model = build_model(key, cfg, seed=seed)
    # the fit config (with its seed) is part of the run's identity (and so of its folder): a run with more
    # epochs trains anew instead of being refused by the finished checkpoint of a shorter one
    run_cfg = {"study": STUDY, "model": cfg.model_config(key), "train_angles_deg": cfg.train_angles_deg,
               "beta": cfg.beta, "data": {"train_size": cfg.train_size, "val_size": cfg.val_size}, "fit": fit_cfg}
    val_a = _val_angles(cfg, len(data.val), data.val.x.device)
    val_x = rotate_batch(data.val.x, val_a)
    # the learned-rotation model is validated on its training task: draw the digit at a second training angle
    val_t = _val_angles(cfg, len(data.val), data.val.x.device, seed=78) if model.latent_rotation else val_a
    val_target = rotate_batch(data.val.x, val_t) if model.latent_rotation else val_x

    def validate(m):
        losses = []
        with torch.no_grad():
            m.eval()
            for i in range(0, len(val_x), cfg.eval_batch_size):
                sl = slice(i, i + cfg.eval_batch_size)
                out = m(val_x[sl], data.val.y[sl], val_a[sl], sample=False, target_angle_deg=val_t[sl])
                losses.append(elbo_loss(out, val_target[sl], beta=cfg.beta)[0] * len(val_x[sl]))
            m.train()
        return {"val_loss": (torch.stack(losses).sum() / len(val_x)).item()}

    loader = TensorLoader(data.train.x, data.train.y, batch_size=fit_cfg.batch_size, drop_last=True, seed=seed)
    ckpt = run_dir(STUDY, f"cvae-{key}", run_cfg) / "checkpoint.pt"
    desc = f"cVAE: {MODELS[key]}" + (f" (seed {seed})" if len(cfg.seeds) > 1 else "")
    result = fit(model, cvae_loss(cfg.train_angles_deg, beta=cfg.beta), loader, config=fit_cfg, validate=validate,
                 checkpoint=ckpt, run_config=run_cfg, device=device, progress=progress, desc=desc)
    return Trained(key, model.eval(), result, seed)


def train_all(cfg: CVAEStudyConfig, data: StudyData, *, device=None, progress: bool | None = None) -> list[Trained]:
    """Every model of ``cfg.models`` for every seed of ``cfg.seeds`` (seed-major order)."""
    return [train(k, cfg, data, seed=s, device=device, progress=progress) for s in cfg.seeds for k in cfg.models]


def first_seed(trained: Sequence[Trained]) -> list[Trained]:
    """The models of the first seed, one per key (for figures that show one model each)."""
    s = trained[0].seed
    return [t for t in trained if t.seed == s]


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def _seen_mask(cfg: CVAEStudyConfig, angles_deg) -> torch.Tensor:
    return in_intervals(torch.tensor([float(a) for a in angles_deg], dtype=torch.float64), cfg.train_angles_deg)


@torch.no_grad()
def evaluate_reconstruction(trained: Sequence[Trained], test: Images, cfg: CVAEStudyConfig):
    """Reconstruction of real test digits rotated to every evaluation angle (posterior mean ``z``): MSE and
    SSIM (torchmetrics) per image, averaged per (model, seed, angle, digit). A long DataFrame with ``seen``.

    The forward passes run under the training precision (``cfg.fit.precision``: bf16 autocast where the
    device computes it natively, about 1.7x faster on the 2-core CPU); the scores are computed in fp32."""
    import pandas as pd

    k, n = len(cfg.eval_angles_deg), len(test)
    angles = torch.tensor(cfg.eval_angles_deg, device=test.x.device).repeat_interleave(n)
    x = rotate_batch(test.x.repeat(k, 1, 1, 1), angles)  # every test digit at every angle, one batch
    y = test.y.repeat(k)
    cell = (torch.arange(k).repeat_interleave(n) * 10 + test.y.cpu().repeat(k)).long()  # (angle, digit) index
    count = torch.bincount(cell, minlength=10 * k).double()
    rows = []
    for t in trained:
        with autocast(x.device, cfg.fit.precision):
            x_hat = reconstruct(t.model, x, y, angles, batch_size=cfg.eval_batch_size).float()
        mse = torch.bincount(cell, mse_per_image(x_hat, x).cpu().double(), minlength=10 * k) / count.clamp(min=1)
        ssim = torch.bincount(cell, ssim_per_image(x_hat, x).cpu().double(), minlength=10 * k) / count.clamp(min=1)
        for c in range(10 * k):
            if count[c]:
                rows.append({"model": t.label, "key": t.key, "seed": t.seed, "angle_deg": float(cfg.eval_angles_deg[c // 10]),
                             "digit": c % 10, "mse": mse[c].item(), "ssim": ssim[c].item(), "n": int(count[c])})
    df = pd.DataFrame(rows)
    df["seen"] = _seen_mask(cfg, df.angle_deg.to_numpy()).numpy()
    return df


@torch.no_grad()
def reconstruct(model: CVAE, x: torch.Tensor, y: torch.Tensor, angle_deg, *, batch_size: int = 2_000) -> torch.Tensor:
    """Encode and decode ``x`` (digits ``y`` at ``angle_deg``, one angle or one per image) with the posterior
    mean, in batches."""
    model.eval()
    a = torch.as_tensor(angle_deg, dtype=torch.float32, device=x.device).expand(len(x))
    return torch.cat([model(x[i:i + batch_size], y[i:i + batch_size], a[i:i + batch_size], sample=False).x_hat
                      for i in range(0, len(x), batch_size)])


@torch.no_grad()
def generate(model: CVAE, digits: torch.Tensor, angles_deg: torch.Tensor, z: torch.Tensor, *,
             batch_size: int = 2_000) -> torch.Tensor:
    """Decode ``(digit, angle, z)`` triples in batches; ``(N, 1, H, W)`` probabilities on the model's device."""
    model.eval()
    out = [model.decode(z[i:i + batch_size], digits[i:i + batch_size], angles_deg[i:i + batch_size])
           for i in range(0, len(z), batch_size)]
    return torch.cat(out)


def generation_grid(cfg: CVAEStudyConfig, device, *, seed: int | None = None, latent_dim: int | None = None):
    """The (digit, angle, z) triples a model is judged on: ``samples_per_cell`` prior draws per digit (drawn
    from ``seed``, default the first of ``cfg.seeds``), the **same** draws at every evaluation angle, so
    angle is the only thing that changes. Order: angle-major, then digit, then draw."""
    g = torch.Generator().manual_seed((cfg.seeds[0] if seed is None else seed) + 1)
    n, k = cfg.samples_per_cell, len(cfg.eval_angles_deg)
    z0 = torch.randn(10, n, latent_dim or cfg.latent_dim, generator=g)
    digits = torch.arange(10)[None, :, None].expand(k, 10, n).reshape(-1)
    angles = torch.tensor(cfg.eval_angles_deg)[:, None, None].expand(k, 10, n).reshape(-1)
    z = z0[None].expand(k, 10, n, -1).reshape(-1, z0.shape[-1])
    return digits.to(device), angles.to(device), z.to(device)


def evaluate_generation(trained: Sequence[Trained], digit_judge: DigitJudge, angle_judge: AngleJudge,
                        cfg: CVAEStudyConfig):
    """Generate every (digit, angle) cell from the same prior draws and score each image with the judges.

    Returns a long DataFrame with one row per generated image: ``key``, ``seed``, ``digit``, ``draw`` (the
    prior draw, the same at every angle), ``angle_deg``, ``correct`` (the digit judge agrees with the
    conditioned digit), ``angle_err_deg`` (:func:`angle_error_deg`: axial for 0/1/8, circular otherwise),
    ``circ_err_deg``, plus ``seen``, ``dist_to_train_deg`` (circular distance from the angle to the training
    set) and ``six_nine_near_180``.
    """
    import pandas as pd

    frames = []
    for t in trained:
        device = next(t.model.parameters()).device
        digits, angles, z = generation_grid(cfg, device, seed=t.seed)
        x = generate(t.model, digits, angles, z, batch_size=cfg.eval_batch_size)
        pred_digit = digit_judge.predict(x, batch_size=cfg.eval_batch_size).cpu()
        pred_angle = angle_judge.predict_deg(x, batch_size=cfg.eval_batch_size).cpu()
        d, a = digits.cpu(), angles.cpu()
        frames.append(pd.DataFrame({
            "model": t.label, "key": t.key, "seed": t.seed, "digit": d.numpy(),
            "draw": np.tile(np.arange(cfg.samples_per_cell), len(d) // cfg.samples_per_cell),
            "angle_deg": a.double().numpy(), "correct": (pred_digit == d).numpy(),
            "angle_err_deg": angle_error_deg(pred_angle, a, d).double().numpy(),
            "circ_err_deg": circular_error_deg(pred_angle, a).double().numpy()}))
    df = pd.concat(frames, ignore_index=True)
    angles = sorted(df.angle_deg.unique())
    seen = dict(zip(angles, _seen_mask(cfg, angles).tolist()))
    dist = dict(zip(angles, distance_to_intervals_deg(torch.tensor(angles), cfg.train_angles_deg).tolist()))
    near = {a: abs(float(signed_diff_deg(torch.tensor(a), torch.tensor(180.0)))) <= SIX_NINE_BAND_DEG for a in angles}
    df["seen"] = df.angle_deg.map(seen)
    df["dist_to_train_deg"] = df.angle_deg.map(dist)
    df["six_nine_near_180"] = df.digit.isin(SIX_NINE) & df.angle_deg.map(near)
    return df


def by_cell(gen_df):
    """Per (model, seed, angle, digit): ``digit_acc_pct``, ``angle_err_deg``, ``circ_err_deg`` (a DataFrame)."""
    return gen_df.groupby(["model", "key", "seed", "angle_deg", "digit"], sort=False).agg(
        digit_acc_pct=("correct", lambda c: 100 * c.mean()), angle_err_deg=("angle_err_deg", "mean"),
        circ_err_deg=("circ_err_deg", "mean"), seen=("seen", "first"),
        six_nine_near_180=("six_nine_near_180", "first")).reset_index()


def by_angle(gen_df):
    """Per (model, angle), over seeds: digit accuracy (without 6/9 near 180°) and angle error, their lowest
    and highest seed (``*_lo``, ``*_hi``), the seen flag and the distance to the training angles."""
    head = gen_df[~gen_df.six_nine_near_180]
    keys = ["model", "key", "angle_deg"]
    acc = (100 * head.groupby([*keys, "seed"], sort=False).correct.mean()).rename("digit_acc_pct")
    err = gen_df.groupby([*keys, "seed"], sort=False).angle_err_deg.mean()
    per_seed = acc.to_frame().join(err).reset_index()
    out = per_seed.groupby(keys, sort=False).agg(
        digit_acc_pct=("digit_acc_pct", "mean"), digit_acc_pct_lo=("digit_acc_pct", "min"),
        digit_acc_pct_hi=("digit_acc_pct", "max"), angle_err_deg=("angle_err_deg", "mean"),
        angle_err_deg_lo=("angle_err_deg", "min"), angle_err_deg_hi=("angle_err_deg", "max"))
    flags = gen_df.groupby(keys, sort=False).agg(seen=("seen", "first"), dist_to_train_deg=("dist_to_train_deg", "first"))
    return out.join(flags).reset_index()


def by_distance(gen_df):
    """Per (model, distance to the nearest training angle): digit accuracy (without 6/9 near 180°) and angle
    error, the mean over seeds and the lowest and highest seed (``*_lo``, ``*_hi``). Distance 0 is every
    trained angle pooled."""
    head = gen_df[~gen_df.six_nine_near_180]
    keys = ["model", "key", "dist_to_train_deg"]
    acc = (100 * head.groupby([*keys, "seed"], sort=False).correct.mean()).rename("digit_acc_pct")
    err = gen_df.groupby([*keys, "seed"], sort=False).angle_err_deg.mean()
    per_seed = acc.to_frame().join(err).reset_index()
    return per_seed.groupby(keys, sort=False).agg(
        digit_acc_pct=("digit_acc_pct", "mean"), digit_acc_pct_lo=("digit_acc_pct", "min"),
        digit_acc_pct_hi=("digit_acc_pct", "max"), angle_err_deg=("angle_err_deg", "mean"),
        angle_err_deg_lo=("angle_err_deg", "min"), angle_err_deg_hi=("angle_err_deg", "max")).reset_index()


def distance_figure(gen_df):
    """Digit accuracy and angle error of the generations against the distance to the nearest training angle,
    one line per model with its seed band, and the seed's ±30° mark (a figure)."""
    import matplotlib.pyplot as plt

    df = by_distance(gen_df)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for ax, y, ylabel in ((axes[0], "digit_acc_pct", "digit judge agrees (%)"),
                          (axes[1], "angle_err_deg", "angle error (°; axial for 0/1/8)")):
        for name, part in df.groupby("model", sort=False):
            part = part.sort_values("dist_to_train_deg")
            ax.plot(part.dist_to_train_deg, part[y], marker="o", ms=3, label=name, color=COLORS.get(name))
            ax.fill_between(part.dist_to_train_deg, part[f"{y}_lo"], part[f"{y}_hi"], alpha=0.15, lw=0,
                            color=COLORS.get(name))
        ax.axvline(SEED_CLAIM_DEG, color="k", ls="--", lw=1)
        ax.text(SEED_CLAIM_DEG, 0.98, f" seed: 'degrades beyond ±{SEED_CLAIM_DEG:g}°'", va="top", fontsize=8,
                transform=ax.get_xaxis_transform())
        ax.set(xlabel="distance to the nearest training angle (°)", ylabel=ylabel)
    axes[0].set_ylim(0, 101)
    axes[0].legend(fontsize=8)
    fig.suptitle("generations against the distance to the training angles (0: trained; bands: lowest to highest seed)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def add_seed_bands(ax, per_angle, y: str, *, colors: Mapping[str, str] | None = None) -> None:
    """Shade each model's band between its lowest and highest seed (``<y>_lo`` … ``<y>_hi``) on ``ax``."""
    for name, part in per_angle.groupby("model", sort=False):
        part = part.sort_values("angle_deg")
        ax.fill_between(part.angle_deg, part[f"{y}_lo"], part[f"{y}_hi"], alpha=0.15, lw=0,
                        color=(colors or {}).get(name))


@torch.no_grad()
def angle_sweep(trained: Sequence[Trained], angle_judge: AngleJudge, cfg: CVAEStudyConfig, *, digits=(1, 7, 8, 0)):
    """Interpolation in angle: one prior draw per digit, decoded at every ``sweep_step_deg`` over 360°.

    Returns ``(frames, df)``: frames ``(T, models × digits, 1, H, W)`` for an animation, and per (model, seed,
    digit, step) the judge's reading and its step error ``|Δ read − Δ true|`` (smooth rotation: small and even).
    """
    import pandas as pd

    steps = torch.arange(0.0, 360.0, cfg.sweep_step_deg, dtype=torch.float64).float()
    frames, rows = [], []
    for t in trained:
        g = torch.Generator().manual_seed(t.seed + 2)
        z0 = torch.randn(len(digits), cfg.latent_dim, generator=g)
        device = next(t.model.parameters()).device
        d = torch.tensor(digits).repeat_interleave(len(steps)).to(device)
        a = steps.repeat(len(digits)).to(device)
        z = z0.repeat_interleave(len(steps), 0).to(device)
        x = generate(t.model, d, a, z, batch_size=cfg.eval_batch_size)
        read = angle_judge.predict_deg(x, batch_size=cfg.eval_batch_size).cpu().view(len(digits), len(steps))
        frames.append(x.cpu().view(len(digits), len(steps), *x.shape[1:]))
        for i, dig in enumerate(digits):
            delta_read = signed_diff_deg(read[i].roll(-1), read[i])
            step_err = (delta_read - cfg.sweep_step_deg).abs()
            for j, ang in enumerate(steps.tolist()):
                rows.append({"model": t.label, "key": t.key, "seed": t.seed, "digit": dig, "angle_deg": ang,
                             "read_deg": read[i, j].item(), "step_err_deg": step_err[j].item()})
    frames = torch.cat(frames).transpose(0, 1)  # (T, models*digits, 1, H, W)
    df = pd.DataFrame(rows)
    df["seen"] = _seen_mask(cfg, df.angle_deg.to_numpy()).numpy()
    return frames, df


@torch.no_grad()
def explicit_equivariance_err(trained: Sequence[Trained], cfg: CVAEStudyConfig, *, n: int = 64) -> float | None:
    """Max ``|decode(z, y, θ) − rotate_batch(decode(z, y, 0°), θ)|`` over ``n`` prior draws and every
    evaluation angle, for each trained explicit-rotation model (``None`` if there is none). By
    construction 0 (the decoder draws upright and ``rotate_batch`` turns it)."""
    errs = []
    for t in trained:
        if t.key != "rotation":
            continue
        device = next(t.model.parameters()).device
        g = torch.Generator().manual_seed(t.seed + 3)
        z, y = torch.randn(n, cfg.latent_dim, generator=g).to(device), (torch.arange(n) % 10).to(device)
        upright = generate(t.model, y, torch.zeros(n, device=device), z)
        for a in cfg.eval_angles_deg:
            angle = torch.full((n,), float(a), device=device)
            errs.append((generate(t.model, y, angle, z) - rotate_batch(upright, angle.double())).abs().max().item())
    return max(errs) if errs else None


@torch.no_grad()
def latent_traversal(t: Trained, test: Images, cfg: CVAEStudyConfig, *, digit: int = 3, angle_deg: float = 0.0,
                     steps: int = 7, span: float = 2.5):
    """Images along the two most active latent directions (largest mean KL on test digits), others at 0.

    Returns ``(images (2*steps, 1, H, W), dims)``: row 1 varies ``dims[0]`` from ``-span`` to ``span``, row 2
    ``dims[1]``.
    """
    dims = active_dims(t, test, cfg)[:2]
    device = next(t.model.parameters()).device
    vals = torch.linspace(-span, span, steps)
    z = torch.zeros(2 * steps, cfg.latent_dim)
    for r, dim in enumerate(dims):
        z[r * steps:(r + 1) * steps, dim] = vals
    y = torch.full((2 * steps,), digit)
    return generate(t.model, y.to(device), torch.full((2 * steps,), float(angle_deg), device=device), z.to(device)), dims


@torch.no_grad()
def active_dims(t: Trained, test: Images, cfg: CVAEStudyConfig) -> list[int]:
    """Latent dimensions sorted by mean KL to the prior on test digits at training angles (most used first)."""
    a = _val_angles(cfg, len(test), test.x.device)
    mu, logvar = t.model.encode(rotate_batch(test.x, a), a)
    return kl_per_dim(mu, logvar).mean(0).argsort(descending=True).tolist()


def _fit_linear(features: torch.Tensor, targets: torch.Tensor, *, ridge: float = 1e-3) -> torch.Tensor:
    """Least squares with an intercept and a small ridge, in float64: weights ``(d + 1, k)``."""
    a = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64)], dim=1)
    reg = ridge * torch.eye(a.shape[1], dtype=torch.float64)
    reg[-1, -1] = 0.0
    return torch.linalg.solve(a.T @ a + reg, a.T @ targets.double())


def probe_r2(train_z: torch.Tensor, train_t: torch.Tensor, test_z: torch.Tensor, test_t: torch.Tensor) -> float:
    """R² of a linear probe fitted on ``(train_z, train_t)`` and scored on ``(test_z, test_t)``:
    ``1 − Σ‖pred − t‖² / Σ‖t − mean(t)‖²`` over all target columns (1 is a perfect read-out, 0 is no better
    than the mean, negative is worse)."""
    w = _fit_linear(train_z, train_t)
    pred = torch.cat([test_z.double(), torch.ones(len(test_z), 1, dtype=torch.float64)], dim=1) @ w
    t = test_t.double()
    return float(1.0 - ((pred - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum())


@torch.no_grad()
def z_angle_probe(trained: Sequence[Trained], data: StudyData, cfg: CVAEStudyConfig):
    """Does the code carry the angle? For each model and seed, a linear probe from the posterior mean (what
    :meth:`CVAE.encode` returns, given the input and its angle) to ``(cos θ, sin θ)``: fitted on validation
    digits at random training angles, scored (R²) on test digits at other random training angles. The seed
    and FiLM encoders see the rotated input and are never told θ, so their code may well carry it; the
    explicit model's encoder sees the digit turned back upright, and the learned model's code is turned back
    by −θ, so for them a high R² would mean the angle leaks. Linear: a lower bound on what the code holds.
    A DataFrame (``key``, ``model``, ``seed``, ``r2``)."""
    import pandas as pd

    def codes(model, images, angles):
        mu = torch.cat([model.encode(images.x[i:i + cfg.eval_batch_size], angles[i:i + cfg.eval_batch_size])[0]
                        for i in range(0, len(images), cfg.eval_batch_size)])
        return mu.float().cpu()

    rows = []
    for t in trained:
        t.model.eval()
        dev = next(t.model.parameters()).device
        a_fit = _val_angles(cfg, len(data.val), dev, seed=79)
        a_test = _val_angles(cfg, len(data.test), dev, seed=80)
        z_fit = codes(t.model, Images(rotate_batch(data.val.x, a_fit), data.val.y), a_fit)
        z_test = codes(t.model, Images(rotate_batch(data.test.x, a_test), data.test.y), a_test)
        target = lambda a: torch.stack([torch.cos(torch.deg2rad(a)), torch.sin(torch.deg2rad(a))], 1).cpu()  # noqa: E731
        rows.append({"key": t.key, "model": t.label, "seed": t.seed,
                     "r2": probe_r2(z_fit, target(a_fit.double()), z_test, target(a_test.double()))})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------
# Judges, judged first


@torch.no_grad()
def judge_scores(digit_judge: DigitJudge, angle_judge: AngleJudge, test: Images, cfg: CVAEStudyConfig, *,
                 angle_draws: int = 3):
    """The judges' own scores on real test digits, with 95 % CIs from a bootstrap clustered by test digit
    (each digit is seen at every evaluation angle, or at ``angle_draws`` random angles).

    Returns ``(metrics, digit_df, angle_per_digit_df)``: ``judge_digit_acc_pct`` (every evaluation angle, all
    digits), its worst angle and its accuracy on 6 and 9; ``judge_angle_mae_deg`` (:func:`angle_error_deg`,
    axial for 0/1/8), the same as a plain circular error over all digits (``judge_angle_mae_circular_deg``)
    and the median; per angle the digit accuracy, per digit the angle judge's axial and circular errors.
    """
    import pandas as pd

    y = test.y.cpu()
    correct = torch.stack([digit_judge.predict(rotate_batch(test.x, float(a))).cpu() == y
                           for a in cfg.eval_angles_deg], dim=1).double()  # (digits, angles)
    digit_df = pd.DataFrame({"angle_deg": list(cfg.eval_angles_deg), "acc_pct": 100 * correct.mean(0).numpy()})
    for d in range(10):
        digit_df[f"acc_pct_{d}"] = 100 * correct[y == d].mean(0).numpy()
    m = with_ci("judge_digit_acc_pct", *bootstrap_ci95(100 * correct.mean(1).numpy()))  # one value per digit image
    m["judge_digit_acc_min_pct"] = float(digit_df.acc_pct.min())
    m["judge_digit_acc_69_pct"] = 100 * float(correct[torch.isin(y, torch.tensor(SIX_NINE))].mean())
    errs, circ = [], []
    for s in range(angle_draws):
        a = random_angles(len(test), generator=torch.Generator().manual_seed(1000 + s)).to(test.x.device)
        pred = angle_judge.predict_deg(rotate_batch(test.x, a)).cpu()
        errs.append(angle_error_deg(pred, a.cpu(), y).double())
        circ.append(circular_error_deg(pred, a.cpu()).double())
    err, circ = torch.stack(errs, 1), torch.stack(circ, 1)  # (digits, draws)
    m.update(with_ci("judge_angle_mae_deg", *bootstrap_ci95(err.mean(1).numpy())))
    m["judge_angle_mae_circular_deg"] = float(circ.mean())
    m["judge_angle_median_deg"] = float(err.median())
    per_digit = pd.DataFrame({"digit": list(range(10)),
                              "error": ["axial" if d in AXIAL_DIGITS else "circular" for d in range(10)],
                              "mae_deg": [float(err[y == d].mean()) for d in range(10)],
                              "circular_mae_deg": [float(circ[y == d].mean()) for d in range(10)],
                              "median_deg": [float(err[y == d].median()) for d in range(10)]})
    return m, digit_df, per_digit


# ---------------------------------------------------------------------------------------------------------
# Summaries and headline numbers

# per (model, seed) statistics of the generations; each is also a function of a resample of the prior draws
GEN_STATS = ("digit_acc_seen_pct", "digit_acc_unseen_pct", "digit_acc_drop_pts", "digit_acc_drop_worst_pts",
             "digit_acc_beyond30_pct", "angle_err_seen_deg", "angle_err_unseen_deg", "angle_err_gap_deg")


def _nanmean(a) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanmean(a)) if a.size and not np.isnan(a).all() else float("nan")


@dataclasses.dataclass
class _Draws:
    """One model and seed's generations as (prior draws × angles) arrays."""

    correct: np.ndarray  # 1/0, NaN where left out of the digit accuracy (6 and 9 near 180°)
    err: np.ndarray  # angle error (°), axial for 0/1/8
    seen: np.ndarray  # (angles,) bool
    beyond30: np.ndarray  # (angles,) bool: farther than SEED_CLAIM_DEG from every training angle

    @classmethod
    def of(cls, part) -> _Draws:
        c = part.correct.astype(float).where(~part.six_nine_near_180)
        wide = part.assign(c=c).pivot_table(index=["digit", "draw"], columns="angle_deg", values=["c", "angle_err_deg"],
                                            dropna=False)
        angles = wide["c"].columns
        flags = part.groupby("angle_deg").agg(seen=("seen", "first"), dist=("dist_to_train_deg", "first")).loc[angles]
        return cls(wide["c"].to_numpy(), wide["angle_err_deg"][angles].to_numpy(), flags.seen.to_numpy(bool),
                   (flags.dist > SEED_CLAIM_DEG).to_numpy())

    def stat(self, name: str, rows=slice(None)) -> float:
        """One of ``GEN_STATS`` on the draws ``rows`` (all by default; a bootstrap passes a resample)."""
        if name == "angle_err_gap_deg":  # unseen minus seen: the judge's own floor cancels
            return self.stat("angle_err_unseen_deg", rows) - self.stat("angle_err_seen_deg", rows)
        if name.startswith("angle_err"):
            cols = self.seen if name == "angle_err_seen_deg" else ~self.seen
            return _nanmean(self.err[rows][:, cols]) if cols.any() else float("nan")
        with np.errstate(invalid="ignore"):
            acc = 100 * np.nanmean(self.correct[rows], axis=0)  # per angle, pooled over digits and draws
        seen = _nanmean(acc[self.seen])
        unseen = acc[~self.seen]
        if name == "digit_acc_seen_pct":
            return seen
        if name == "digit_acc_unseen_pct":
            return _nanmean(unseen)
        if name == "digit_acc_drop_pts":
            return seen - _nanmean(unseen)
        if name == "digit_acc_drop_worst_pts":
            return seen - float(np.nanmin(unseen)) if unseen.size else float("nan")
        if name == "digit_acc_beyond30_pct":
            return _nanmean(acc[self.beyond30])
        raise KeyError(f"unknown statistic {name!r}; choose from {', '.join(GEN_STATS)}")


def _weighted(df, col: str) -> float:
    return float((df[col] * df.n).sum() / df.n.sum()) if len(df) and df.n.sum() else float("nan")


def digit_claim(cells, key: str = "scalar", good=(1, 7), bad=(8, 0)) -> dict[str, float]:
    """The seed's claim that rotation works better for 1 and 7 than for 8 and 0, for one model: mean angle
    error (:func:`angle_error_deg`) and digit accuracy of each group at seen and at unseen angles, from
    :func:`by_cell` (averaged over cells, so over seeds too)."""
    part = cells[cells.key == key]
    out = {}
    for name, group in (("17", good), ("80", bad)):
        g = part[part.digit.isin(group)]
        for where, sel in (("seen", g.seen), ("unseen", ~g.seen)):
            out[f"claim_angle_err_{where}_deg_{name}_{key}"] = float(g[sel].angle_err_deg.mean())
            out[f"claim_digit_acc_{where}_pct_{name}_{key}"] = float(g[sel].digit_acc_pct.mean())
    return out


def seed_summary(gen_df, recon_df, sweep_df):
    """One row per (model, seed): ``GEN_STATS``, the 6/9 accuracy near 180°, reconstruction MSE / SSIM at
    trained and unseen angles, and the sweep's step error (a DataFrame)."""
    import pandas as pd

    rows = []
    for (key, seed), part in gen_df.groupby(["key", "seed"], sort=False):
        draws = _Draws.of(part)
        rec = recon_df[(recon_df.key == key) & (recon_df.seed == seed)]
        sw = sweep_df[(sweep_df.key == key) & (sweep_df.seed == seed)]
        six_nine = part[part.six_nine_near_180]
        row = {"model": key, "seed": seed, **{s: draws.stat(s) for s in GEN_STATS},
               "gen_69_acc_near180_pct": 100 * six_nine.correct.mean() if len(six_nine) else float("nan"),
               "recon_mse": _weighted(rec[rec.seen], "mse"), "recon_ssim": _weighted(rec[rec.seen], "ssim"),
               "recon_mse_unseen": _weighted(rec[~rec.seen], "mse"),
               "recon_ssim_unseen": _weighted(rec[~rec.seen], "ssim"),
               "sweep_step_err_deg": sw.step_err_deg.mean() if len(sw) else float("nan")}
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(per_seed):
    """One row per model: the mean over seeds of :func:`seed_summary` (a DataFrame indexed by model key)."""
    out = per_seed.drop(columns="seed").groupby("model", sort=False).mean()
    out.insert(0, "label", [MODELS[k] for k in out.index])
    return out


def headline_metrics(gen_df, per_seed, judge_metrics: Mapping[str, Any], models_df,
                     equivariance_err: float | None = None, probe_df=None, *, n_boot: int = 2_000) -> dict[str, Any]:
    """The flat ``metrics`` of ``results/01_cvae_rotation.json``.

    ``gen_<stat>_<model>`` for every ``GEN_STATS`` with ``_ci95`` and ``_n``: with two or more seeds the mean
    over seeds and its Student-t interval (``n`` = seeds); with one seed the value and a percentile
    bootstrap over the prior draws, clustered by draw (a draw is decoded at every angle; ``n`` = draws).
    Then the per-model means of the other :func:`seed_summary` columns, the 1/7-vs-8/0 claim, the judges'
    own scores, parameter counts, the explicit decoder's equivariance check and ``n_seeds``. Anchored
    metrics of models not in this run are ``None``.
    """
    m: dict[str, Any] = dict(judge_metrics)
    seeds = sorted(per_seed.seed.unique())
    m["n_seeds"] = len(seeds)
    for key, part in per_seed.groupby("model", sort=False):
        if len(seeds) >= 2:
            for s in GEN_STATS:
                m.update(with_ci(f"gen_{s}_{key}", *mean_ci95(part[s].to_numpy())))
        else:
            draws = _Draws.of(gen_df[gen_df.key == key])
            ids = np.arange(len(draws.correct))
            for s in GEN_STATS:
                m.update(with_ci(f"gen_{s}_{key}", *bootstrap_ci95(
                    ids, statistic=lambda r, s=s, d=draws: d.stat(s, r.astype(int)), n_boot=n_boot, unit="sample")))
        for col in part.columns.drop(["model", "seed", *GEN_STATS]):
            m[f"{col}_{key}"] = float(part[col].mean())
    if "scalar" in set(per_seed.model):
        m.update(digit_claim(by_cell(gen_df)))
    for key, row in models_df.iterrows():
        m[f"params_{key}"] = int(row.parameters)
    m["explicit_equivariance_err_rotation"] = equivariance_err
    if probe_df is not None:
        for key, part in probe_df.groupby("key", sort=False):
            r2 = part.r2.to_numpy()
            if len(r2) >= 2:
                m.update(with_ci(f"z_angle_probe_r2_{key}", *mean_ci95(r2)))
            else:
                m[f"z_angle_probe_r2_{key}"] = float(r2[0])
    for a in ANCHORS:
        m.setdefault(a.metric, None)
    return m


def _ci_text(m: Mapping[str, Any], name: str, unit: str, fmt: str = "{:.1f}") -> str:
    ci = m.get(f"{name}_ci95")
    return "" if ci is None else f" (95 % CI {fmt.format(ci[0])} to {fmt.format(ci[1])}{unit})"


def _drop_sentence(m: Mapping[str, Any], key: str) -> str:
    seen, unseen, drop = (m.get(f"gen_digit_acc_{s}_{key}") for s in ("seen_pct", "unseen_pct", "drop_pts"))
    ci = m.get(f"gen_digit_acc_drop_pts_{key}_ci95")
    if ci is None:
        resolved = ""
    elif ci[0] > 0:
        resolved = "; the interval lies above zero, so the drop is resolved by this run"
    elif ci[1] < 0:
        resolved = "; the interval lies below zero: unseen angles score higher on this run"
    else:
        resolved = "; the interval includes zero, so this run does not resolve a drop"
    return (f"read as the intended digit {seen:.1f} % of the time at trained angles and {unseen:.1f} % at unseen "
            f"ones, a drop of {drop:.1f} points{_ci_text(m, f'gen_digit_acc_drop_pts_{key}', ' points')}{resolved}. "
            f"At its worst unseen angle it loses {m[f'gen_digit_acc_drop_worst_pts_{key}']:.1f} points"
            f"{_ci_text(m, f'gen_digit_acc_drop_worst_pts_{key}', ' points')}")


def discussion(m: Mapping[str, Any]) -> dict[str, str]:
    """Sentences for the notebook's discussion, written from the run's metrics (each holds whatever the
    outcome; a model left out of the run gets a sentence saying so)."""
    out = {}
    n_seeds = m.get("n_seeds") or 0
    out["cvae_ci_sentence"] = (
        f"Every interval below is a 95 % Student-t interval over the {n_seeds} seeds (each seed trains the "
        "models anew and draws its own latent codes)." if n_seeds >= 2 else
        "This run has one seed: every interval below is a percentile bootstrap over the prior draws, "
        "clustered by draw (one draw is decoded at every angle); it leaves out the variation between "
        "training runs, so it is narrower than an interval over seeds would be.")
    if m.get("judge_digit_acc_pct") is not None:
        out["cvae_judge_sentence"] = (
            f"On 6 and 9 the rotation-invariant digit judge scores {m['judge_digit_acc_69_pct']:.1f} %. "
            f"The angle judge's error is {m['judge_angle_mae_deg']:.2f}° with half turns forgiven for 0, 1 and 8, "
            f"{m['judge_angle_mae_circular_deg']:.2f}° if every digit is scored circularly (median "
            f"{m['judge_angle_median_deg']:.2f}°). Some of that error need not be the judge's: a real digit written "
            "at a slant has no exact upright angle (this run does not measure how much that contributes).")
    if m.get("gen_digit_acc_drop_pts_scalar") is not None:
        seen, far = m["gen_digit_acc_seen_pct_scalar"], m["gen_digit_acc_beyond30_pct_scalar"]
        far_ci = m.get("gen_digit_acc_beyond30_pct_scalar_ci95")
        lower = far_ci is not None and far_ci[1] < seen
        out["cvae_seed_sentence"] = (
            "The seed-style model's generations are " + _drop_sentence(m, "scalar") + ". "
            + (f"More than {SEED_CLAIM_DEG:g}° from every trained angle its accuracy is {far:.1f} %"
               f"{_ci_text(m, 'gen_digit_acc_beyond30_pct_scalar', ' %')}, against {seen:.1f} % at trained angles: "
               if far == far else f"No evaluation angle lies more than {SEED_CLAIM_DEG:g}° from the trained ones: ")
            + ("consistent with the seed's qualitative 'degrades beyond ±30°', now with a number. " if lower else
               "the seed's qualitative 'degrades beyond ±30°' is not resolved by this run. ")
            + f"The angle judge's error on its generations is {m['gen_angle_err_seen_deg_scalar']:.1f}° at trained "
              f"angles and {m['gen_angle_err_unseen_deg_scalar']:.1f}°"
              f"{_ci_text(m, 'gen_angle_err_unseen_deg_scalar', '°')} at unseen ones.")
    else:
        out["cvae_seed_sentence"] = "The seed-style model was not part of this run."
    if m.get("gen_digit_acc_drop_pts_film") is not None:
        out["cvae_film_sentence"] = (
            "The FiLM model, which sees the angle as a point on the circle but must still learn what each angle "
            "looks like, has its generations " + _drop_sentence(m, "film") + f"; its angle error at unseen angles "
            f"is {m['gen_angle_err_unseen_deg_film']:.1f}°{_ci_text(m, 'gen_angle_err_unseen_deg_film', '°')} "
            f"(at trained angles {m['gen_angle_err_seen_deg_film']:.1f}°).")
    else:
        out["cvae_film_sentence"] = "The FiLM model was not part of this run."
    if m.get("gen_digit_acc_drop_pts_latent") is not None:
        gap, gap_ci = m["gen_angle_err_gap_deg_latent"], m.get("gen_angle_err_gap_deg_latent_ci95")
        out["cvae_latent_sentence"] = (
            "The learned-rotation model, whose decoder never sees θ and only gets a code turned by θ, has its "
            "generations " + _drop_sentence(m, "latent") + f". The angle judge reads them with an error of "
            f"{m['gen_angle_err_seen_deg_latent']:.1f}° at trained angles and {m['gen_angle_err_unseen_deg_latent']:.1f}° "
            f"at unseen ones, a gap of {gap:.1f}°{_ci_text(m, 'gen_angle_err_gap_deg_latent', '°')}"
            + ("" if gap_ci is None else
               ("; the interval lies above zero, so the error does grow at unseen angles" if gap_ci[0] > 0 else
                "; the interval includes zero, so this run does not resolve a growth at unseen angles"
                if gap_ci[1] >= 0 else "; the interval lies below zero")) + ".")
    else:
        out["cvae_latent_sentence"] = "The learned-rotation model was not part of this run."
    probes = {k: m.get(f"z_angle_probe_r2_{k}") for k in MODELS}
    if any(v is not None for v in probes.values()):
        parts = [f"{MODELS[k]} {v:.2f}{_ci_text(m, f'z_angle_probe_r2_{k}', '', '{:.2f}')}"
                 for k, v in probes.items() if v is not None]
        out["cvae_probe_sentence"] = (
            "How much of the angle a linear probe reads from each model's code (R² for (cos θ, sin θ) on test "
            "digits at training angles; 1 is a perfect read-out, 0 none): " + "; ".join(parts) + ".")
    else:
        out["cvae_probe_sentence"] = "This run did not probe the codes for the angle."
    if m.get("gen_digit_acc_drop_pts_rotation") is not None:
        out["cvae_rotation_sentence"] = (
            "The explicit-rotation decoder is the ceiling of this comparison, not a result: it draws an upright "
            "digit and turns it, and the digit judge is rotation-invariant, so what it measures is mostly the "
            "judges. Its generations are " + _drop_sentence(m, "rotation")
            + f". The angle judge reads its unseen-angle generations with an error of "
              f"{m['gen_angle_err_unseen_deg_rotation']:.2f}° against {m['gen_angle_err_seen_deg_rotation']:.2f}° "
              f"at trained angles. As for every model, 6 and 9 within {SIX_NINE_BAND_DEG:g}° of 180° are left out "
              f"of the digit accuracy; this model's score on them there is "
              f"{m['gen_69_acc_near180_pct_rotation']:.1f} %.")
    else:
        out["cvae_rotation_sentence"] = "The explicit-rotation model was not part of this run."
    if "claim_angle_err_seen_deg_17_scalar" in m:
        a17, a80 = m["claim_angle_err_seen_deg_17_scalar"], m["claim_angle_err_seen_deg_80_scalar"]
        u17, u80 = m["claim_angle_err_unseen_deg_17_scalar"], m["claim_angle_err_unseen_deg_80_scalar"]
        out["cvae_claim_sentence"] = (
            f"At trained angles the judge's angle error for the seed-style model's 1s and 7s is {a17:.1f}° against "
            f"{a80:.1f}° for its 8s and 0s ({u17:.1f}° vs {u80:.1f}° at unseen angles): "
            + ("1 and 7 do rotate more legibly on this run, as the seed says. " if a17 < a80 else
               "the seed's ranking is not reproduced on this run. ")
            + "Half turns are forgiven for 0, 1 and 8 (their angle is only defined modulo 180°) but not for 7, "
              "and part of each error is the judge's own (see its per-digit error above).")
    return out
# ---------------------------------------------------------------------------------------------------------
# Interactive (Colab / Jupyter only; the static site shows the animation and the figure grids instead)


def explorer(trained: Sequence[Trained], test: Images, cfg: CVAEStudyConfig):
    """ipywidgets sliders for digit, angle and each model's two most active latent directions; every change
    redraws one generation per model. Needs a live kernel (a slider on the static site cannot re-run Python)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from rotcore.plots import image_grid

    dims = {t.key: active_dims(t, test, cfg)[:2] for t in trained}

    def show(digit: int, angle_deg: float, z1: float, z2: float):
        imgs = []
        for t in trained:
            device = next(t.model.parameters()).device
            z = torch.zeros(1, cfg.latent_dim, device=device)
            z[0, dims[t.key][0]], z[0, dims[t.key][1]] = z1, z2
            imgs.append(generate(t.model, torch.tensor([digit], device=device),
                                 torch.tensor([float(angle_deg)], device=device), z).cpu())
        seen = "trained" if bool(_seen_mask(cfg, [angle_deg])[0]) else "unseen"
        image_grid(torch.cat(imgs), nrow=1, titles=[f"{t.label}\n{angle_deg:g}° ({seen})" for t in trained], scale=2.2)
        plt.show()

    return widgets.interactive(
        show, digit=widgets.IntSlider(value=7, min=0, max=9, description="digit"),
        angle_deg=widgets.FloatSlider(value=0, min=0, max=355, step=5, description="angle (°)"),
        z1=widgets.FloatSlider(value=0, min=-3, max=3, step=0.25, description="latent 1"),
        z2=widgets.FloatSlider(value=0, min=-3, max=3, step=0.25, description="latent 2"))
