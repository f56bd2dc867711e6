"""Study 01: can a conditional VAE learn "rotation", and can one be built that generalises to every angle?

Conditional VAEs (:mod:`rotcore.models.cvae`) with one encoder, one latent size and one decoder trunk,
differing in how the angle enters and in what they are trained to do (``MODELS``, ``MODEL_SPECS``): the
seed's single scalar, (cos θ, sin θ) through FiLM, a learned rotation of the code (2-D latent blocks turned by
θ, an ordinary decoder), and an explicit rotation of an upright drawing. Every model trains on **pairs**
(:func:`cvae_loss`): the encoder sees a digit at one training angle, the decoder must draw the same digit at
a second one, so the angle the decoder is given is the only source of the output's orientation. This departs
from the seed's recipe (rebuild the input at its own angle), under which the encoder puts the orientation in
``z`` and the decoder learns to ignore its angle; that recipe stays as one row (``scalar_self``) so the failure
it causes is on the page. The models train (once per seed in ``seeds``) on MNIST digits rotated by angles from
a set of intervals that leaves whole bands out (``train_angles_deg``), then are judged at every 15° over the
full circle by the independent judges of :mod:`rotcore.judges` (a rotation-invariant digit classifier and the
MNIST angle regressor), which are first scored on real rotated test digits. The generators train only on
digits the judges never saw (:func:`load_data`). Samples are drawn from the prior N(0, I) (temperature 1).

Angle errors are **axial** (modulo 180°) for 0, 1 and 8, which look alike after a half turn, and circular
for the other digits, for the judge's own error and for the generations alike (:func:`angle_error_deg`).

The explicit-rotation model decodes an upright digit and rotates it, and the digit judge is
rotation-invariant: it rotates correctly by construction, so its drop and angle error are a *by-construction
reference* (what perfect rotation scores with these judges, given how well it draws upright digits), not a
ceiling and not a target met; its equivariance is a check (``ANCHORS``) guaranteed by a test.

Training settings (batch size, β, epochs) are chosen on validation digits by :func:`choose_settings`
(``scripts/choose_cvae_settings.py``), never on test digits.

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
from rotcore.config import (
    ConfigError,
    check_angle_intervals,
    check_angles,
    check_choice,
    check_positive,
    check_profile,
)
from rotcore.data import MNIST_TRAIN_SIZE, Images, mnist_splits, mnist_train_count, subset
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
    PRECISIONS,
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
    "scalar_self": "seed recipe (scalar, self-reconstruction)",
    "scalar": "scalar angle (pairs)",
    "film": "FiLM (cos θ, sin θ)",
    "latent": "learned rotation (latent blocks)",
    "rotation": "explicit rotation (by construction)",
}
# key -> (conditioning of rotcore.models.cvae, training recipe): "pairs" encodes at a1 and draws at a2 (both
# training angles); "self" is the seed's recipe, rebuilding the input at its own angle
MODEL_SPECS: dict[str, tuple[str, str]] = {
    "scalar_self": ("scalar", "self"),
    "scalar": ("scalar", "pairs"),
    "film": ("film", "pairs"),
    "latent": ("latent", "pairs"),
    "rotation": ("rotation", "pairs"),
}
RECIPES = ("pairs", "self")
COLORS = {MODELS["scalar_self"]: "#7f7f7f", MODELS["scalar"]: "#9467bd", MODELS["film"]: "#1f77b4",
          MODELS["latent"]: "#2ca02c", MODELS["rotation"]: "#d62728"}
# the model whose samples are not held to the sample-quality floor (it is kept to show the seed's failure)
SEED_RECIPE = "scalar_self"
# the sample-quality floor: samples at trained angles read as the intended digit (%), below which a drop or a
# gap between trained and unseen angles is a difference between two failures
SAMPLE_FLOOR_PCT = 90.0
# how samples are drawn: z ~ N(0, T² I); T = 1 is the prior itself (no truncation). Truncation was measured
# with the page's statistic (samples at all 12 trained evaluation angles read right, other draws than the
# page's) by scripts/check_sample_temperature.py --judge-seeds 0 1 2 (the a27a051 page's generators, seeds 0 / 1,
# read by a panel of three 5-epoch digit judges; 2026-12-04). At T = 1 / 0.7 / 0.5 the panel read scalar
# 65.7-66.5 / 67.5-67.7 / 67.4-67.9 %, FiLM 73.1-77.5 / 75.2-78.5 / 75.3-78.5, learned rotation 59.9-64.0 /
# 58.3-61.7 / 56.2-60.8, explicit rotation 92.5-95.2 / 96.5-99.2 / 99.2-100 (seed recipe 63.3-67.5 / 63.8-71.5 /
# 62.8-69.9). Truncation lifts the by-construction model and none of the learned ones by more than 3 points;
# the lift over the floor that one judge alone showed (FiLM 94.2 / 95.8 % at T = 0.7, the run before) was that
# judge's reading. The samples' limit is the conditional decoder, not draws from the prior's tails: T stays 1.
SAMPLE_TEMPERATURE = 1.0
# the angle judge's fallback target when ≤ 5° is out of reach: its error at uniform angles within this
# factor of its error on upright digits (MNIST's slant plus its own error at 0°, which the run cannot separate),
# judged only when that upright error is at most UPRIGHT_FLOOR_MAX_DEG (a plausible slant, not a broken judge).
# A judge trained on uniform angles errs about equally at every angle, so the ratio sits near 1 almost by
# construction: it does not show that the upright error is slant (the page says so)
JUDGE_SLANT_RATIO = 1.5
UPRIGHT_FLOOR_MAX_DEG = 15.0

# 6 and 9 swap under a half turn and the digit judge is rotation-invariant: near 180° they are reported
# separately and left out of the headline digit accuracy (the issue's rule).
SIX_NINE = (6, 9)
SIX_NINE_BAND_DEG = 45.0
# 0, 1 and 8 look (almost) the same after a half turn: their angle is only defined modulo 180°
AXIAL_DIGITS = (0, 1, 8)
# the seed's qualitative claim: generations "degraded significantly beyond ±30° from trained angles"
SEED_CLAIM_DEG = 30.0
# the issue's targets for a design that generalises to unseen angles (above the floor): the digit accuracy
# drops by at most this many points and the angle error grows by at most this many degrees
DROP_TARGET_PTS = 2.0
GAP_TARGET_DEG = 5.0
# a design whose angle error at unseen angles is at least this share of the chance level
# (:func:`chance_angle_error_deg`), or whose interval reaches it, does not follow its angle there
NEAR_CHANCE_SHARE = 0.8
# two linear-probe R² closer than this are read as carrying about as much of the angle (one seed has no interval)
PROBE_SAME_R2 = 0.05


@dataclasses.dataclass(frozen=True)
class CVAEStudyConfig:
    """Everything the study varies. Sizes of ``None`` mean the whole split.

    ``train_angles_deg``: the training angles as ``(lo, hi)`` degree intervals (see
    :func:`rotcore.config.check_angle_intervals`); every other angle is unseen. The default trains on
    [-90°, 90°] except a hole (30°, 60°): one band unseen inside the range, and the whole far half beyond
    its ends. ``seeds``: every model is trained once per seed (its weights, batches and the prior draws it
    is judged on); headline numbers are means over seeds (see :func:`headline_metrics` for their intervals).
    ``recon_test_size`` / ``recon_angles_deg``: the reconstruction table's test digits and angles (``None``:
    all test digits / every evaluation angle); a trimmed table pays for training steps. ``rot_blocks``: the learned-rotation model's turned 2-D latent
    blocks. ``judge_train_size``: digits the judges train on (``None``: their profile's own); the generators
    train only on the rest (:func:`load_data`). ``digit_judge_seeds``: one digit judge per seed, read as one
    panel (:class:`DigitJudgePanel`); ``digit_judge_epochs``: their epochs (``None``: their profile's own).
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
    recon_test_size: int | None = None
    recon_angles_deg: tuple[float, ...] | None = None
    samples_per_cell: int = 200  # generations per (digit, angle), per seed
    sweep_step_deg: float = 5.0
    judge_profile: str = "gpu"
    judge_train_size: int | None = None
    judge_test_size: int | None = None
    judge_val_size: int | None = None  # the judges' validation digits (each judge config's own when None)
    digit_judge_seeds: tuple[int, ...] = (0,)
    digit_judge_epochs: int | None = None
    angle_judge_epochs: int | None = None
    fit: FitConfig = FitConfig(epochs=30, batch_size=256, lr=1e-3, lr_schedule="cosine", weight_decay=0.0,
                               monitor="val_loss", monitor_mode="min")
    eval_batch_size: int = 2_000
    seeds: tuple[int, ...] = (0,)
    replicated: tuple[str, ...] = ()  # models trained again with each of replicate_seeds (their readings pooled)
    replicate_seeds: tuple[int, ...] = ()  # ... training seeds besides ``seeds`` (one already there is not repeated)

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
        if self.recon_angles_deg is not None:
            object.__setattr__(self, "recon_angles_deg", tuple(float(a) for a in self.recon_angles_deg))
            check_angles("recon_angles_deg", self.recon_angles_deg)
        check_profile("judge_profile", self.judge_profile)
        seeds = tuple(self.seeds) if isinstance(self.seeds, (list, tuple)) else None
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds must be a non-empty sequence of distinct non-negative integers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        judge_seeds = tuple(self.digit_judge_seeds) if isinstance(self.digit_judge_seeds, (list, tuple)) else None
        if not judge_seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in judge_seeds) \
                or len(set(judge_seeds)) != len(judge_seeds):
            raise ConfigError("digit_judge_seeds must be a non-empty sequence of distinct non-negative integers, "
                              f"got {self.digit_judge_seeds!r}")
        object.__setattr__(self, "digit_judge_seeds", judge_seeds)
        for key in self.replicated:  # a replicated model left out of ``models`` is not trained
            check_choice("replicated", key, tuple(MODELS))
        object.__setattr__(self, "replicated", tuple(self.replicated))
        object.__setattr__(self, "replicate_seeds", tuple(self.replicate_seeds))
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in self.replicate_seeds) \
                or len(set(self.replicate_seeds)) != len(self.replicate_seeds):
            raise ConfigError(f"replicate_seeds must be distinct non-negative integers, got {self.replicate_seeds!r}")
        for name in ("latent_dim", "hidden", "film_hidden", "val_size", "samples_per_cell", "sweep_step_deg",
                     "eval_batch_size"):
            check_positive(name, getattr(self, name))
        check_positive("beta", self.beta, allow_zero=True)
        for name in ("train_size", "test_size", "judge_train_size", "judge_test_size", "judge_val_size",
                     "recon_test_size", "digit_judge_epochs", "angle_judge_epochs"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        for key in self.models:  # channel tuples, sizes and rot_blocks are checked by the model's own config
            self.model_config(key)

    def model_seeds(self, key: str) -> tuple[int, ...]:
        """The training seeds of model ``key``: ``seeds``, then, if it is ``replicated``, the ``replicate_seeds`` not
        already among them."""
        extra = self.replicate_seeds if key in self.replicated else ()
        return (*self.seeds, *(s for s in extra if s not in self.seeds))

    def model_config(self, key: str) -> CVAEConfig:
        return CVAEConfig(conditioning=MODEL_SPECS[key][0], latent_dim=self.latent_dim, enc_channels=tuple(self.enc_channels),
                          dec_channels=tuple(self.dec_channels), enc_hidden=self.hidden, dec_hidden=self.hidden,
                          film_hidden=self.film_hidden, rot_blocks=self.rot_blocks)

    def judge_configs(self):
        """``(digit judge config, angle judge config)``: the ``judge_profile`` configs, trained on
        ``judge_train_size`` digits and validated on ``judge_val_size`` when those are set, the angle judge
        for ``angle_judge_epochs`` (the digit judge's for its first seed; see :meth:`digit_judge_configs` for
        the whole panel)."""
        base = ANGLE_JUDGE_PROFILES[self.judge_profile]
        fit_over = {} if self.angle_judge_epochs is None else {"fit": dataclasses.replace(base.fit, epochs=self.angle_judge_epochs)}
        return (self.digit_judge_configs()[0], dataclasses.replace(base, **self._judge_data(), **fit_over))

    def _judge_data(self) -> dict[str, int]:
        """The judge-config fields this config sets: ``train_size`` and ``val_size`` where given."""
        return {k: v for k, v in (("train_size", self.judge_train_size), ("val_size", self.judge_val_size))
                if v is not None}

    def digit_judge_configs(self):
        """One digit judge config per ``digit_judge_seeds``: the ``judge_profile`` config on
        ``judge_train_size`` digits (validated on ``judge_val_size``) for ``digit_judge_epochs`` epochs (each
        when set), seeded by that seed (its initial weights and batches). The study reads them as one panel
        (:class:`DigitJudgePanel`)."""
        base = DIGIT_JUDGE_PROFILES[self.judge_profile]
        fit_over = {} if self.digit_judge_epochs is None else {"epochs": self.digit_judge_epochs}
        return tuple(dataclasses.replace(base, **self._judge_data(), fit=dataclasses.replace(base.fit, **fit_over, seed=s))
                     for s in self.digit_judge_seeds)

    @property
    def reconstruction_angles_deg(self) -> tuple[float, ...]:
        return self.eval_angles_deg if self.recon_angles_deg is None else self.recon_angles_deg

    @property
    def unseen_angles_deg(self) -> tuple[tuple[float, float], ...]:
        return complement_intervals(self.train_angles_deg)


# cpu training settings, chosen on validation digits by scripts/choose_cvae_settings.py (learned-rotation model,
# seed 100, 10k training digits; 31 min on 2 cores, judges included, 2026-12-03). Samples at trained angles read
# as the intended digit / validation pairs (encode at a1, draw at a2) read right, in %:
#   batch 32, beta 1: 4 epochs 46.4 / 85.8, 8 epochs 51.7 / 94.0 | batch 32, beta 3: 61.5 / 77.5, 74.9 / 92.3
#   batch 64, beta 1: 4 epochs 42.9 / 73.0, 8 epochs 47.2 / 91.2 | batch 64, beta 3: 52.6 / 59.4, 71.9 / 87.0
# The best affordable point (<= CPU_MAX_IMAGES) is batch 32, beta 3, 4 epochs; every 8-epoch point is better and
# does not fit the 25-minute budget (the gpu profile trains 30 epochs).
# The generators are step-limited at that point (scripts/check_cvae_floor_budget.py, FiLM, seed 100, the page's
# judge panel; samples at trained angles read right / validation pairs read right, %): 4 epochs 86.7 / 86.8,
# 16 epochs 98.3 / 100.0, 4 epochs on 40k digits 98.6 / 99.8 (equal steps, equal result). Steps, not width,
# pay: at half the width (encoder channels 16, 32; decoder 32, 16) a step costs ~0.55x, and FiLM trained
# 8 epochs in the time 4 took at full width reads 93.8 / 97.9 (16 epochs: 98.3 / 99.7, the full width's
# score at half its time). Same check at half width, 8 / 12 epochs: scalar 87.4 / 91.5 %, learned rotation
# 71.3 / 77.4 %. The cpu profile trains the half-width models for the most epochs its budget affords.
# On the 2-core Xeon with AMX (bf16) that published the pages since 2026-12-05 the 10-epoch page took 875 s
# (generators 334 s, ~6.7 s per epoch and model), so the budget holds twice the epochs. Same check, seed 100,
# 2026-12-05 (scripts/check_cvae_floor_budget.py): scalar 16 / 20 epochs 92.6 / 94.2 %, learned rotation
# 16 / 24 epochs 80.6 / 83.7 % (validation pairs 95.3 / 97.8 %): 20 epochs for every model (~+330 s, ~1,200 s
# in all). The learned rotation stays under the floor at any epoch count this budget holds.
# beta at 20 epochs (2026-12-06, same Xeon, scripts/choose_cvae_settings.py, seed 100, batch 32, the page's
# judge panel; samples at trained angles read right, %, learned rotation / scalar / FiLM / explicit rotation):
#   beta 3: 80.8 / 94.2 / - / -    beta 5: 93.4 / 98.7 / 99.0 / 99.8    beta 6: 90.0 / 98.8 / 99.4 / 100.0
#   beta 8: 80.8 / - / - / -       beta 10: 77.1 / 89.2 / - / -
# (validation pairs read right at beta 5: 97.2 / 99.5 / 100.0 / 100.0 %). beta 5 has the best mean and the best
# worst model; the learned rotation's reading moves by several points between neighbouring betas, so its
# margin over the floor is not large.
# 2026-12-06 (later): 16 epochs, not 20, to pay for the machine's slower days (see the cpu profile's comment).
CPU_BATCH_SIZE = 32
CPU_BETA = 5.0
CPU_EPOCHS = 16
CPU_TRAIN_SIZE = 10_000
CPU_ENC_CHANNELS = (16, 32)  # half the default width (see above)
CPU_DEC_CHANNELS = tuple(c // 2 for c in CVAEStudyConfig.dec_channels)  # (32, 16), half the default
CPU_MAX_IMAGES = 160_000  # training images per model and seed that the 25-minute budget affords (see below)

PROFILES: dict[str, CVAEStudyConfig] = {
    "smoke": CVAEStudyConfig(
        latent_dim=8, enc_channels=(8, 16), dec_channels=(16, 8), hidden=64, film_hidden=16,
        train_size=512, val_size=256, test_size=100, eval_angles_deg=tuple(float(a) for a in range(0, 360, 45)),
        samples_per_cell=4, sweep_step_deg=45.0, judge_profile="smoke", judge_test_size=300,
        digit_judge_seeds=(0, 1), replicated=("latent",), replicate_seeds=(1,),
        fit=FitConfig(epochs=1, batch_size=32, lr=3e-3, monitor="val_loss", monitor_mode="min"),
        eval_batch_size=500,
    ),
    # cpu, the published profile: <= 25 min on 2 cores. Unit costs measured by the settings chooser
    # (2026-12-03, 2 cores; training times from its checkpoints' epoch times) and for the judge panel
    # (2026-12-04, 2 cores, 15k digits, alone on the machine):
    #   digit judge (C8, 15k digits): 2 epochs 125-142 s (98.10 / 97.83 / 97.73 % on the page's rotated test
    #   digits, seeds 0-2; panel 97.77 %), 3 epochs 191-198 s (98.30 / 98.47 / 98.60 %, panel 98.50 %),
    #   5 epochs ~281 s (99.00-99.30 %, panel 99.13 %); its eval forward 2.3 ms / image (fp32);
    #   angle judge (15k x 12 epochs, batch 64) 143 s;
    #   one generator, batch 32, 4 epochs x 10k pairs: 54-81 s (1.35-2 ms / image, ~68 s on average) at the
    #   default width; at the cpu profile's half width 63-76 s for 8 epochs (0.8-0.95 ms / image, 2026-12-04);
    #   generation + one digit judge + the angle judge: ~6 ms / image.
    # Why a panel of judges and one generator seed: three digit judges of 5 epochs, each 99.0-99.3 % on real
    # rotated digits, read the same samples of the a27a051 generators very differently
    # (scripts/check_sample_temperature.py --judge-seeds 0 1 2, T = 1, samples at trained angles read right,
    # judges 0 / 1 / 2, mean of two generator seeds): FiLM 89.6 / 51.5 / 73.3 %, scalar 84.5 / 41.9 / 62.9,
    # learned rotation 70.3 / 48.6 / 61.7, explicit rotation 96.2 / 91.4 / 93.4; the panel read FiLM 73.1 / 77.5
    # on generator seeds 0 / 1, scalar 65.7 / 66.5, learned rotation 59.9 / 64.0. One judge's initialisation
    # moves the floor reading by up to 43 points, the generator's seed by up to 4.4: the budget goes to the
    # panel (three judges, 3 epochs each, so each still clears the 98 % judge target), not a second generator
    # seed (the intervals are then bootstraps over prior draws, clustered by draw; see the ci sentence).
    # This profile:
    #   judges 3 x ~195 + 143                                                                  ~730 s
    #   generators    5 models x 1 seed x 68 s                                                  ~340 s
    #   reconstruction  5 runs x 12 angles (every 30°) x 200 test digits = 12k x ~1.7 ms        ~20 s
    #   generation    5 runs x 24 angles x 10 digits x 12 draws = 14k x ~10.7 ms (three judges) ~155 s
    #   the judges' own scores: 500 test digits x 24 angles x 3 judges x 2.3 ms                 ~85 s
    #   the rest (data, sweep, probe, upright floor, figures)                                   ~60 s
    #   total ~1,390 s (23 min). Each 10k training images add ~17 s per model (~85 s) at this width.
    # The page published at 204a8fb took 1,362 s. Since then the floor's sensitivity check reads the samples
    # at trained angles once more, rescaled to a brightest pixel of 1 (5 runs x 12 angles x 120 = 7.2k x 3
    # judges x 2.3 ms ~50 s), and 500 real test digits twice (~7 s): ~1,420 s (23.7 min) expected.
    # Why the check (2026-12-04, the 204a8fb page's generators and judges, other prior draws): FiLM's 5s look
    # like faint 5s and are read as 8s (125 of 144); the samples' brightest pixel averages 0.76-0.84 by model.
    # Read rescaled to peak 1, samples at trained angles: scalar 71.3 -> 79.9 %, FiLM 77.9 -> 85.4 %, learned
    # rotation 60.8 -> 65.3 %, explicit rotation 94.7 -> 97.7 %; real test digits 98.8 % either way. Binarised
    # at 0.5 instead they read 54.0 / 61.4 / 64.5 / 99.7 %: the reading depends on how a faint sample is
    # shown, so the page keeps the samples as drawn for the verdict and shows the rescaled reading beside it.
    # Neither sampling from a mixture fitted to the training codes (GMM, 1 or 10 components: FiLM 76.5 /
    # 75.8 % against 77.9 % from the prior on the same cells) nor an encoder told the label (q(z | x, y),
    # retrained with the same settings: FiLM 78.4 %, scalar 74.9 % against 71.3 %; 5s still 9 / 3 %) lifted
    # a learned model toward the floor.
    # 2026-12-04, half width (see CPU_EPOCHS): the published 1,362 s had the generators' cell at 301 s and the
    # judges' (training and their own scores) at 845 s. Half-width generators for 10 epochs: ~8.5 s per epoch
    # and model, ~420 s (+120 s); the judges' own scores on 300 test digits instead of 500 (-35 s): ~1,450 s
    # (24 min) expected. 12 epochs (+90 s more) do not fit: CPU_MAX_IMAGES.
    # 2026-12-04 (later): that page (5c4a259) took 1,411 s; rerun unchanged on a slower day, 1,563 s. The digit
    # judges now read in bf16 (see above DigitJudgePanel): ~200 s of fp32 reading at half the cost, ~-100 s.
    # 2026-12-05, the 2-core Xeon with AMX: the page took 875 s (judges 458 s, generators 334 s); 20 epochs
    # (see CPU_EPOCHS): ~1,200 s expected here. On the slower machines of earlier days it would not fit.
    # The page at dc367a7 took 1,174 s. The fitted-code sampler (evaluate_generation(codes_from=...), the page's
    # check of why a model misses the floor) reads every generation cell once more: ~+60 s.
    # The page at 6b31c46 took 1,303 s (judges 470 s, generators 704 s, generation 54 s, fitted sampler 46 s).
    # Its learned rotation read 91.7 % at trained angles, 1.7 points over the floor; three training seeds of it
    # read 82.2 / 91.7 / 92.0 % on a 2-core AMD EPYC (Zen 4, bf16 without AMX; scripts/check_cvae_unseen_angles.py,
    # 2026-12-06), so one seed cannot say which side of the floor the design is on. It now trains with three
    # seeds (replicated), its verdict on the pooled draws: ~+2 x 160 s on that Xeon (training ~140 s, evaluation
    # ~20 s each), ~1,620 s, over the budget there. The page at 81e84e0 took 1,225 s on a 2-core Xeon that trains
    # 1.11-1.30x faster (rotbook's speed check; judges 372 s, generators 703 s, generation 70 s, fitted sampler
    # 54 s); its three seeds read 91.7 / 91.2 / 94.2 %.
    # The page at 1a68162 took 1,515 s, 15 s over, on the same Xeon on a slower day: its training cells ran
    # 20-29 % slower than the 81e84e0 page's identical ones (judges 433 s: training 311, validation ~105, own
    # scores 16; generators 914 s: 832 training, 7 runs of ~6.5 s per epoch). The next day the speed check read
    # 0.94x (1.02-1.07x that day): ~1,640 s expected unchanged. What pays (~-200 s at that day's speed):
    #   the judges select their epoch on 2,000 validation digits, not 5,000 (their validation reads in fp32,
    #   ~2.3 ms per digit and epoch for the C8 panel: ~-70 s); the angle judge trains 10 epochs, not 12 (~-16 s);
    #   the generators 18 epochs, not 20 (~-90 s); 10 prior draws per (digit, angle) cell, not 12 (generation and
    #   the fitted sampler, ~-23 s). Fused Adam would save ~10 % of a generator step (16.4-16.9 against
    #   18.6-18.7 ms at batch 32, measured) but is rotcore.train's, shared by every page.
    # That run (at 2cb6ae4, not published) took 1,508 s, still 8 s over: judges 388 s (training 326), generators
    # 960 s (878 training: ~6.9 s per epoch and model, ~6.0 the day before), generation 65 s, fitted sampler 58 s.
    # Its floors held (learned rotation 93.2 % [90.6, 95.6] over its three seeds, scalar 99.0, FiLM 99.7,
    # explicit 97.8; each digit judge >= 98.1 %). So the generators train 16 epochs (~-105 s): ~1,400 s expected
    # at that speed.
    "cpu": CVAEStudyConfig(
        enc_channels=CPU_ENC_CHANNELS, dec_channels=CPU_DEC_CHANNELS,
        train_size=CPU_TRAIN_SIZE, val_size=2_000, test_size=300, recon_test_size=200,
        recon_angles_deg=tuple(float(a) for a in range(0, 360, 30)), samples_per_cell=10, judge_profile="cpu",
        judge_train_size=15_000, judge_val_size=2_000, digit_judge_seeds=(0, 1, 2), digit_judge_epochs=3,
        angle_judge_epochs=10, beta=CPU_BETA,
        fit=FitConfig(epochs=CPU_EPOCHS, batch_size=CPU_BATCH_SIZE, lr=2e-3, lr_schedule="cosine", warmup_steps=100,
                      weight_decay=0.0, monitor="val_loss", monitor_mode="min"),
        seeds=(0,), replicated=("latent",), replicate_seeds=(1, 2),
    ),
    # gpu: the former `full` sizes (one seed: CIs from the clustered bootstrap over prior draws), with the
    # judges on half of MNIST train and the generators on the other half; batch 64 for more steps
    "gpu": CVAEStudyConfig(judge_train_size=27_500, digit_judge_seeds=(0, 1, 2), replicated=("latent",),
                           replicate_seeds=(1, 2),
                           fit=FitConfig(epochs=30, batch_size=64, lr=1e-3, lr_schedule="cosine", warmup_steps=200,
                                         weight_decay=0.0, monitor="val_loss", monitor_mode="min")),
}

_BY_CONSTRUCTION = ("decodes an upright digit, then rotates it, and the digit judge is rotation-invariant: "
                    "its drop measures the judges and how well it draws upright digits, not a learned rotation")
_SEED = "seed project ('MNIST with a twist'): generations 'degraded significantly beyond ±30° from trained angles'"
_BY_EYE = "a qualitative claim judged by eye, with no number to compare"

def check_data(cfg) -> None:
    """What ``rotbook run`` checks before any notebook starts: MNIST on disk or downloadable (reads nothing)."""
    from rotcore.data import check_mnist

    check_mnist()


_FLOOR = dict(floor_unit=" %", floor_label="samples at trained angles read as the intended digit")


def _floor(key: str) -> dict:
    return dict(floor=f"gen_digit_acc_seen_pct_{key}", floor_threshold=SAMPLE_FLOOR_PCT, **_FLOOR)


def _seen_anchor(key: str, label: str) -> Anchor:
    return Anchor(f"gen_digit_acc_seen_pct_{key}", f"{label}: samples at trained angles read as the intended digit (%)",
                  None, "our target: the floor below which a drop or gap compares two failures",
                  f"≥ {SAMPLE_FLOOR_PCT:g}", "higher", SAMPLE_FLOOR_PCT, unit=" %", fmt="{:.1f}")


ANCHORS = (
    Anchor("judge_digit_acc_pct", "Digit judge: accuracy on real rotated test digits, every 15° (%)", None,
           "our target: a judge a reviewer would trust", "≥ 98", "higher", 98.0, unit=" %", fmt="{:.1f}"),
    Anchor("judge_angle_mae_deg", "Angle judge: error on real rotated test digits (axial for 0/1/8) (°)", None,
           "our target; RotNet reports 6–7° for its MNIST model", "≤ 5", "lower", 5.0, unit="°", fmt="{:.2f}",
           caveat="the 6–7° is quoted, not verified here, and is a circular error over all digits"),
    Anchor("judge_angle_mae_over_upright_ratio",
           "Angle judge: error at uniform angles over its error on upright test digits (the slant floor)", None,
           "our target when ≤ 5° is out of reach: close to its error on upright digits (MNIST's slant plus its "
           "own error at 0°, not separable here); judged only when the upright error is a plausible slant",
           f"≤ {JUDGE_SLANT_RATIO:g}", "lower", JUDGE_SLANT_RATIO, fmt="{:.2f}",
           floor="judge_angle_upright_mae_deg", floor_threshold=UPRIGHT_FLOOR_MAX_DEG, floor_better="lower", floor_unit="°",
           floor_label="the judge's error on upright test digits"),
    _seen_anchor("scalar", "Scalar angle, pairs"),
    _seen_anchor("film", "FiLM"),
    _seen_anchor("latent", "Learned rotation"),
    _seen_anchor("rotation", "Explicit rotation"),
    Anchor("gen_digit_acc_seen_pct_scalar_self", "Seed recipe: samples at trained angles read as the intended digit (%)",
           None, "this study: the seed's self-reconstruction recipe, kept to show its failure", "informative",
           "higher", None, unit=" %", fmt="{:.1f}"),
    Anchor("gen_digit_acc_drop_pts_scalar_self", "Seed recipe: digit accuracy, trained minus unseen angles (points)",
           None, _SEED, "informative", "lower", None, unit=" pts", fmt="{:.1f}", caveat=_BY_EYE, **_floor("scalar_self")),
    Anchor("gen_angle_err_unseen_deg_scalar_self", "Seed recipe: generated-angle error at unseen angles (°)", None,
           "seed project: judged by eye", "informative", "lower", None, unit="°", fmt="{:.1f}", caveat=_BY_EYE),
    Anchor("gen_digit_acc_drop_pts_scalar", "Scalar angle, pairs: digit accuracy, trained minus unseen angles (points)",
           None, "this study", "informative", "lower", None, unit=" pts", fmt="{:.1f}", **_floor("scalar")),
    Anchor("gen_angle_err_gap_deg_scalar", "Scalar angle, pairs: angle error, unseen minus trained angles (°)", None,
           "this study", "informative", "lower", None, unit="°", fmt="{:.1f}", **_floor("scalar")),
    Anchor("gen_digit_acc_drop_pts_film", "FiLM: digit accuracy, trained minus unseen angles (points)", None,
           "this study", "informative", "lower", None, unit=" pts", fmt="{:.1f}", **_floor("film")),
    Anchor("gen_angle_err_gap_deg_film", "FiLM: angle error, unseen minus trained angles (°)", None,
           "this study", "informative", "lower", None, unit="°", fmt="{:.1f}", **_floor("film")),
    Anchor("gen_digit_acc_drop_pts_latent", "Learned rotation: digit accuracy, trained minus unseen angles (points)",
           None, "our target (the same judge on both sides); judged only when the samples at trained angles are "
           "the intended digit", f"≤ {DROP_TARGET_PTS:g}", "lower", DROP_TARGET_PTS, unit=" pts", fmt="{:.1f}",
           **_floor("latent")),
    Anchor("gen_angle_err_gap_deg_latent", "Learned rotation: angle error, unseen minus trained angles (°)", None,
           "our target (axial for 0/1/8); judged only when the samples at trained angles are the intended digit",
           f"≤ {GAP_TARGET_DEG:g}", "lower", GAP_TARGET_DEG, unit="°", fmt="{:.1f}", **_floor("latent")),
    Anchor("z_angle_probe_r2_scalar_self", "Seed recipe: the angle read linearly from the code (R², test digits)",
           None, "this study", "informative", "lower", None, fmt="{:.2f}"),
    Anchor("z_angle_probe_r2_scalar", "Scalar angle, pairs: the angle read linearly from the code (R², test digits)",
           None, "this study", "informative", "lower", None, fmt="{:.2f}"),
    Anchor("z_angle_probe_r2_film", "FiLM: the angle read linearly from the code (R², test digits)", None,
           "this study", "informative", "lower", None, fmt="{:.2f}"),
    Anchor("gen_digit_acc_drop_pts_rotation", "Explicit rotation: digit accuracy, trained minus unseen (points)", None,
           "by construction", "by-construction reference", "lower", None, unit=" pts", fmt="{:.1f}",
           caveat=_BY_CONSTRUCTION, **_floor("rotation")),
    Anchor("gen_angle_err_unseen_deg_rotation", "Explicit rotation: generated-angle error at unseen angles (°)", None,
           "by construction", "by-construction reference", "lower", None, unit="°", fmt="{:.1f}",
           caveat=_BY_CONSTRUCTION),
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


def chance_angle_error_deg(digits, *, n_grid: int = 3_600) -> float:
    """The chance level of :func:`angle_error_deg`: the expected error of a generator whose angles are uniformly
    random, averaged over ``digits`` (the digit of each evaluated sample, so the mix of axial and circular
    digits is the evaluation's). For each digit the metric itself is averaged over ``n_grid`` predicted angles
    evenly spaced on the circle (midpoints), against a true angle of 0° (a uniform prediction's error does not
    depend on the true angle): 90° for a circular digit (uniform on [0, 180]), 45° for an axial one (uniform on
    [0, 90])."""
    digits = torch.tensor(np.asarray(digits, dtype=np.int64)).flatten()
    if not len(digits):
        return float("nan")
    pred = (torch.arange(n_grid, dtype=torch.float64) + 0.5) * (360.0 / n_grid)
    values, counts = torch.unique(digits, return_counts=True)
    per_digit = torch.stack([angle_error_deg(pred, torch.zeros_like(pred), torch.full((n_grid,), int(d))).mean()
                             for d in values])
    return float((per_digit * counts.double()).sum() / counts.sum())


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
    trained_on = {"pairs": "pairs: encode at a₁, draw at a₂", "self": "self-reconstruction (the seed's recipe)"}
    return pd.DataFrame([{"model": k, "label": MODELS[k], "angle enters as": how[MODEL_SPECS[k][0]],
                          "trained on": trained_on[MODEL_SPECS[k][1]],
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


def _generator_train_size(cfg: CVAEStudyConfig) -> int:
    """Digits the generators train on, from the sizes alone (MNIST train less the validation digits and the
    judges' training and validation digits; :func:`load_data` removes them by content)."""
    judge = cfg.judge_configs()[0]
    judge_val = max(judge.val_size, cfg.val_size)
    pool = MNIST_TRAIN_SIZE - judge_val - mnist_train_count(judge.train_size, judge.val_size)
    return min(cfg.train_size, pool) if cfg.train_size is not None else pool


def train_flops(cfg: CVAEStudyConfig) -> float:
    """Training FLOPs of a config: every cVAE (each model × its seeds), counted by :func:`rotcore.train.step_flops`
    (per image and per step), and every judge of ``judge_profile`` (the digit judges of the panel and the angle
    judge, counted as if not cached), each scaled by
    the images and steps it sees (epochs × full batches). A few seconds on an idle CPU (building the G-CNN judge dominates; cached per judge config)."""
    g = torch.Generator().manual_seed(0)
    total = 0.0
    seen, steps = images_seen(_generator_train_size(cfg), cfg.fit)
    for key in cfg.models:
        loss = cvae_loss(cfg.train_angles_deg, beta=cfg.beta, recipe=MODEL_SPECS[key][1])
        torch.manual_seed(0)
        per_image, per_step = step_flops(CVAE(cfg.model_config(key)).train(), lambda m, b, loss=loss: loss(m, b)[0],
                                         lambda b: (torch.rand(b, 1, 28, 28, generator=g), torch.arange(b) % 10))
        total += (per_image * seen + per_step * steps) * len(cfg.model_seeds(key))
    for judge in (*cfg.digit_judge_configs(), cfg.judge_configs()[1]):
        total += _judge_flops_per_image(judge) * images_seen(mnist_train_count(judge.train_size, judge.val_size),
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


def settings_sentence(cfg: CVAEStudyConfig, data: StudyData) -> str:
    """The training settings of this run, in words (glued in the notebook)."""
    steps = cfg.fit.epochs * (len(data.train) // cfg.fit.batch_size)
    return (f"Every model (encoder channels {', '.join(map(str, cfg.enc_channels))}, decoder "
            f"{', '.join(map(str, cfg.dec_channels))}) trains for {cfg.fit.epochs} epochs of {len(data.train):,} digits at batch size "
            f"{cfg.fit.batch_size} ({steps:,} optimiser steps) with β = {cfg.beta:g} and a learning rate of "
            f"{cfg.fit.lr:g} ({cfg.fit.lr_schedule} schedule), and keeps the epoch with the lowest validation loss.")


def disjoint_sentence(cfg: CVAEStudyConfig, data: StudyData) -> str:
    """Who trains on which digits, in words (glued in the notebook)."""
    jc = cfg.judge_configs()[0]
    j_train = mnist_train_count(jc.train_size, jc.val_size)
    return (f"The judges train on {j_train:,} MNIST training digits and select their epoch on {jc.val_size:,} "
            f"others; the generators train on {len(data.train):,} of the remaining digits, none of them "
            "pixel-identical to a digit the judges saw, so a generator that memorises its training digits gets "
            "no help from judges that memorised the same ones.")


# How the digit judges read (samples and real digits alike): under the generators' training precision
# (cfg.fit.precision, bf16 autocast on a CPU with native bf16), as the judges themselves train. Measured
# 2026-12-04 (2 cores, AMD EPYC with AVX512-BF16; a C8 judge of the cpu profile, 1 epoch, 3,000 rotated test
# digits): 2.7 ms / image in fp32, 1.3 in bf16; 99.93 % of labels the same, accuracy 95.50 vs 95.43 %. The
# angle judge reads in fp32 (its angle comes from atan2 of two outputs).


class DigitJudgePanel:
    """Digit judges of one config trained from different seeds, read as one judge: the mean of their class
    probabilities. A single judge's reading of a generated digit (off the distribution it trained on) depends
    on its initialisation by several points; the panel's reading depends on it less, and its ``members``' own
    readings (:func:`member_predictions`) show how far one judge alone could be off. A panel of one member
    reads exactly as that judge.

    ``precision`` (:func:`rotcore.train.autocast`'s: ``"fp32"``, ``"bf16"`` or ``"auto"``) is how every
    reading runs, samples and real digits alike (see the note above): the one place it is set."""

    def __init__(self, members: Sequence[DigitJudge], *, precision: str = "fp32"):
        if not members:
            raise ValueError("a judge panel needs at least one judge")
        check_choice("precision", precision, PRECISIONS)
        self.members = tuple(members)
        self.precision = precision

    def member_probs(self, x: torch.Tensor, *, batch_size: int = 1_000) -> torch.Tensor:
        """Each member's class probabilities, ``(members, n, classes)``."""
        with autocast(x.device, self.precision):
            return torch.stack([m.probs(x, batch_size=batch_size) for m in self.members])

    def probs(self, x: torch.Tensor, *, batch_size: int = 1_000) -> torch.Tensor:
        return self.member_probs(x, batch_size=batch_size).mean(0)

    def predict(self, x: torch.Tensor, *, batch_size: int = 1_000) -> torch.Tensor:
        return self.probs(x, batch_size=batch_size).argmax(-1)


def member_predictions(judge: DigitJudgePanel, x: torch.Tensor, *, batch_size: int = 1_000) -> torch.Tensor:
    """Each member judge's labels for ``x``, shape ``(members, n)``."""
    return read_digits(judge, x, batch_size=batch_size)[1]


def check_panel(judge) -> DigitJudgePanel:
    """``judge`` if it is a :class:`DigitJudgePanel`, else a ``TypeError``: the study reads digits through a panel
    only, so that every reading runs at the panel's ``precision`` (a bare judge would read in fp32)."""
    if not isinstance(judge, DigitJudgePanel):
        raise TypeError(f"the digit judge must be a DigitJudgePanel (wrap one judge as DigitJudgePanel([judge], "
                        f"precision=...)), got {type(judge).__name__}")
    return judge


def read_digits(judge: DigitJudgePanel, x: torch.Tensor, *,
                batch_size: int = 1_000) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, member labels)``: the panel's reading of ``x`` and each member's alone (``(members, n)``),
    from one pass of every member."""
    probs = check_panel(judge).member_probs(x, batch_size=batch_size)
    return probs.mean(0).argmax(-1), probs.argmax(-1)


def rescale_to_peak(x: torch.Tensor) -> torch.Tensor:
    """Each image divided by its brightest pixel (an all-dark image stays dark): the contrast of a real digit,
    whose strokes reach 1, given to a faint sample. Used only for the floor's sensitivity check."""
    return x / peak_of(x).clamp_min(1e-6)[:, None, None, None]


def peak_of(x: torch.Tensor) -> torch.Tensor:
    """Each image's brightest pixel, ``(n,)``."""
    return x.flatten(1).amax(1)


def load_judges(cfg: CVAEStudyConfig, device=None, *, progress: bool | None = None
                ) -> tuple[DigitJudgePanel, AngleJudge]:
    """The digit judge panel of ``cfg.digit_judge_configs()`` (reading under the generators' training
    precision, ``cfg.fit.precision``) and the angle judge of ``cfg.judge_configs()`` (each loaded from its
    checkpoint, trained if absent)."""
    panel = DigitJudgePanel([judges.digit_judge(c, device=device, progress=progress)
                             for c in cfg.digit_judge_configs()], precision=cfg.fit.precision)
    return panel, judges.angle_judge(cfg.judge_configs()[1], device=device, progress=progress)


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


def cvae_loss(train_angles_deg: Sequence[tuple[float, float]], *, beta: float = 1.0, recipe: str = "pairs"):
    """``loss_fn`` for :func:`rotcore.train.fit`: rotate each digit of the batch by fresh angles drawn from
    the training intervals (on the device), encode and decode conditioned on them, return ``BCE + β·KL``.

    ``recipe="pairs"`` (every model of this study but the seed's row): the encoder sees each digit at one
    training angle a₁ and the decoder must draw it at a second, a₂, drawn independently from the same intervals.
    The encoder is not told a₂, so the output's orientation can only come from the decoder's angle: a decoder
    that ignored it would be wrong by |a₂ − a₁|. For the learned-rotation model it is also what makes a turn of
    the code mean a turn of the picture (turning back and forth by one angle would cancel). Every image seen or
    asked for is at a training angle.

    ``recipe="self"`` (the seed's): rebuild the input at its own angle. The encoder sees the rotated digit, so
    the orientation can pass through ``z`` and the decoder is free to ignore its angle."""
    check_choice("recipe", recipe, RECIPES)

    def loss_fn(model, batch):
        x, y = batch
        angle = random_angles_in(train_angles_deg, len(x), device=x.device)
        x_in = rotate_batch(x, angle)
        if recipe == "pairs":
            target = random_angles_in(train_angles_deg, len(x), device=x.device)
            return elbo_loss(model(x_in, y, angle, target_angle_deg=target), rotate_batch(x, target), beta=beta)
        return elbo_loss(model(x_in, y, angle), x_in, beta=beta)

    return loss_fn


def _angles_in_training(cfg: CVAEStudyConfig, n: int, device, *, seed: int = 77) -> torch.Tensor:
    """``n`` random angles in the training intervals, one fixed draw per ``seed`` (validation digits, and the
    training digits the fitted sampler encodes, are read at these)."""
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
    recipe = MODEL_SPECS[key][1]
    run_cfg = {"study": STUDY, "model": cfg.model_config(key), "recipe": recipe,
               "train_angles_deg": cfg.train_angles_deg, "beta": cfg.beta,
               "data": {"train_size": cfg.train_size, "val_size": cfg.val_size}, "fit": fit_cfg}
    val_a = _angles_in_training(cfg, len(data.val), data.val.x.device)
    val_x = rotate_batch(data.val.x, val_a)
    # every model is validated on its own training task: pair models draw the digit at a second training angle
    pairs = recipe == "pairs"
    val_t = _angles_in_training(cfg, len(data.val), data.val.x.device, seed=78) if pairs else val_a
    val_target = rotate_batch(data.val.x, val_t) if pairs else val_x

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
    desc = f"cVAE: {MODELS[key]}" + (f" (seed {seed})" if len(cfg.model_seeds(key)) > 1 else "")
    result = fit(model, cvae_loss(cfg.train_angles_deg, beta=cfg.beta, recipe=recipe), loader, config=fit_cfg, validate=validate,
                 checkpoint=ckpt, run_config=run_cfg, device=device, progress=progress, desc=desc)
    return Trained(key, model.eval(), result, seed)


def train_all(cfg: CVAEStudyConfig, data: StudyData, *, device=None, progress: bool | None = None) -> list[Trained]:
    """Every model of ``cfg.models`` for every seed of ``cfg.seeds`` (seed-major order), then the ``replicated``
    models for every seed of ``replicate_seeds``."""
    runs = [(s, k) for s in cfg.seeds for k in cfg.models]
    runs += [(s, k) for s in cfg.replicate_seeds if s not in cfg.seeds for k in cfg.models if k in cfg.replicated]
    return [train(k, cfg, data, seed=s, device=device, progress=progress) for s, k in runs]


def first_seed(trained: Sequence[Trained]) -> list[Trained]:
    """The models of the first seed, one per key (for figures that show one model each)."""
    s = trained[0].seed
    return [t for t in trained if t.seed == s]


# ---------------------------------------------------------------------------------------------------------
# Choosing the training settings on validation digits


@dataclasses.dataclass(frozen=True)
class SettingsGrid:
    """The training settings :func:`choose_settings` tries (every combination)."""

    batch_size: tuple[int, ...] = (32, 64)
    beta: tuple[float, ...] = (1.0, 3.0)
    epochs: tuple[int, ...] = (4, 8)

    def __post_init__(self):
        for name in ("batch_size", "beta", "epochs"):
            values = tuple(getattr(self, name))
            if not values:
                raise ConfigError(f"SettingsGrid.{name} is empty")
            object.__setattr__(self, name, values)

    def points(self) -> list[tuple[int, float, int]]:
        return [(b, beta, e) for b in self.batch_size for beta in self.beta for e in self.epochs]


@torch.no_grad()
def validation_scores(t: Trained, val: Images, digit_judge: DigitJudgePanel, cfg: CVAEStudyConfig, *,
                      draw_seed_offset: int = 101) -> dict[str, float]:
    """What :func:`choose_settings` ranks by, for one trained model; no test digit is read.

    ``sample_acc_seen_pct``: prior samples (``cfg.samples_per_cell`` per digit, drawn with an offset that the
    published evaluation does not use) at the trained evaluation angles, read as the intended digit by the
    judge. ``val_pair_acc_pct``: **validation** digits encoded at one training angle and drawn (posterior mean)
    at another, read as their own digit. ``val_pair_bce``: that drawing's binary cross-entropy against the
    validation digit really rotated to the second angle (nats per image; free of β, so comparable across it).
    """
    check_panel(digit_judge)
    device = next(t.model.parameters()).device
    a1 = _angles_in_training(cfg, len(val), val.x.device, seed=81)
    a2 = _angles_in_training(cfg, len(val), val.x.device, seed=82)
    x_in, target = rotate_batch(val.x, a1), rotate_batch(val.x, a2)
    t.model.eval()
    x_hat = torch.cat([t.model(x_in[i:i + cfg.eval_batch_size], val.y[i:i + cfg.eval_batch_size],
                               a1[i:i + cfg.eval_batch_size], sample=False,
                               target_angle_deg=a2[i:i + cfg.eval_batch_size]).x_hat
                       for i in range(0, len(val), cfg.eval_batch_size)])
    bce = torch.nn.functional.binary_cross_entropy(x_hat.float(), target.float(), reduction="sum").item() / len(val)
    pair_acc = 100 * (digit_judge.predict(x_hat, batch_size=cfg.eval_batch_size) == val.y).double().mean().item()
    digits, angles, z = generation_grid(cfg, device, seed=t.seed, angles_deg=trained_eval_angles(cfg),
                                        draw_seed_offset=draw_seed_offset)
    x = generate(t.model, digits, angles, z, batch_size=cfg.eval_batch_size)
    sample_acc = 100 * (digit_judge.predict(x, batch_size=cfg.eval_batch_size) == digits).double().mean().item()
    return {"sample_acc_seen_pct": sample_acc, "val_pair_acc_pct": pair_acc, "val_pair_bce": bce}


def choose_settings(cfg: CVAEStudyConfig, data: StudyData, digit_judge: DigitJudgePanel, *,
                    grid: SettingsGrid = SettingsGrid(), models: Sequence[str] = ("latent",),
                    seeds: Sequence[int] = (100,), max_images: int | None = None,
                    rank_by: Sequence[str] = ("sample_acc_seen_pct", "val_pair_acc_pct"), device=None,
                    progress: bool | None = None):
    """Train ``models`` at every point of ``grid`` (batch size × β × epochs; the rest of ``cfg`` as it is) and
    score each on validation (:func:`validation_scores`). Never reads a test digit.

    ``seeds`` default to seeds the published run does not use, so the chosen setting's published models are
    not the ones it was chosen on. A point whose training images per model and seed (epochs × training
    digits) exceed ``max_images`` (the profile's budget) is scored but cannot be chosen. The choice is the
    affordable point ranked highest by ``rank_by`` (higher is better; later columns break ties): by default
    ``sample_acc_seen_pct`` (the sample-quality floor's quantity, on draws of its own: what the settings are
    meant to raise, and a β that helps samples can cost reconstruction), then ``val_pair_acc_pct``.

    Returns ``(table, chosen)``: a DataFrame with one row per grid point (means over ``models`` and
    ``seeds``; with several models, each one's ``sample_acc_seen_pct_<key>`` too; plus ``steps_per_run``,
    ``images_per_run`` and ``affordable``) and the chosen row as a dict.
    """
    import pandas as pd

    unknown = [c for c in rank_by if c not in ("sample_acc_seen_pct", "val_pair_acc_pct")]
    if not rank_by or unknown:
        raise ConfigError(f"rank_by={tuple(rank_by)!r}: rank by sample_acc_seen_pct and/or val_pair_acc_pct")
    rows = []
    for batch_size, beta, epochs in grid.points():
        point = dataclasses.replace(cfg, models=tuple(models), seeds=tuple(seeds), beta=beta,
                                    fit=dataclasses.replace(cfg.fit, batch_size=batch_size, epochs=epochs))
        for seed in seeds:
            for key in models:
                t = train(key, point, data, seed=seed, device=device, progress=progress)
                rows.append({"batch_size": batch_size, "beta": beta, "epochs": epochs, "key": key, "seed": seed,
                             **validation_scores(t, data.val, digit_judge, point)})
    per_run = pd.DataFrame(rows)
    point_cols = ["batch_size", "beta", "epochs"]
    table = per_run.groupby(point_cols, sort=False)[
        ["sample_acc_seen_pct", "val_pair_acc_pct", "val_pair_bce"]].mean().reset_index()
    if len(models) > 1:  # each model's own sample reading beside the mean (the floor is per model)
        by_model = per_run.pivot_table(index=point_cols, columns="key", values="sample_acc_seen_pct", sort=False)
        table = table.merge(by_model.add_prefix("sample_acc_seen_pct_").reset_index(), on=point_cols)
    table["images_per_run"] = table.epochs * len(data.train)
    table["steps_per_run"] = table.epochs * (len(data.train) // table.batch_size)
    table["affordable"] = True if max_images is None else table.images_per_run <= max_images
    ranked = table[table.affordable].sort_values(list(rank_by), ascending=False)
    chosen = ranked.iloc[0].to_dict() if len(ranked) else None
    return table, chosen


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def _seen_mask(cfg: CVAEStudyConfig, angles_deg) -> torch.Tensor:
    return in_intervals(torch.tensor([float(a) for a in angles_deg], dtype=torch.float64), cfg.train_angles_deg)


def trained_eval_angles(cfg: CVAEStudyConfig) -> list[float]:
    """The evaluation angles inside the training intervals (the intervals' midpoints if none is)."""
    seen = [float(a) for a, s in zip(cfg.eval_angles_deg, _seen_mask(cfg, cfg.eval_angles_deg).tolist()) if s]
    return seen or [(lo + hi) / 2 for lo, hi in cfg.train_angles_deg]


@torch.no_grad()
def evaluate_reconstruction(trained: Sequence[Trained], test: Images, cfg: CVAEStudyConfig):
    """Reconstruction of real test digits (the first ``cfg.recon_test_size``) rotated to every angle of
    ``cfg.reconstruction_angles_deg`` (posterior mean ``z``, decoded at the input's own angle): MSE and SSIM
    (torchmetrics) per image, averaged per (model, seed, angle, digit). A long DataFrame with ``seen``.

    The forward passes run under the training precision (``cfg.fit.precision``: bf16 autocast where the
    device computes it natively, about 1.7x faster on the 2-core CPU); the scores are computed in fp32."""
    import pandas as pd

    test = test.head(cfg.recon_test_size)
    eval_angles = cfg.reconstruction_angles_deg
    k, n = len(eval_angles), len(test)
    angles = torch.tensor(eval_angles, device=test.x.device).repeat_interleave(n)
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
                rows.append({"model": t.label, "key": t.key, "seed": t.seed, "angle_deg": float(eval_angles[c // 10]),
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


@dataclasses.dataclass(frozen=True)
class CodeGaussians:
    """One Gaussian per digit fitted to a model's codes: ``mean`` ``(10, d)`` and the lower Cholesky factor
    ``chol`` ``(10, d, d)`` of each covariance. A sampler to draw codes from instead of the prior N(0, I)."""

    mean: torch.Tensor
    chol: torch.Tensor

    def transform(self, eps: torch.Tensor) -> torch.Tensor:
        """Standard normal draws ``eps`` ``(10, n, d)`` (row ``k`` for digit ``k``) as draws of each digit's
        Gaussian: ``mean[k] + chol[k] @ eps``."""
        return self.mean[:, None, :] + torch.einsum("knd,ked->kne", eps.to(self.mean.dtype), self.chol)


@torch.no_grad()
def fit_code_gaussians(model: CVAE, images: Images, cfg: CVAEStudyConfig, *, seed: int = 83,
                       jitter: float = 1e-5) -> CodeGaussians:
    """Per-digit Gaussians (full covariance, float32, on the CPU) of the posterior means of ``images`` (the
    generators' **training** digits), each encoded at a random training angle, as the model encodes them (so
    the learned and explicit rotations' codes are the angle-free ones). ``jitter`` is added to each covariance's
    diagonal. A clear error when a digit has fewer digits than code dimensions + 1."""
    model.eval()
    a = _angles_in_training(cfg, len(images), images.x.device, seed=seed)
    bs = cfg.eval_batch_size
    mu = torch.cat([model.encode(rotate_batch(images.x[i:i + bs], a[i:i + bs]), a[i:i + bs])[0]
                    for i in range(0, len(images), bs)]).double().cpu()
    y = images.y.cpu()
    means, chols = [], []
    for d in range(10):
        codes = mu[y == d]
        if len(codes) <= mu.shape[1]:
            raise ConfigError(f"fit_code_gaussians: digit {d} has {len(codes)} images, fewer than the "
                              f"{mu.shape[1] + 1} a {mu.shape[1]}-dimensional covariance needs")
        cov = torch.cov(codes.T) + jitter * torch.eye(mu.shape[1], dtype=codes.dtype)
        means.append(codes.mean(0))
        chols.append(torch.linalg.cholesky(cov))
    return CodeGaussians(torch.stack(means).float(), torch.stack(chols).float())


def generation_grid(cfg: CVAEStudyConfig, device, *, seed: int | None = None, latent_dim: int | None = None,
                    angles_deg: Sequence[float] | None = None, samples_per_cell: int | None = None,
                    draw_seed_offset: int = 1, temperature: float = SAMPLE_TEMPERATURE,
                    codes: CodeGaussians | None = None):
    """The (digit, angle, z) triples a model is judged on: ``samples_per_cell`` prior draws per digit (drawn
    from ``seed``, default the first of ``cfg.seeds``), the **same** draws at every evaluation angle (or
    ``angles_deg``), so angle is the only thing that changes. ``z ~ N(0, T² I)`` with ``T = temperature``
    (default :data:`SAMPLE_TEMPERATURE`; 1: the prior itself, no truncation). With ``codes``
    (:func:`fit_code_gaussians`) the same standard normal draws are mapped through each digit's fitted Gaussian
    instead. Order: angle-major, then digit, then draw."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0 (the prior's scale), got {temperature!r}")
    g = torch.Generator().manual_seed((cfg.seeds[0] if seed is None else seed) + draw_seed_offset)
    angles_deg = cfg.eval_angles_deg if angles_deg is None else tuple(angles_deg)
    n, k = samples_per_cell or cfg.samples_per_cell, len(angles_deg)
    z0 = temperature * torch.randn(10, n, latent_dim or cfg.latent_dim, generator=g)
    if codes is not None:
        z0 = codes.transform(z0)
    digits = torch.arange(10)[None, :, None].expand(k, 10, n).reshape(-1)
    angles = torch.tensor(angles_deg, dtype=torch.float32)[:, None, None].expand(k, 10, n).reshape(-1)
    z = z0[None].expand(k, 10, n, -1).reshape(-1, z0.shape[-1])
    return digits.to(device), angles.to(device), z.to(device)


def evaluate_generation(trained: Sequence[Trained], digit_judge: DigitJudgePanel, angle_judge: AngleJudge,
                        cfg: CVAEStudyConfig, *, temperature: float = SAMPLE_TEMPERATURE, draw_seed_offset: int = 1,
                        codes_from: Images | None = None):
    """Generate every (digit, angle) cell from the same prior draws and score each image with the judges.
    ``temperature`` and ``draw_seed_offset``: as in :func:`generation_grid` (the page uses the defaults).
    ``codes_from``: draw each model's codes from per-digit Gaussians fitted to its codes of these digits
    (:func:`fit_code_gaussians`; the page passes the training digits) instead of the prior N(0, I).

    Returns a long DataFrame with one row per generated image: ``key``, ``seed``, ``digit``, ``draw`` (the
    prior draw, the same at every angle), ``angle_deg``, ``correct`` (the digit judge agrees with the
    conditioned digit), ``correct_judge<k>`` (member ``k`` of a :class:`DigitJudgePanel` alone agrees; one
    column, ``correct_judge0``, for a panel of one), ``correct_rescaled`` (the judge agrees once the image is
    rescaled to a brightest pixel of 1, :func:`rescale_to_peak`: a sensitivity check), ``peak`` (the image's
    brightest pixel), ``angle_err_deg`` (:func:`angle_error_deg`: axial for 0/1/8, circular otherwise),
    ``circ_err_deg``, plus ``seen``, ``dist_to_train_deg`` (circular distance from the angle to the training
    set) and ``six_nine_near_180``. ``correct_rescaled`` is read at trained angles only (NaN elsewhere), and
    only for the prior's samples (absent with ``codes_from``).
    """
    import pandas as pd

    check_panel(digit_judge)
    frames = []
    for t in trained:
        device = next(t.model.parameters()).device
        codes = None if codes_from is None else fit_code_gaussians(t.model, codes_from, cfg)
        digits, angles, z = generation_grid(cfg, device, seed=t.seed, temperature=temperature,
                                            draw_seed_offset=draw_seed_offset, codes=codes)
        x = generate(t.model, digits, angles, z, batch_size=cfg.eval_batch_size)
        pred_digit, by_member = (p.cpu() for p in read_digits(digit_judge, x, batch_size=cfg.eval_batch_size))
        pred_angle = angle_judge.predict_deg(x, batch_size=cfg.eval_batch_size).cpu()
        d, a = digits.cpu(), angles.cpu()
        rescaled = {}
        if codes_from is None:
            # the floor's sensitivity check reads the prior's samples rescaled, at trained angles only (where
            # the floor is measured); the fitted sampler is itself a check and is not read twice
            at_trained = _seen_mask(cfg, a.tolist())
            pred = torch.full((len(x),), -1, dtype=torch.long)
            pred[at_trained] = digit_judge.predict(rescale_to_peak(x[at_trained.to(x.device)]),
                                                   batch_size=cfg.eval_batch_size).cpu()
            rescaled["correct_rescaled"] = np.where(at_trained.numpy(), (pred == d).numpy(), np.nan)
        frames.append(pd.DataFrame({
            "model": t.label, "key": t.key, "seed": t.seed, "digit": d.numpy(),
            "draw": np.tile(np.arange(cfg.samples_per_cell), len(d) // cfg.samples_per_cell),
            "angle_deg": a.double().numpy(), "correct": (pred_digit == d).numpy(),
            **{f"correct_judge{k}": (p == d).numpy() for k, p in enumerate(by_member)},
            **rescaled,
            "peak": peak_of(x).cpu().double().numpy(),
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
def angle_response(trained: Sequence[Trained], cfg: CVAEStudyConfig, *, n: int = 200):
    """Does the decoder follow the angle it is given? For ``n`` prior draws (digits in turn), decode at two
    trained angles a and b (the first trained evaluation angle and the trained evaluation angle farthest from
    it) and compare with what a real rotation does to the decoding at a:

    ``response_ratio`` = MSE(decode(b), decode(a)) / MSE(rotate(decode(a), b − a), decode(a)): 1 when a change
    of angle changes the picture as much as turning it does, 0 when the decoder ignores its angle.
    ``follow_mse`` = MSE(decode(b), rotate(decode(a), b − a)): 0 when the change *is* the rotation.
    A DataFrame (``key``, ``model``, ``seed``, ``from_deg``, ``to_deg``, ``response_ratio``, ``follow_mse``).
    """
    import pandas as pd

    seen = trained_eval_angles(cfg)
    a = seen[0]
    b = max(seen, key=lambda v: abs(float(signed_diff_deg(torch.tensor(v), torch.tensor(a)))))
    rows = []
    for t in trained:
        device = next(t.model.parameters()).device
        g = torch.Generator().manual_seed(t.seed + 4)
        z = (SAMPLE_TEMPERATURE * torch.randn(n, cfg.latent_dim, generator=g)).to(device)
        y = (torch.arange(n) % 10).to(device)
        x_a = generate(t.model, y, torch.full((n,), a, device=device), z, batch_size=cfg.eval_batch_size)
        x_b = generate(t.model, y, torch.full((n,), b, device=device), z, batch_size=cfg.eval_batch_size)
        turned = rotate_batch(x_a, float(b - a))
        real = mse_per_image(turned, x_a).mean().item()
        rows.append({"key": t.key, "model": t.label, "seed": t.seed, "from_deg": a, "to_deg": b,
                     "response_ratio": mse_per_image(x_b, x_a).mean().item() / real if real > 0 else float("nan"),
                     "follow_mse": mse_per_image(x_b, turned).mean().item()})
    return pd.DataFrame(rows)


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
    a = _angles_in_training(cfg, len(test), test.x.device)
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
        a_fit = _angles_in_training(cfg, len(data.val), dev, seed=79)
        a_test = _angles_in_training(cfg, len(data.test), dev, seed=80)
        z_fit = codes(t.model, Images(rotate_batch(data.val.x, a_fit), data.val.y), a_fit)
        z_test = codes(t.model, Images(rotate_batch(data.test.x, a_test), data.test.y), a_test)
        target = lambda a: torch.stack([torch.cos(torch.deg2rad(a)), torch.sin(torch.deg2rad(a))], 1).cpu()  # noqa: E731
        rows.append({"key": t.key, "model": t.label, "seed": t.seed,
                     "r2": probe_r2(z_fit, target(a_fit.double()), z_test, target(a_test.double()))})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------
# Judges, judged first


@torch.no_grad()
def judge_scores(digit_judge: DigitJudgePanel, angle_judge: AngleJudge, test: Images, cfg: CVAEStudyConfig, *,
                 angle_draws: int = 3):
    """The judges' own scores on real test digits, with 95 % CIs from a bootstrap clustered by test digit
    (each digit is seen at every evaluation angle, or at ``angle_draws`` random angles).

    Returns ``(metrics, digit_df, angle_per_digit_df)``: ``judge_digit_acc_pct`` (every evaluation angle, all
    digits), its worst angle, its accuracy on 6 and 9 and the lowest and highest accuracy of a single member
    of the panel (``judge_digit_acc_member_min_pct`` / ``_max_pct``); ``judge_angle_mae_deg`` (:func:`angle_error_deg`,
    axial for 0/1/8), the same as a plain circular error over all digits (``judge_angle_mae_circular_deg``)
    and the median; per angle the digit accuracy, per digit the angle judge's axial and circular errors.

    The slant floor: real digits are not written exactly upright, so part of any angle error is MNIST's, not
    the judge's. ``judge_angle_upright_mae_deg`` is the judge's error on the upright test digits (true angle
    0°, :func:`angle_error_deg`): the slant it reads plus its own error at 0°, an upper bound on what slant
    alone costs. ``judge_angle_mae_over_upright_ratio`` is the error at uniform angles over it (1: the judge
    does as well at every angle as on upright digits); both with a bootstrap over test digits.
    """
    import pandas as pd

    check_panel(digit_judge)
    y = test.y.cpu()
    rotated = [rotate_batch(test.x, float(a)) for a in cfg.eval_angles_deg]
    # the floor's sensitivity check on real digits: each test digit at one random trained angle, read as it is
    # and rescaled to a brightest pixel of 1 (what the check does to a faint sample; a real digit barely changes)
    a = random_angles_in(cfg.train_angles_deg, len(test), generator=torch.Generator().manual_seed(77)).to(test.x.device)
    at_trained = rotate_batch(test.x, a)
    readings = [read_digits(digit_judge, r) for r in rotated]  # the panel reads real digits as it reads samples
    m_real = {"judge_real_peak": float(torch.cat([peak_of(r) for r in rotated]).mean()),
              "judge_digit_acc_trained_pct": 100 * float((digit_judge.predict(at_trained).cpu() == y).double().mean()),
              "judge_digit_acc_trained_rescaled_pct":
                  100 * float((digit_judge.predict(rescale_to_peak(at_trained)).cpu() == y).double().mean())}
    correct = torch.stack([pred.cpu() == y for pred, _ in readings], dim=1).double()  # (digits, angles)
    digit_df = pd.DataFrame({"angle_deg": list(cfg.eval_angles_deg), "acc_pct": 100 * correct.mean(0).numpy()})
    for d in range(10):
        digit_df[f"acc_pct_{d}"] = 100 * correct[y == d].mean(0).numpy()
    m = with_ci("judge_digit_acc_pct", *bootstrap_ci95(100 * correct.mean(1).numpy()))  # one value per digit image
    m.update(m_real)
    m["judge_digit_acc_min_pct"] = float(digit_df.acc_pct.min())
    m["judge_digit_acc_69_pct"] = 100 * float(correct[torch.isin(y, torch.tensor(SIX_NINE))].mean())
    member_acc = torch.stack([members.cpu() == y for _, members in readings]).double().mean((0, 2))  # (members,)
    m["judge_digit_acc_member_min_pct"] = 100 * float(member_acc.min())
    m["judge_digit_acc_member_max_pct"] = 100 * float(member_acc.max())
    errs, circ = [], []
    for s in range(angle_draws):
        a = random_angles(len(test), generator=torch.Generator().manual_seed(1000 + s)).to(test.x.device)
        pred = angle_judge.predict_deg(rotate_batch(test.x, a)).cpu()
        errs.append(angle_error_deg(pred, a.cpu(), y).double())
        circ.append(circular_error_deg(pred, a.cpu()).double())
    err, circ = torch.stack(errs, 1), torch.stack(circ, 1)  # (digits, draws)
    m.update(with_ci("judge_angle_mae_deg", *bootstrap_ci95(err.mean(1).numpy(), unit="digit")))
    upright_pred = angle_judge.predict_deg(test.x).cpu()
    upright = angle_error_deg(upright_pred, torch.zeros_like(upright_pred), y).double()  # (digits,)
    m.update(with_ci("judge_angle_upright_mae_deg", *bootstrap_ci95(upright.numpy(), unit="digit")))
    pair = np.stack([err.mean(1).numpy(), upright.numpy()], 1)
    m.update(with_ci("judge_angle_mae_over_upright_ratio", *bootstrap_ci95(
        np.arange(len(pair)), statistic=lambda i: float(pair[i.astype(int), 0].mean() / pair[i.astype(int), 1].mean()),
        unit="digit")))
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
             "digit_acc_within30_pct", "digit_acc_beyond30_pct", "digit_acc_drop_beyond30_pts",
             "angle_err_seen_deg", "angle_err_unseen_deg", "angle_err_gap_deg", "angle_err_within30_deg",
             "angle_err_beyond30_deg")


def _nanmean(a) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanmean(a)) if a.size and not np.isnan(a).all() else float("nan")


@dataclasses.dataclass
class _Draws:
    """One model's generations as (prior draws × angles) arrays: one row per (seed, digit, draw)."""

    correct: np.ndarray  # 1/0, NaN where left out of the digit accuracy (6 and 9 near 180°)
    err: np.ndarray  # angle error (°), axial for 0/1/8
    seen: np.ndarray  # (angles,) bool
    beyond30: np.ndarray  # (angles,) bool: farther than SEED_CLAIM_DEG from every training angle
    within30: np.ndarray  # (angles,) bool: unseen, but at most SEED_CLAIM_DEG from a training angle
    seed_digit: np.ndarray  # (rows,) the cluster of each row: seed * 10 + digit

    @classmethod
    def of(cls, part) -> _Draws:
        c = part.correct.astype(float).where(~part.six_nine_near_180)
        wide = part.assign(c=c).pivot_table(index=["seed", "digit", "draw"], columns="angle_deg",
                                            values=["c", "angle_err_deg"], dropna=False)
        angles = wide["c"].columns
        flags = part.groupby("angle_deg").agg(seen=("seen", "first"), dist=("dist_to_train_deg", "first")).loc[angles]
        seen = flags.seen.to_numpy(bool)
        idx = wide.index.to_frame()
        return cls(wide["c"].to_numpy(), wide["angle_err_deg"][angles].to_numpy(), seen,
                   (flags.dist > SEED_CLAIM_DEG).to_numpy(), ~seen & (flags.dist <= SEED_CLAIM_DEG).to_numpy(),
                   (idx.seed.to_numpy() * 10 + idx.digit.to_numpy()).astype(int))

    def stat(self, name: str, rows=slice(None)) -> float:
        """One of ``GEN_STATS`` on the draws ``rows`` (all by default; a bootstrap passes a resample)."""
        if name == "angle_err_gap_deg":  # unseen minus seen: the judge's own floor cancels
            return self.stat("angle_err_unseen_deg", rows) - self.stat("angle_err_seen_deg", rows)
        if name.startswith("angle_err"):
            cols = {"angle_err_seen_deg": self.seen, "angle_err_within30_deg": self.within30,
                    "angle_err_beyond30_deg": self.beyond30}.get(name, ~self.seen)
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
        if name == "digit_acc_drop_beyond30_pts":  # paired: the same draws at trained and at far angles
            return seen - _nanmean(acc[self.beyond30])
        if name == "digit_acc_within30_pct":
            return _nanmean(acc[self.within30])
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


def _gen_stats(part) -> dict[str, float]:
    draws = _Draws.of(part)
    return {s: draws.stat(s) for s in GEN_STATS}


def generation_stats(gen_df):
    """One row per (model, seed): the ``GEN_STATS`` of :func:`evaluate_generation`'s images (a DataFrame)."""
    import pandas as pd

    return pd.DataFrame([{"model": key, "seed": seed, **_gen_stats(part)}
                         for (key, seed), part in gen_df.groupby(["key", "seed"], sort=False)])


# the statistics the page also gives per training seed for a model trained with several
SEED_SPREAD_STATS = ("digit_acc_seen_pct", "digit_acc_drop_pts", "angle_err_gap_deg")

# the statistics also read by each member of the digit judge panel alone (the spread one judge's seed puts on them)
MEMBER_STATS = ("digit_acc_seen_pct", "digit_acc_unseen_pct", "digit_acc_drop_pts")


def _member_columns(gen_df) -> list[str]:
    """The ``correct_judge<k>`` columns in member order; ``["correct"]`` (one judge) for a table without them."""
    cols = [c for c in gen_df.columns if c.startswith("correct_judge")]
    return sorted(cols, key=lambda c: int(c.removeprefix("correct_judge"))) or ["correct"]


def member_stats(gen_df):
    """One row per (model, member judge): ``MEMBER_STATS`` as that member of the digit judge panel alone reads
    the generations (mean over seeds), from :func:`evaluate_generation`'s ``correct_judge<k>`` columns."""
    import pandas as pd

    rows = []
    for k, col in enumerate(_member_columns(gen_df)):
        stats = generation_stats(gen_df.assign(correct=gen_df[col]))
        for key, part in stats.groupby("model", sort=False):
            rows.append({"model": key, "judge": k, **{s: float(part[s].mean()) for s in MEMBER_STATS}})
    return pd.DataFrame(rows, columns=["model", "judge", *MEMBER_STATS])


def seed_summary(gen_df, recon_df, sweep_df):
    """One row per (model, seed): ``GEN_STATS``, the 6/9 accuracy near 180°, reconstruction MSE / SSIM at
    trained and unseen angles, and the sweep's step error (a DataFrame)."""
    import pandas as pd

    rows = []
    for (key, seed), part in gen_df.groupby(["key", "seed"], sort=False):
        rec = recon_df[(recon_df.key == key) & (recon_df.seed == seed)]
        sw = sweep_df[(sweep_df.key == key) & (sweep_df.seed == seed)]
        six_nine = part[part.six_nine_near_180]
        row = {"model": key, "seed": seed, **_gen_stats(part),
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
                     equivariance_err: float | None = None, probe_df=None, response_df=None, *,
                     n_boot: int = 2_000) -> dict[str, Any]:
    """The flat ``metrics`` of ``results/01_cvae_rotation.json``.

    ``gen_<stat>_<model>`` for every ``GEN_STATS`` with ``_ci95``, ``_n`` and ``_ci_method``
    (:func:`_stats_with_ci`): for a model trained with two or more seeds the statistic of its pooled draws with
    a percentile bootstrap clustered by (seed, digit) (``n`` = clusters); with one seed a percentile bootstrap
    over the prior draws, clustered by draw (a draw is decoded at every angle; ``n`` = draws).
    With a panel of digit judges, ``gen_<stat>_<model>_judge_min`` / ``_judge_max`` for ``MEMBER_STATS``: the
    lowest and highest reading of a single member judge (:func:`member_stats`), and ``digit_judge_members``.
    Then the per-model means of the other :func:`seed_summary` columns, the 1/7-vs-8/0 claim, the judges'
    own scores, parameter counts, the explicit decoder's equivariance check, the decoders' response to their
    angle (:func:`angle_response`, mean over seeds), ``gen_angle_err_chance_deg`` (the angle error of uniformly
    random angles over the digit mix at unseen angles, :func:`chance_angle_error_deg`) with each model's
    ``gen_angle_err_unseen_over_chance_<model>``, ``n_seeds_<model>`` (its training seeds), for a model with
    several ``gen_<stat>_<model>_seed<i>`` (``SEED_SPREAD_STATS`` read on its ``i``-th training seed alone, in
    training order) and ``n_seeds`` (the fewest any model has). Anchored
    metrics of models not in this run are ``None``.
    """
    m: dict[str, Any] = dict(judge_metrics)
    for key, part in per_seed.groupby("model", sort=False):
        m[f"n_seeds_{key}"] = int(part.seed.nunique())
        if len(part) >= 2:  # each training seed's own reading, beside the pooled statistic and its interval
            for stat in SEED_SPREAD_STATS:
                m.update({f"gen_{stat}_{key}_seed{i}": float(v) for i, v in enumerate(part[stat])})
        m.update(_stats_with_ci(gen_df[gen_df.key == key], GEN_STATS, "gen_{}_" + key, n_boot=n_boot))
        for col in part.columns.drop(["model", "seed", *GEN_STATS]):
            m[f"{col}_{key}"] = float(part[col].mean())
        m.update(rescaled_check(gen_df[gen_df.key == key], key))
    members = member_stats(gen_df)
    m["digit_judge_members"] = int(members.judge.nunique())
    for key, part in members.groupby("model", sort=False):
        for s in MEMBER_STATS:
            m[f"gen_{s}_{key}_judge_min"], m[f"gen_{s}_{key}_judge_max"] = float(part[s].min()), float(part[s].max())
    m["n_seeds"] = min(m[f"n_seeds_{k}"] for k in per_seed.model.unique())
    # the angle error's chance level over the digit mix of the samples at unseen angles, and each model's
    # unseen-angle error as a share of it (1: no better than uniformly random angles)
    chance = chance_angle_error_deg(gen_df[~gen_df.seen].digit.to_numpy())
    m["gen_angle_err_chance_deg"] = chance if chance == chance else None
    for key in per_seed.model.unique():
        unseen = m.get(f"gen_angle_err_unseen_deg_{key}")
        m[f"gen_angle_err_unseen_over_chance_{key}"] = (
            float(unseen / chance) if unseen is not None and unseen == unseen and chance == chance and chance > 0
            else None)
    claim_key = next((k for k in (SEED_RECIPE, "scalar") if k in set(per_seed.model)), None)
    if claim_key is not None:
        m.update(digit_claim(by_cell(gen_df), claim_key))
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
    if response_df is not None:
        for key, part in response_df.groupby("key", sort=False):
            m[f"angle_response_ratio_{key}"] = float(part.response_ratio.mean())
            m[f"angle_follow_mse_{key}"] = float(part.follow_mse.mean())
        m["angle_response_from_deg"], m["angle_response_to_deg"] = (float(response_df.from_deg.iloc[0]),
                                                                    float(response_df.to_deg.iloc[0]))
    for a in ANCHORS:
        m.setdefault(a.metric, None)
    return m


def _stats_with_ci(part, stats: Sequence[str], name: str, *, n_boot: int = 2_000) -> dict[str, Any]:
    """``stats`` of one model's rows of :func:`evaluate_generation`, each as ``name.format(stat)`` with its
    interval: with two or more seeds a percentile bootstrap clustered by (seed, digit), with one seed a
    percentile bootstrap over the draws (a draw is decoded at every angle)."""
    draws = _Draws.of(part)
    ids = np.arange(len(draws.correct))
    several = part.seed.nunique() >= 2
    out: dict[str, Any] = {}
    for s in stats:
        out.update(with_ci(name.format(s), *bootstrap_ci95(
            ids, clusters=draws.seed_digit if several else None,
            statistic=lambda r, s=s, d=draws: d.stat(s, r.astype(int)), n_boot=n_boot,
            unit="(seed, digit) cluster" if several else "sample")))
    return out


# what the page reads from the samples drawn from per-digit Gaussians fitted to the training codes
FITTED_STATS = ("digit_acc_seen_pct", "digit_acc_unseen_pct", "digit_acc_drop_pts", "angle_err_gap_deg")


def fitted_metrics(fit_df, *, n_boot: int = 2_000) -> dict[str, Any]:
    """``gen_<stat>_fitted_<model>`` (with intervals) for ``FITTED_STATS`` of :func:`evaluate_generation`'s
    images drawn with ``codes_from`` (per-digit Gaussians fitted to the training codes instead of the prior):
    the same decoders and cells, another sampler."""
    out: dict[str, Any] = {}
    for key, part in fit_df.groupby("key", sort=False):
        out.update(_stats_with_ci(part, FITTED_STATS, "gen_{}_fitted_" + key, n_boot=n_boot))
    return out


def rescaled_check(part, key: str) -> dict[str, float]:
    """The floor's sensitivity to the samples' faintness, for one model's rows of :func:`evaluate_generation`:
    ``gen_peak_seen_<key>`` (the mean brightest pixel of its samples at trained angles) and
    ``gen_digit_acc_seen_rescaled_pct_<key>`` (``digit_acc_seen_pct`` read on the samples rescaled to a
    brightest pixel of 1). Empty for a table without the ``correct_rescaled`` column."""
    if "correct_rescaled" not in part or not part.seen.any():
        return {}
    seen = part[part.seen]  # the column is read at trained angles only
    draws = _Draws.of(seen.assign(correct=seen.correct_rescaled))
    return {f"gen_peak_seen_{key}": float(seen.peak.mean()),
            f"gen_digit_acc_seen_rescaled_pct_{key}": draws.stat("digit_acc_seen_pct")}


def _ci_text(m: Mapping[str, Any], name: str, unit: str, fmt: str = "{:.1f}") -> str:
    ci = m.get(f"{name}_ci95")
    return "" if ci is None else f" (95 % CI {fmt.format(ci[0])} to {fmt.format(ci[1])}{unit})"


def _num(m: Mapping[str, Any], name: str) -> float | None:
    v = m.get(name)
    return None if v is None or v != v else float(v)


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
    return (f"read as the intended digit {seen:.1f} %{_ci_text(m, f'gen_digit_acc_seen_pct_{key}', ' %')} of the "
            f"time at trained angles and {unseen:.1f} % at unseen ones, a drop of {drop:.1f} points"
            f"{_ci_text(m, f'gen_digit_acc_drop_pts_{key}', ' points')}{resolved}. "
            f"At its worst unseen angle it loses {m[f'gen_digit_acc_drop_worst_pts_{key}']:.1f} points"
            f"{_ci_text(m, f'gen_digit_acc_drop_worst_pts_{key}', ' points')}")


def _floor_holds(m: Mapping[str, Any], key: str) -> bool | None:
    v = _num(m, f"gen_digit_acc_seen_pct_{key}")
    return None if v is None else v >= SAMPLE_FLOOR_PCT


def _floor_clause(m: Mapping[str, Any], key: str) -> str:
    """Whether a model's drop can be read as generalisation (its samples at trained angles reach the floor)."""
    holds = _floor_holds(m, key)
    if holds is None:
        return ""
    if holds:
        trained = _trained_angle_clause(m, key)
        return (f" Its samples at trained angles reach the {SAMPLE_FLOOR_PCT:g} % floor, so this drop is a change in "
                "a generator that draws the intended digit there; the floor reads the digit only, not the "
                "orientation" + (f": {trained}" if trained else "") + ".")
    return (f" Its samples at trained angles stay below the {SAMPLE_FLOOR_PCT:g} % floor, so the drop compares a "
            "partly failing generator with itself and is not read as a measure of generalisation.")


def _rescaled_clause(m: Mapping[str, Any], present: Sequence[str]) -> str:
    """The floor's sensitivity check (:func:`rescaled_check`): how faint the samples are, how the judges read
    them rescaled to a brightest pixel of 1, and whether that would move any model across the floor."""
    acc = {k: _num(m, f"gen_digit_acc_seen_rescaled_pct_{k}") for k in present}
    peaks = {k: _num(m, f"gen_peak_seen_{k}") for k in present}
    if not acc or any(v is None for v in (*acc.values(), *peaks.values())):
        return ""
    real, as_is, resc = (_num(m, n) for n in ("judge_real_peak", "judge_digit_acc_trained_pct",
                                               "judge_digit_acc_trained_rescaled_pct"))
    crossing = [MODELS[k] for k in present if k != SEED_RECIPE
                and (acc[k] >= SAMPLE_FLOOR_PCT) != bool(_floor_holds(m, k))]
    return (
        " A sensitivity check of the reading: the samples are fainter than real digits (their brightest pixel "
        f"averages {min(peaks.values()):.2f} to {max(peaks.values()):.2f} by model"
        + (f", real rotated test digits {real:.2f}" if real is not None else "") + "). Rescaled so that each "
        "sample's brightest pixel is 1, the judges read them right: "
        + "; ".join(f"{MODELS[k]} {acc[k]:.1f} %" for k in present)
        + (f" (real test digits at trained angles: {as_is:.1f} % as they are, {resc:.1f} % rescaled)"
           if as_is is not None and resc is not None else "") + ". "
        + ("The verdicts above read the samples as drawn; rescaled, " + ", ".join(crossing)
           + " would be on the other side of the floor." if crossing else
           "Rescaled or not, every model stays on the same side of the floor."))


def ci_sentence(m: Mapping[str, Any]) -> str:
    """How many seeds each model is trained with and what its intervals cover; for a model trained with
    several, each seed's own reading of the floor and the angle gap."""
    counts = {k: int(m[f"n_seeds_{k}"]) for k in MODELS if m.get(f"n_seeds_{k}")}
    several = {k: n for k, n in counts.items() if n >= 2}
    one = [MODELS[k] for k, n in counts.items() if n == 1]
    pooled = ("a percentile bootstrap over (seed, digit) clusters, so it covers the training run and a "
              "percentage's stays within [0, 100] %")
    single = ("a percentile bootstrap over the prior draws, clustered by draw (one draw is decoded at every "
              "angle); it leaves out the variation between training runs, so it is narrower than an interval "
              "over seeds would be")
    if not several:
        return f"This run has one seed: every interval below is {single}."
    if not one:
        n = set(several.values())
        count = f"{n.pop()} seeds" if len(n) == 1 else f"at least {min(several.values())} seeds"
        return (f"Every model is trained once per seed ({count}; each trains anew and draws its own latent "
                f"codes). Every interval of a sample statistic (percentages, their drops, "
                f"angle errors) is {pooled}; the latent probe's R² is a Student-t interval over the seeds, clipped "
                "at 1.")
    parts = []
    for k, n in several.items():
        acc, gap = ([m.get(f"gen_{stat}_{k}_seed{i}") for i in range(n)]
                    for stat in ("digit_acc_seen_pct", "angle_err_gap_deg"))
        detail = ""
        if None not in acc + gap:
            detail = (f" (by seed, samples at trained angles read right {' / '.join(f'{v:.1f}' for v in acc)} %, "
                      f"angle gap {' / '.join(f'{v:.1f}' for v in gap)}°)")
        parts.append(f"the {MODELS[k]} with {n} seeds{detail}")
    whose = "its" if len(parts) == 1 else "each one's"
    return (f"Training seeds: {'; '.join(parts)}; {whose} numbers pool the seeds' draws and each interval is "
            f"{pooled}. "
            + (f"The {one[0]} has one seed: its intervals are {single}." if len(one) == 1 else
               f"The other models ({', '.join(one)}) have one seed each: their intervals are {single}."))


def _interval(m: Mapping[str, Any], name: str) -> tuple[float, float] | None:
    """The value's interval, or the value twice for a metric without one; ``None`` if the value is missing."""
    v = _num(m, name)
    if v is None:
        return None
    ci = m.get(f"{name}_ci95")
    return (float(ci[0]), float(ci[1])) if ci is not None else (v, v)


def _trained_angle_clause(m: Mapping[str, Any], key: str) -> str:
    """How closely a model's samples follow their angle at trained angles, against the angle judge's own error
    on real rotated digits (the floor of what the judge can read): a phrase, empty without the numbers."""
    err, judge = _num(m, f"gen_angle_err_seen_deg_{key}"), _num(m, "judge_angle_mae_deg")
    if err is None:
        return ""
    text = (f"the angle judge reads its samples at trained angles {err:.1f}°"
            f"{_ci_text(m, f'gen_angle_err_seen_deg_{key}', '°')} from their angle")
    if judge is None:
        return text
    lo, hi = _interval(m, f"gen_angle_err_seen_deg_{key}")
    if lo > judge:
        return (text + f", more than its own {judge:.1f}° on real rotated digits, so even at trained angles the "
                "samples follow their angle less closely than real digits are read")
    if hi < judge:
        return (text + f", less than its own {judge:.1f}° on real rotated digits, so at trained angles the samples "
                "follow their angle at least as closely as real digits are read")
    return text + f", about its own {judge:.1f}° on real rotated digits"


def angle_follow_status(m: Mapping[str, Any], key: str) -> str | None:
    """Whether a model's samples follow their angle at unseen angles: ``"chance"`` (its unseen-angle error at
    least ``NEAR_CHANCE_SHARE`` of the chance level, or its interval reaching it: :func:`chance_angle_error_deg`;
    checked first, so a small gap between two near-random errors is not read as following), ``"follows"`` (the
    angle-error gap within ``GAP_TARGET_DEG``), ``"partial"`` otherwise; ``None`` without the numbers."""
    gap, unseen = _num(m, f"gen_angle_err_gap_deg_{key}"), _num(m, f"gen_angle_err_unseen_deg_{key}")
    chance = _num(m, "gen_angle_err_chance_deg")
    if gap is None or unseen is None:
        return None
    if chance is not None and (unseen >= NEAR_CHANCE_SHARE * chance
                               or _interval(m, f"gen_angle_err_unseen_deg_{key}")[1] >= chance):
        return "chance"
    return "follows" if gap <= GAP_TARGET_DEG else "partial"


def _chance_lead(m: Mapping[str, Any], key: str) -> str:
    """What a ``"chance"`` status (:func:`angle_follow_status`) says: by its value, or only by its interval."""
    unseen, chance = _num(m, f"gen_angle_err_unseen_deg_{key}"), _num(m, "gen_angle_err_chance_deg")
    if unseen >= NEAR_CHANCE_SHARE * chance:
        return "does not follow its angle at unseen angles"
    return ("cannot be told from uniformly random angles at unseen angles on this run (the interval of its error "
            "there reaches the chance level)")


def _chance_text(m: Mapping[str, Any], key: str) -> str:
    """A model's unseen-angle error beside the chance level: a phrase."""
    unseen, chance = _num(m, f"gen_angle_err_unseen_deg_{key}"), _num(m, "gen_angle_err_chance_deg")
    text = f"{unseen:.1f}°{_ci_text(m, f'gen_angle_err_unseen_deg_{key}', '°')}"
    if chance is None:
        return text
    return text + f" against the {chance:.1f}° that uniformly random angles would score ({unseen / chance:.2f}× that)"


def _bands_text(m: Mapping[str, Any], key: str) -> str:
    """Digit accuracy and angle error at trained angles, within ``SEED_CLAIM_DEG`` of them and farther."""
    acc = [_num(m, f"gen_digit_acc_{s}_{key}") for s in ("seen_pct", "within30_pct", "beyond30_pct")]
    err = [_num(m, f"gen_angle_err_{s}_deg_{key}") for s in ("seen", "within30", "beyond30")]
    names = ("at trained angles", f"within {SEED_CLAIM_DEG:g}° of them", "farther")
    acc_part = ", ".join(f"{v:.1f} % {n}" for v, n in zip(acc, names) if v is not None)
    err_part = ", ".join(f"{v:.1f}° {n}" for v, n in zip(err, names) if v is not None)
    return f"digit accuracy {acc_part}" + (f"; angle error {err_part}" if err_part else "")


def chance_sentence(m: Mapping[str, Any]) -> str:
    """The angle error's chance level (``gen_angle_err_chance_deg``) and what it means for a model near it."""
    chance = _num(m, "gen_angle_err_chance_deg")
    if chance is None:
        return "This run has no sample at an unseen angle, so it gives no chance level for the angle error."
    return (f"Its chance level: a generator whose angles were uniformly random would score {chance:.1f}° at the "
            "unseen angles (90° for a digit scored circularly, 45° for the 0s, 1s and 8s, scored modulo 180°, over "
            f"the evaluated digits). A design whose unseen-angle error is at least {100 * NEAR_CHANCE_SHARE:g} % of "
            "that does not follow its angle there; one whose interval merely reaches it cannot be told from random "
            "angles there.")


def generalise_sentence(m: Mapping[str, Any]) -> str:
    """The discussion's answer, from the numbers: per learned design (scalar, FiLM, learned rotation) above the
    sample-quality floor, whether it generalises to unseen angles, from both the digit accuracy drop and the
    angle-error gap (the issue's targets, ``DROP_TARGET_PTS`` and ``GAP_TARGET_DEG``) and its unseen-angle error
    against the chance level; then the overall verdict."""
    learned = [k for k in ("scalar", "film", "latent") if _num(m, f"gen_digit_acc_seen_pct_{k}") is not None]
    if not learned:
        return ""
    working = [k for k in learned if _floor_holds(m, k)]
    if not working:
        best = max(learned, key=lambda k: m[f"gen_digit_acc_seen_pct_{k}"])
        return (f"No learned design reaches the {SAMPLE_FLOOR_PCT:g} % floor on this run (the best, "
                f"{MODELS[best]}, reaches {m[f'gen_digit_acc_seen_pct_{best}']:.1f} %), so whether a conditional "
                "VAE that draws the intended digit generalises to unseen angles is not answered here; the drops "
                "above describe generators that are still partly failing at their trained angles.")
    parts, generalises, at_chance = [], [], []
    for k in working:
        drop, gap = m[f"gen_digit_acc_drop_pts_{k}"], m[f"gen_angle_err_gap_deg_{k}"]
        status = angle_follow_status(m, k)
        drop_text = f"{drop:.1f} points{_ci_text(m, f'gen_digit_acc_drop_pts_{k}', ' points')}"
        gap_text = f"{gap:.1f}°{_ci_text(m, f'gen_angle_err_gap_deg_{k}', '°')}"
        if drop <= DROP_TARGET_PTS and status == "follows":
            generalises.append(k)
            verdict = (f"generalises: its digit accuracy drops by {drop_text} (target ≤ {DROP_TARGET_PTS:g}) and "
                       f"its angle error grows by {gap_text} (target ≤ {GAP_TARGET_DEG:g}°)")
        elif status == "chance":
            at_chance.append(k)
            verdict = (f"{_chance_lead(m, k)}: its angle error there is {_chance_text(m, k)}, "
                       f"a gap of {gap_text} over trained angles. Its digit accuracy drops by {drop_text}, which "
                       "says only how often it still draws the intended digit there, at whatever orientation")
        elif status == "follows":
            verdict = (f"follows its angle at unseen angles (its angle error grows by {gap_text}, within "
                       f"{GAP_TARGET_DEG:g}°) but draws the intended digit less often there: its digit accuracy "
                       f"drops by {drop_text} (target ≤ {DROP_TARGET_PTS:g})")
        else:
            verdict = (f"degrades at unseen angles in both readings: its digit accuracy drops by {drop_text} and its "
                       f"angle error grows by {gap_text} to {_chance_text(m, k)}, so it follows its angle there "
                       "only in part")
        parts.append(f"The {MODELS[k]} {verdict} ({_bands_text(m, k)}).")
    below = [MODELS[k] for k in learned if k not in working]
    if generalises:
        head = ("On this run a conditional VAE that draws the intended digit at its trained angles does generalise "
                "to unseen angles in the " + ", ".join(MODELS[k] for k in generalises) + " design. ")
    else:
        head = ("On this run no learned design that draws the intended digit at its trained angles generalises to "
                f"unseen angles by the targets (a drop of at most {DROP_TARGET_PTS:g} points and an angle-error gap "
                f"of at most {GAP_TARGET_DEG:g}°). ")
    judge = _num(m, "judge_angle_mae_deg")
    text = head + " ".join(parts) + ("" if judge is None else
                                     f" (The angle judge's own error on real rotated digits is {judge:.1f}°.)")
    if at_chance:
        text += (" The digit judge is rotation-invariant, so the digit accuracy does not see orientation: a sample "
                 "drawn at the wrong angle still counts as the right digit, and only the angle error tells whether "
                 "the " + ", ".join(MODELS[k] for k in at_chance) + " model turns its digit; near the chance level "
                 "it does not.")
    if below:
        text += f" Below the {SAMPLE_FLOOR_PCT:g} % floor, and so not read here: {', '.join(below)}."
    return text


def probe_sentence(m: Mapping[str, Any]) -> str:
    """How much of the angle a linear probe reads from each model's code, and which codes carry more or less of
    it than the seed recipe's (self-reconstruction) code: whether pair training kept the angle out of the code."""
    probes = {k: _num(m, f"z_angle_probe_r2_{k}") for k in MODELS}
    if all(v is None for v in probes.values()):
        return "This run did not probe the codes for the angle."
    parts = [f"{MODELS[k]} {v:.2f}{_ci_text(m, f'z_angle_probe_r2_{k}', '', '{:.2f}')}"
             for k, v in probes.items() if v is not None]
    text = ("How much of the angle a linear probe reads from each model's code (R² for (cos θ, sin θ) on test "
            "digits at training angles; 1 is a perfect read-out, 0 none): " + "; ".join(parts) + ".")
    ref = probes.get(SEED_RECIPE)
    others = [k for k, v in probes.items() if v is not None and k != SEED_RECIPE]
    if ref is None or not others:
        return text
    more, less, same, unresolved = [], [], [], []
    for k in others:
        lo, hi = _interval(m, f"z_angle_probe_r2_{k}")
        if lo <= ref <= hi and lo < hi:
            unresolved.append(k)
        elif abs(probes[k] - ref) < PROBE_SAME_R2:
            same.append(k)
        else:
            (more if probes[k] > ref else less).append(k)
    bits = []
    if same:
        bits.append(f"about as much (within {PROBE_SAME_R2:g}) in the "
                    + ", ".join(f"{MODELS[k]} ({probes[k]:.2f})" for k in same))
    if less:
        bits.append("less in the " + ", ".join(f"{MODELS[k]} ({probes[k]:.2f})" for k in less))
    if more:
        bits.append("more in the " + ", ".join(f"{MODELS[k]} ({probes[k]:.2f})" for k in more))
    if bits:
        text += f" Against the seed recipe's {ref:.2f}, the pair-trained codes carry " + "; ".join(bits) + "."
    for k in unresolved:
        lo, hi = _interval(m, f"z_angle_probe_r2_{k}")
        text += (f" For the {MODELS[k]} ({probes[k]:.2f}) the interval over seeds ({lo:.2f} to {hi:.2f}) includes "
                 f"the seed recipe's {ref:.2f}: more or less is not resolved.")
    reason = ("Pair training takes away the seed recipe's reason to carry the angle in the code (the output's "
              "angle is not the input's)")
    if more or same:
        text += f" {reason}, but on this run it does not keep the angle out of every code."
    elif unresolved:
        text += (f" {reason}; whether it keeps the angle out of the "
                 + ", ".join(MODELS[k] for k in unresolved) + " code is not resolved by this run.")
    else:
        text += " On this run every pair-trained code carries less of the angle than the seed recipe's."
    single = [k for k in (SEED_RECIPE, *others) if m.get(f"z_angle_probe_r2_{k}_ci95") is None]
    if single:
        text += " Readings without an interval come from one training seed."
    return text


def discussion(m: Mapping[str, Any]) -> dict[str, str]:
    """Sentences for the notebook's discussion, written from the run's metrics (each holds whatever the
    outcome; a model left out of the run gets a sentence saying so)."""
    out = {}
    out["cvae_ci_sentence"] = ci_sentence(m)
    out["cvae_sampling_sentence"] = (
        f"Every sample is decoded from a code drawn from the prior N(0, I) at temperature {SAMPLE_TEMPERATURE:g} "
        "(no truncation, no rescaling of the code): what a reader who samples the model gets, not its best-looking "
        "codes.")
    responses = {k: _num(m, f"angle_response_ratio_{k}") for k in MODELS}
    if any(v is not None for v in responses.values()):
        a, b = m["angle_response_from_deg"], m["angle_response_to_deg"]
        parts = [f"{MODELS[k]} {v:.2f} (MSE to the turned copy {m[f'angle_follow_mse_{k}']:.4f})"
                 for k, v in responses.items() if v is not None]
        out["cvae_angle_use_sentence"] = (
            f"Does each decoder follow the angle it is given? Decoding the same prior codes at {b:g}° instead of "
            f"{a:g}° (both trained angles) changes the image by this share of what turning the {a:g}° image by "
            f"{b - a:g}° changes it (1: as much as a real rotation, 0: the angle is ignored): " + "; ".join(parts)
            + ".")
    else:
        out["cvae_angle_use_sentence"] = "This run did not measure how the decoders respond to their angle."
    if m.get("judge_digit_acc_pct") is not None:
        upright, ratio = _num(m, "judge_angle_upright_mae_deg"), _num(m, "judge_angle_mae_over_upright_ratio")
        floor_part = "" if upright is None or ratio is None else (
            f" On upright test digits, whose true angle is 0°, it reads {upright:.2f}°"
            f"{_ci_text(m, 'judge_angle_upright_mae_deg', '°', '{:.2f}')}: MNIST's own slant plus the judge's error "
            "at 0°, which this run cannot tell apart (the upright-slant floor: how much slant could explain, not a "
            f"bound a judge cannot beat). Its error at uniform angles is "
            f"{ratio:.2f}×{_ci_text(m, 'judge_angle_mae_over_upright_ratio', '×', '{:.2f}')} that floor"
            + (", so turning a digit adds little to what it already misses on upright digits. The angle judge "
               "trains on digits turned by uniformly random angles, so an error about the same at every angle, 0° "
               "included, is what it can be expected to show whatever its upright error is made of: a ratio near 1 "
               f"does not by itself show that the {upright:.2f}° is MNIST's slant rather than the judge's own error."
               if ratio <= JUDGE_SLANT_RATIO
               else ", so it misses more on turned digits than on upright ones: the judge is still coarse at other "
               "angles."))
        n_members = m.get("digit_judge_members") or 1
        if n_members >= 2 and m.get("judge_digit_acc_member_min_pct") is not None:
            panel_part = (
                f"The digit judge is a panel of {n_members} G-CNNs of one design trained from different seeds, read "
                "as the mean of their class probabilities: a single judge's reading of a generated digit, which is "
                "off the distribution it trained on, moves with its initialisation, and the panel's moves less. "
                f"Alone, its members score {m['judge_digit_acc_member_min_pct']:.1f} to "
                f"{m['judge_digit_acc_member_max_pct']:.1f} % on the real rotated test digits. ")
        else:
            panel_part = (
                "The digit judge is a single network. Its reading of generated digits, which are off the "
                "distribution it trained on, also depends on its initialisation, which this run does not vary "
                "(`digit_judge_seeds` reads with a panel of judges from several seeds, as the gpu profile does). ")
        out["cvae_judge_sentence"] = (
            panel_part + f"On 6 and 9 the rotation-invariant digit judge scores {m['judge_digit_acc_69_pct']:.1f} %. "
            + (f"The angle judge's error is {m['judge_angle_mae_deg']:.2f}° with half turns forgiven for 0, 1 and 8, "
               f"{m['judge_angle_mae_circular_deg']:.2f}° if every digit is scored circularly"
               if abs(m['judge_angle_mae_deg'] - m['judge_angle_mae_circular_deg']) >= 0.005 else
               f"The angle judge's error is {m['judge_angle_mae_deg']:.2f}° whether or not half turns are forgiven "
               "for 0, 1 and 8, as it makes no half-turn error on them")
            + f"; its median error is {m['judge_angle_median_deg']:.2f}°." + floor_part)
    present = [k for k in MODELS if _num(m, f"gen_digit_acc_seen_pct_{k}") is not None]
    if present:
        parts = []
        n_members = m.get("digit_judge_members") or 1
        straddle = []
        for k in present:
            holds = _floor_holds(m, k)
            lo, hi = _num(m, f"gen_digit_acc_seen_pct_{k}_judge_min"), _num(m, f"gen_digit_acc_seen_pct_{k}_judge_max")
            notes = [] if k == SEED_RECIPE else ["floor reached" if holds else "below the floor"]
            if n_members >= 2 and lo is not None:
                notes.append(f"single judges {lo:.1f} to {hi:.1f} %")
                if k != SEED_RECIPE and (lo < SAMPLE_FLOOR_PCT if holds else hi >= SAMPLE_FLOOR_PCT):
                    straddle.append(MODELS[k])
            parts.append(f"{MODELS[k]} {m[f'gen_digit_acc_seen_pct_{k}']:.1f} %"
                         f"{_ci_text(m, f'gen_digit_acc_seen_pct_{k}', ' %')}"
                         + (f" ({'; '.join(notes)})" if notes else ""))
        panel = "" if n_members < 2 else (
            f" Each is read by the panel of {n_members} digit judges; the range is what one judge alone reads. "
            + (f"For {', '.join(straddle)} a single judge could put the samples on the other side of the floor "
               "from the panel: the verdict rests on the panel, and one judge's seed would change it." if straddle else
               "Every single judge puts each model on the same side of the floor as the panel."))
        out["cvae_floor_sentence"] = (
            f"Samples at trained angles read as the intended digit, the floor (≥ {SAMPLE_FLOOR_PCT:g} % for every "
            "model but the seed's recipe) below which a drop at unseen angles compares two failures: "
            + "; ".join(parts) + "." + panel + _rescaled_clause(m, present))
    else:
        out["cvae_floor_sentence"] = "This run generated no samples."
    if m.get(f"gen_digit_acc_drop_pts_{SEED_RECIPE}") is not None:
        k = SEED_RECIPE
        seen, far = m[f"gen_digit_acc_seen_pct_{k}"], m[f"gen_digit_acc_beyond30_pct_{k}"]
        # the verdict reads the paired drop (the same prior draws at both kinds of angle) and its interval
        drop = _num(m, f"gen_digit_acc_drop_beyond30_pts_{k}")
        drop_ci = m.get(f"gen_digit_acc_drop_beyond30_pts_{k}_ci95")
        lower = drop is not None and drop_ci is not None and drop_ci[0] > 0
        drop_part = "" if drop is None else (
            f"a drop of {drop:.1f} points{_ci_text(m, f'gen_digit_acc_drop_beyond30_pts_{k}', ' points')} on the "
            "same prior draws, ")
        out["cvae_seed_sentence"] = (
            "The seed's recipe (a scalar angle, trained to rebuild its own input) has its generations "
            + _drop_sentence(m, k) + ". "
            + (f"More than {SEED_CLAIM_DEG:g}° from every trained angle its accuracy is {far:.1f} %"
               f"{_ci_text(m, f'gen_digit_acc_beyond30_pct_{k}', ' %')}, against {seen:.1f} % at trained angles, "
               + drop_part
               if far == far else f"No evaluation angle lies more than {SEED_CLAIM_DEG:g}° from the trained ones: ")
            + ("consistent with the seed's qualitative 'degrades beyond ±30°', now with a number. " if lower else
               "so the seed's qualitative 'degrades beyond ±30°' is not resolved by this run. " if far == far else
               "the seed's qualitative 'degrades beyond ±30°' is not tested by this run. ")
            + f"The angle judge's error on its generations is {m[f'gen_angle_err_seen_deg_{k}']:.1f}° at trained "
              f"angles and {m[f'gen_angle_err_unseen_deg_{k}']:.1f}°"
              f"{_ci_text(m, f'gen_angle_err_unseen_deg_{k}', '°')} at unseen ones.")
    else:
        out["cvae_seed_sentence"] = "The seed's recipe was not part of this run."
    if m.get("gen_digit_acc_drop_pts_scalar") is not None:
        out["cvae_scalar_sentence"] = (
            "The same scalar decoder trained on pairs has its generations " + _drop_sentence(m, "scalar")
            + f"; its angle error is {m['gen_angle_err_seen_deg_scalar']:.1f}° at trained angles and "
              f"{m['gen_angle_err_unseen_deg_scalar']:.1f}°{_ci_text(m, 'gen_angle_err_unseen_deg_scalar', '°')} "
              "at unseen ones." + _floor_clause(m, "scalar"))
    else:
        out["cvae_scalar_sentence"] = "The pair-trained scalar model was not part of this run."
    if m.get("gen_digit_acc_drop_pts_film") is not None:
        out["cvae_film_sentence"] = (
            "The FiLM model, which sees the angle as a point on the circle but must still learn what each angle "
            "looks like, has its generations " + _drop_sentence(m, "film") + f"; its angle error at unseen angles "
            f"is {m['gen_angle_err_unseen_deg_film']:.1f}°{_ci_text(m, 'gen_angle_err_unseen_deg_film', '°')} "
            f"(at trained angles {m['gen_angle_err_seen_deg_film']:.1f}°)." + _floor_clause(m, "film"))
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
                if gap_ci[1] >= 0 else "; the interval lies below zero")) + "."
            + ("" if _num(m, "gen_angle_err_chance_deg") is None else
               f" At unseen angles that error is {_chance_text(m, 'latent')}"
               + (f": it {_chance_lead(m, 'latent')}." if angle_follow_status(m, "latent") == "chance" else "."))
            + _floor_clause(m, "latent"))
    else:
        out["cvae_latent_sentence"] = "The learned-rotation model was not part of this run."
    learned = [k for k in ("scalar", "film", "latent") if _num(m, f"gen_digit_acc_seen_pct_{k}") is not None]
    if learned:
        parts = []
        for k in learned:
            near, far = _num(m, f"gen_digit_acc_within30_pct_{k}"), _num(m, f"gen_digit_acc_beyond30_pct_{k}")
            e_seen, e_near, e_far = (_num(m, f"gen_angle_err_{s}_deg_{k}") for s in ("seen", "within30", "beyond30"))
            errs = [f"{v:.1f}°" for v in (e_seen, e_near, e_far) if v is not None]
            parts.append(f"{MODELS[k]}: {m[f'gen_digit_acc_seen_pct_{k}']:.1f} % at trained angles, "
                         + (f"{near:.1f} % within {SEED_CLAIM_DEG:g}° of them" if near is not None else
                            f"no unseen angle within {SEED_CLAIM_DEG:g}°")
                         + (f", {far:.1f} % farther" if far is not None else "")
                         + (f" (angle error {' / '.join(errs)})" if len(errs) >= 2 else ""))
        chance = _num(m, "gen_angle_err_chance_deg")
        out["cvae_distance_sentence"] = (
            "How each learned design degrades with the distance to the nearest trained angle (digit accuracy, and "
            "in brackets the angle error at the same three distances"
            + (", one seed" if all((m.get(f"n_seeds_{k}") or 1) == 1 for k in learned) else
               ", pooled over each model's seeds") + "): " + "; ".join(parts) + "."
            + ("" if chance is None else
               f" For scale, uniformly random angles would score an angle error of {chance:.1f}° on the same mix of "
               "digits (90° for a digit scored circularly, 45° for the 0s, 1s and 8s, scored modulo 180°).")
            + f" 'Within {SEED_CLAIM_DEG:g}°' holds both angles between two trained intervals and angles just past "
              "the end of one; the run does not measure why a design loses what it loses at each distance.")
        out["cvae_generalise_sentence"] = generalise_sentence(m)
    else:
        out["cvae_distance_sentence"] = "No learned design was part of this run."
        out["cvae_generalise_sentence"] = ""
    out["cvae_probe_sentence"] = probe_sentence(m)
    out["cvae_chance_sentence"] = chance_sentence(m)
    if m.get("gen_digit_acc_drop_pts_rotation") is not None:
        out["cvae_rotation_sentence"] = (
            "The explicit-rotation decoder is a by-construction reference, not a result and not a ceiling: it "
            "draws an upright digit and turns it, and the digit judge is rotation-invariant, so its drop measures "
            "the judges, and its accuracy at trained angles measures how well it draws upright digits. Its "
            "generations are " + _drop_sentence(m, "rotation")
            + f". The angle judge reads its unseen-angle generations with an error of "
              f"{m['gen_angle_err_unseen_deg_rotation']:.2f}° against {m['gen_angle_err_seen_deg_rotation']:.2f}° "
              f"at trained angles. As for every model, 6 and 9 within {SIX_NINE_BAND_DEG:g}° of 180° are left out "
              f"of the digit accuracy; this model's score on them there is "
              f"{m['gen_69_acc_near180_pct_rotation']:.1f} %.")
    else:
        out["cvae_rotation_sentence"] = "The explicit-rotation model was not part of this run."
    claim_key = next((k for k in (SEED_RECIPE, "scalar") if f"claim_angle_err_seen_deg_17_{k}" in m), None)
    if claim_key is not None:
        a17, a80 = m[f"claim_angle_err_seen_deg_17_{claim_key}"], m[f"claim_angle_err_seen_deg_80_{claim_key}"]
        u17, u80 = m[f"claim_angle_err_unseen_deg_17_{claim_key}"], m[f"claim_angle_err_unseen_deg_80_{claim_key}"]
        out["cvae_claim_sentence"] = (
            f"At trained angles the judge's angle error for the {MODELS[claim_key]} model's 1s and 7s is {a17:.1f}° "
            f"against {a80:.1f}° for its 8s and 0s ({u17:.1f}° vs {u80:.1f}° at unseen angles): "
            + ("1 and 7 do rotate more legibly on this run, as the seed says. " if a17 < a80 else
               "the seed's ranking is not reproduced on this run. ")
            + "Half turns are forgiven for 0, 1 and 8 (their angle is only defined modulo 180°) but not for 7, "
              "and part of each error is the judge's own (see its per-digit error above).")
    else:
        out["cvae_claim_sentence"] = "Neither scalar model was part of this run, so the seed's 1/7 vs 8/0 claim is not tested."
    out["cvae_fitted_sentence"] = fitted_sentence(m)
    return out


def fitted_sentence(m: Mapping[str, Any]) -> str:
    """What the samples read once each model's codes are drawn from per-digit Gaussians fitted to its training
    codes (``gen_*_fitted_<model>``, :func:`fitted_metrics`) instead of the prior: per model, at trained angles
    beside the prior's reading, and for the models that reach the floor only with that sampler, their drop.
    The floor's verdict stays with the prior's samples."""
    keys = [k for k in MODELS if _num(m, f"gen_digit_acc_seen_pct_fitted_{k}") is not None]
    if not keys:
        return "This run did not draw from fitted Gaussians."
    parts = [f"{MODELS[k]} {m[f'gen_digit_acc_seen_pct_fitted_{k}']:.1f} %"
             f"{_ci_text(m, f'gen_digit_acc_seen_pct_fitted_{k}', ' %')} (prior {m[f'gen_digit_acc_seen_pct_{k}']:.1f} %)"
             for k in keys]
    text = ("The same decoders, with each digit's codes drawn from a Gaussian fitted to the codes of that digit's "
            "training images (full covariance; the encoder is never told the label, so its codes can also say which "
            "digit it saw, and the prior N(0, I) mixes the digits' regions), read as the intended digit at trained "
            "angles: " + "; ".join(parts) + ".")
    rescued = [k for k in keys if k != SEED_RECIPE and _floor_holds(m, k) is False
               and m[f"gen_digit_acc_seen_pct_fitted_{k}"] >= SAMPLE_FLOOR_PCT]
    for k in rescued:
        text += (f" The {MODELS[k]} model reaches the floor with this sampler only: its decoder draws the intended "
                 "digit from codes like its own, and the prior's draws are what keep its samples below the floor. "
                 f"With this sampler its drop at unseen angles is {m[f'gen_digit_acc_drop_pts_fitted_{k}']:.1f} points"
                 f"{_ci_text(m, f'gen_digit_acc_drop_pts_fitted_{k}', ' points')} and its angle-error gap "
                 f"{m[f'gen_angle_err_gap_deg_fitted_{k}']:.1f}°{_ci_text(m, f'gen_angle_err_gap_deg_fitted_{k}', '°')}.")
    still = [MODELS[k] for k in keys if k != SEED_RECIPE and m[f"gen_digit_acc_seen_pct_fitted_{k}"] < SAMPLE_FLOOR_PCT]
    if still:
        text += f" Below the floor even with this sampler: {', '.join(still)}."
    return text + (" The floor's verdicts and the targets stay with the prior's samples, the sampling this study "
                   "and the seed project define.")


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
