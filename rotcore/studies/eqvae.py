"""Study 02: teach a Stable-Diffusion-style VAE that rotating the latent rotates the image.

The seed fine-tuned SD 1.5's VAE (diffusers ``AutoencoderKL``) with MSE reconstruction plus
``MSE(decode(rot180(encode(x))), rot180(x))``. Here, for every element ``g`` of D4 (quarter turns and flips):

* **base**: a real pretrained latent autoencoder, TAEF2 (the Tiny AutoEncoder for FLUX.2's latent space,
  :mod:`rotcore.models.taesd`, weights from ``$ROTBOOK_DATA/taesd``; ``base="taef2"``, the default), or an
  ``AutoencoderKL`` with SD's structure pretrained in this study on the offline photos (``base="pretrain"``),
  or any ``AutoencoderKL.from_pretrained`` id / folder (``base=...``);
* **twin**: the base fine-tuned with reconstruction only (the control: same steps, data, seed), per seed;
* **ft180**: the base fine-tuned with reconstruction + the seed's rot180 loss (first seed);
* **ft** (a sweep, the trade-off curve): the base fine-tuned with reconstruction + the D4 round-trip loss
  (weight ``sweep_rotation_weights[j]``) + the encoder-side loss ``MSE(E(g·x), g·E(x))`` with a *relative*
  weight ``sweep_encoder_weights[j]`` (1 = as heavy as the base's reconstruction loss at the start, see
  :func:`encoder_scale`), one element drawn per image and step, per point ``j`` and seed (runs ``ft_p<j>``);
  the headline point is chosen on **validation** tiles (training-split photos held out of training), never
  on the held-out test photos (:func:`select_point`);
* **ftdec** (``decoder_only=True``): the base fine-tuned with its **encoder frozen** (so its latent stays the
  base's) with reconstruction + the D4 round-trip loss at the sweep's last (strongest) rotation weight and no
  encoder term, per seed: the decoder-only arm beside the all-parameter sweep;
* **gavg**: the base with a group-averaged decoder, ``D̄(z) = (1/8) Σ_h h⁻¹·D(h·z)``: exactly equivariant
  in the decoder (``D̄(g·z) = g·D̄(z)``), no training (:class:`GroupAveragedDecoder`);
* **equi**: :class:`rotcore.models.eqvae.EquivariantAutoencoderKL`, exactly D4-equivariant by construction,
  trained from scratch with reconstruction only (a rotation loss would be redundant for it);
* **scratch** (``contrast=True``, with a pretrained base): the SD-style ``AutoencoderKL`` pretrained here from
  scratch, measured untouched: the contrast to a real pretrained base.

Runs of a variant for the second and later seeds are named ``<variant>_s<seed>`` (sweep points
``ft_p<j>_s<seed>``); names without ``_s`` are the first seed. The sweep, the twin and the rot180 fine-tune
train all parameters (``finetune_params="all"``) or, globally, the decoder only (``"decoder"``: the encoder,
and so the latent, stays the base's; the encoder loss is then refused); ``ftdec`` always trains the decoder
only.

Losses (one definition for all variants, :func:`vae_loss`): ``rec = MSE(D(z), x)``,
``rot = MSE(D(g·z), g·x)`` with the same ``z``. For an ``AutoencoderKL``: images in ``[-1, 1]`` (SD's
convention), the latent a **sample** of the posterior (reparametrised, as in SD's VAE training) and LDM's KL
weight (``1e-6`` per image: KL summed over the latent against squared error summed over pixels). For TAEF2:
images in ``[0, 1]`` (its convention) and its deterministic latent (no KL). Training crops are plain random crops (no flips: a
left-right flip would hand the twin part of D4 for free). Evaluation uses the posterior **mean** and scores
images in ``[0, 1]`` (decoder output clamped), on held-out photos (split by photo); confidence intervals
resample those photos (all tiles of a photo together). Nothing is selected on the held-out photos: every
model trains for its configured epochs; the monitor tiles (``select_photos`` photos of the training split,
held out of training) draw the training curves and choose the headline sweep point.

The notebook ``notebooks/02_equivariant_vae.py`` narrates; everything it computes is here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rotcore import config as _config
from rotcore import report
from rotcore.config import ConfigError, check_positive
from rotcore.data import load_photo_squares, photo_records, random_crop_batch, tiles
from rotcore.metrics import (
    bootstrap_ci95,
    equivariance_error,
    mean_ci95,
    psnr_from_mse_db,
    ssim_per_image,
    with_ci,
)
from rotcore.models.eqvae import (
    EquivariantAutoencoderKL,
    EquivariantVAEConfig,
    SDVAEConfig,
    build_autoencoder_kl,
    build_equivariant_vae,
)
from rotcore.models.taesd import TinyAutoencoder, load_taef2
from rotcore.paths import MissingDataError
from rotcore.rotate import D4, apply_d4, apply_d4_batch, d4_compose, d4_index, d4_inverse
from rotcore.studies import Anchor
from rotcore.train import (
    FitConfig,
    FitResult,
    TensorLoader,
    count_parameters,
    fit,
    predict,
    run_dir,
    seed_everything,
)

STUDY = "02_equivariant_vae"
TITLE = "An equivariant VAE: rotating the latent rotates the image"

SEED_ROUNDTRIP_MSE = 0.0023  # the seed's rot180 round-trip MSE (SD 1.5 VAE fine-tuned, its own data; scale not stated)
EQVAE_LATENT_ERR = (0.80, 0.15)  # EQ-VAE (Kouzelis et al. 2025): SD-VAE's latent equivariance error before -> after


@dataclasses.dataclass(frozen=True)
class Variant:
    label: str
    short: str  # for legends and figure rows
    rotation: str  # which rotation loss: "none", "seed" (cfg.seed_elements) or "d4" (cfg.d4_elements)


VARIANTS: dict[str, Variant] = {
    "base": Variant("base", "base", "none"),
    "twin": Variant("twin (no rotation loss)", "twin", "none"),
    "ft180": Variant("fine-tuned, rot180 loss (seed)", "rot180 loss", "seed"),
    "ft": Variant("fine-tuned, D4 round-trip + encoder loss", "D4 loss", "d4"),
    "gavg": Variant("base, group-averaged decoder", "group-averaged", "none"),
    "equi": Variant("D4-equivariant by construction", "equivariant", "none"),
    "scratch": Variant("SD-style VAE from scratch (contrast)", "from scratch", "none"),
    "ftdec": Variant("fine-tuned decoder only, D4 round-trip loss", "decoder only", "d4"),
}
FINETUNES = ("twin", "ft180", "ft", "ftdec")
COLORS = {VARIANTS[k].short: c for k, c in zip(VARIANTS, ("#7f7f7f", "#ff7f0e", "#9467bd", "#1f77b4", "#17becf",
                                                          "#2ca02c", "#8c564b", "#e377c2"))}
TAEF2_README = {"recon_psnr_db": 29.35, "roundtrip_ratio_r180": 16.3, "latent_equiv_err_r180": 0.81}
# TAEF2 as measured by ../shared/data/taesd/README.md: 24 held-out photos, centre squares at 256 px


def variant_of(name: str) -> str:
    """``"ft_p1_s2"`` -> ``"ft"``, ``"twin_s1"`` -> ``"twin"``: the variant of a run name."""
    head = name.split("_")[0]
    return head if head in VARIANTS else name


def point_of(name: str) -> int | None:
    """``"ft_p1_s2"`` -> ``1``: the sweep point of a run name (``None`` outside the sweep)."""
    parts = name.split("_")
    return int(parts[1][1:]) if len(parts) > 1 and parts[1][:1] == "p" and parts[1][1:].isdigit() else None


def is_first_seed(name: str) -> bool:
    return not any(p[:1] == "s" and p[1:].isdigit() for p in name.split("_")[1:])


def run_name(key: str, seed: int, cfg: EqVAEStudyConfig, point: int | None = None) -> str:
    stem = key if point is None else f"{key}_p{point}"
    return stem if seed == cfg.seeds[0] else f"{stem}_s{seed}"


@dataclasses.dataclass(frozen=True)
class EqVAEStudyConfig:
    """Everything the study varies.

    ``base``: ``"taef2"`` (the pretrained TAEF2 from ``taef2_folder``, default ``$ROTBOOK_DATA/taesd``),
    ``"pretrain"`` (train an ``AutoencoderKL`` shaped by ``vae`` on the offline photos) or a Hugging Face id /
    local folder for ``AutoencoderKL.from_pretrained`` (with ``base_subfolder``, e.g. ``"vae"``). ``seeds``: the
    twin and the D4 fine-tune run once per seed (the rot180 fine-tune once, first seed). ``contrast``: with a
    pretrained base, also pretrain the SD-style ``vae`` from scratch (``pretrain_fit``) and measure it
    untouched. Photos are resized (shorter side ``photo_size``) and centre-cropped to squares; training
    batches are random ``crop_size`` crops, never flipped (a flip is an element of D4); evaluation uses every
    non-overlapping ``crop_size`` tile of the held-out photos. An "epoch" is ``passes_per_epoch`` passes over
    the training photos (one crop per photo per pass).

    The trade-off sweep: point ``j`` fine-tunes with round-trip weight ``sweep_rotation_weights[j]`` and
    relative encoder weight ``sweep_encoder_weights[j]`` (both tuples have one entry per point), for every seed.
    ``rotation_weight`` is the seed's recipe (``ft180``). ``finetune_params``: ``"all"`` or ``"decoder"``.
    ``decoder_only``: also fine-tune the decoder-only arm (``ftdec``, every seed): the encoder frozen, the D4
    round trip at the sweep's last rotation weight, no encoder term.
    ``select_photos``: the last photos of the training split, held out of training; their tiles are the
    monitor and the validation set that chooses the headline point.
    """

    base: str = "taef2"
    base_subfolder: str | None = None
    taef2_folder: str | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    contrast: bool = True
    vae: SDVAEConfig = SDVAEConfig(block_out_channels=(64, 128, 256, 256), layers_per_block=2, norm_num_groups=32,
                                   sample_size=128)
    equivariant: EquivariantVAEConfig = EquivariantVAEConfig(block_fields=(8, 16, 32, 32), layers_per_block=2,
                                                             norm_num_groups=8)
    photo_size: int = 256
    crop_size: int = 128
    train_photos: int | None = None
    val_photos: int | None = None
    passes_per_epoch: int = 8
    pretrain_fit: FitConfig = FitConfig(epochs=24, batch_size=32, lr=5e-4, optimizer="adamw", weight_decay=1e-4,
                                        lr_schedule="cosine", grad_clip=1.0)
    # a warm-up, then a per-step cosine to 0: without it, Adam's first full-size steps wreck a pretrained model
    finetune_fit: FitConfig = FitConfig(epochs=6, batch_size=32, lr=2e-4, optimizer="adamw", weight_decay=1e-4,
                                        lr_schedule="cosine", grad_clip=1.0, warmup_steps=10)
    # contiguous: the group convolutions store 5-D kernels, which channels_last cannot hold
    equivariant_fit: FitConfig = FitConfig(epochs=30, batch_size=32, lr=5e-4, optimizer="adamw",
                                           weight_decay=1e-4, lr_schedule="cosine", grad_clip=1.0,
                                           memory_format="contiguous")
    kl_weight: float = 1e-6
    rotation_weight: float = 1.0
    sweep_rotation_weights: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    sweep_encoder_weights: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    finetune_params: str = "all"
    decoder_only: bool = True
    select_photos: int = 24
    d4_elements: tuple[str, ...] = D4
    seed_elements: tuple[str, ...] = ("r180",)
    sample_posterior: bool = True
    monitor_images: int = 64
    eval_batch_size: int = 64
    exactness_images: int = 2
    figure_photos: int = 3

    def __post_init__(self):
        if not self.base:
            raise ConfigError("base must be 'taef2', 'pretrain', a Hugging Face id, or a local folder")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must name at least one seed, each once; got {self.seeds}")
        for name in ("photo_size", "crop_size", "passes_per_epoch", "eval_batch_size", "exactness_images",
                     "figure_photos"):
            check_positive(name, getattr(self, name))
        check_positive("monitor_images", self.monitor_images, allow_zero=True)
        for name in ("train_photos", "val_photos"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))
        if self.crop_size > self.photo_size:
            raise ConfigError(f"crop_size={self.crop_size} must be ≤ photo_size={self.photo_size}")
        for name, down in (("vae", self.vae.downsampling), ("equivariant", self.equivariant.downsampling),
                           ("TAEF2", 8)):
            if self.crop_size % down:
                raise ConfigError(f"crop_size={self.crop_size} must be a multiple of the {name} model's "
                                  f"downsampling factor {down}")
        check_positive("kl_weight", self.kl_weight, allow_zero=True)
        check_positive("rotation_weight", self.rotation_weight, allow_zero=True)
        check_positive("select_photos", self.select_photos)
        if not self.sweep_rotation_weights or len(self.sweep_rotation_weights) != len(self.sweep_encoder_weights):
            raise ConfigError("sweep_rotation_weights and sweep_encoder_weights need one entry per sweep point "
                              f"each; got {self.sweep_rotation_weights} and {self.sweep_encoder_weights}")
        for w in (*self.sweep_rotation_weights, *self.sweep_encoder_weights):
            check_positive("a sweep weight", w, allow_zero=True)
        if self.finetune_params not in ("all", "decoder"):
            raise ConfigError(f"finetune_params={self.finetune_params!r}; choose 'all' or 'decoder'")
        if self.finetune_params == "decoder" and any(self.sweep_encoder_weights):
            raise ConfigError("finetune_params='decoder' freezes the encoder, so the encoder loss cannot act: set "
                              "sweep_encoder_weights to zeros, or finetune_params='all'")
        for name in ("d4_elements", "seed_elements"):
            elements = getattr(self, name)
            if not elements:
                raise ConfigError(f"{name} must name at least one D4 element")
            bad = [g for g in elements if g not in D4]
            if bad:
                raise ConfigError(f"{name}: unknown D4 element(s) {bad}; choose from {', '.join(D4)}")


PROFILES: dict[str, EqVAEStudyConfig] = {
    "smoke": EqVAEStudyConfig(
        vae=SDVAEConfig(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4, sample_size=32),
        equivariant=EquivariantVAEConfig(block_fields=(2, 2, 4, 4), layers_per_block=1, norm_num_groups=2),
        photo_size=64, crop_size=32, train_photos=24, val_photos=4, select_photos=4, passes_per_epoch=1,
        seeds=(0, 1), sweep_rotation_weights=(0.3, 1.0), sweep_encoder_weights=(0.3, 1.0),
        pretrain_fit=FitConfig(epochs=2, batch_size=8, lr=2e-3, optimizer="adamw"),
        finetune_fit=FitConfig(epochs=1, batch_size=8, lr=1e-4, optimizer="adamw", lr_schedule="cosine",
                               warmup_steps=2),
        equivariant_fit=FitConfig(epochs=3, batch_size=8, lr=2e-3, optimizer="adamw", memory_format="contiguous"),
        monitor_images=8, eval_batch_size=16, exactness_images=1, figure_photos=2,
    ),
    # cpu (published; 2 cores, bf16 autocast): TAEF2 fine-tuned on 48-px crops (6 x 6 latents) of 128-px photos.
    # 24 training photos are held out as the validation set (the monitor, and the choice of the headline sweep
    # point), so 366 photos x 3 crops per epoch: 1 epoch = 68 steps of 16 (drop_last) per fine-tune, a 10-step
    # warm-up and a per-step cosine to 0. Fits: the twin for 3 seeds, rot180 once, 4 sweep points x 3 seeds and
    # the decoder-only arm x 3 seeds (19 fits; the decoder-only fits, with no backward through the frozen encoder,
    # are estimated at ~15-20 s each, ~60 s with their evaluation, not yet timed in a full run; the published run
    # without them took 735 s). The SD-style contrast (widths 16-64, 1.3 M parameters) is pretrained for 5
    # epochs, the equivariant VAE (fields 2-8) from scratch for 8. Evaluation: every 48-px tile of the 32
    # held-out photos (4 per photo).
    # FlopCounterMode, per 64-px image and step: TAEF2 12.4 GFLOP plain, 19.1 with the round-trip term's second
    # decode, ~25 with the encoder term's second encode as well (FLOPs scale with the pixels: x 0.56 at 48 px).
    # Measured on 2 cores (2026-12-03, 64-px crops, 3 crops per photo = 68 steps, from the checkpoints' epoch
    # times; that run was stopped over budget): twin 40-43 s, rot180 70 s, sweep points 82-97 s, plus ~8 s of
    # monitor per fit: the fine-tune cell 1,484 s (~1,340 s without the last fit, slowed by another job); data and
    # the contrast's pretraining 130 s; the equivariant VAE 172 s. The run before (2026-12-01, 1.5-1.7x faster
    # per step) evaluated 10 models on 192 tiles of 64 px in 257 s. This profile, scaled by pixels and steps:
    # fine-tunes 1,340 x 0.66 x 0.56 ~ 500 s; contrast + equivariant VAE (also on 48-px crops) ~190 s; evaluation
    # of 19 models + the group-averaged base (8 decodes) on 128 tiles of 48 px, at the slower speed, ~380 s;
    # import, data, exactness, figures ~100 s: ~1,170 s (~20 min).
    # Measured at 2 crops per photo (45 steps; 2026-12-03, run at 64aca9f, 968 s in all): data and contrast 51 s,
    # fine-tunes 546 s, equivariant VAE 84 s, evaluation 274 s, the rest ~13 s. The fine-tunes' equivariance had
    # barely moved in 45 steps (latent error 0.96 against the twin's 1.02), so this profile spends the spare
    # budget on steps: 3 crops per photo (68 steps), fine-tunes ~820 s, ~1,240 s (~21 min) in all.
    # lr 3e-4: in 291-step probes of the D4 fine-tune (seed 0, 8 held-out photos, before the warm-up), 3e-4
    # reached a worst round-trip ratio of 2.7 at 25.6 dB and 1e-4 a ratio of 4.5 at 26.6 dB: a lower ratio for
    # 1 dB less reconstruction (a trade-off, not the same reconstruction); 5e-4 and up wrecked reconstruction
    # within a few steps.
    # Heavier weights at this profile's 68 steps (a validation-only probe, 2026-12-06: seed 0, this profile's
    # data, the monitor's validation tiles; not on the page; twin validation PSNR 29.26 dB). (rotation, encoder)
    # weight -> worst round trip over the twin's reconstruction, over its own, PSNR cost against the twin:
    # (1, 1) 9.67x, 4.36x, 3.46 dB; (1, 3) 9.75x, 3.72x, 4.18 dB; (1, 10) 9.91x, 3.03x, 5.15 dB; (3, 30) 8.06x,
    # 1.40x, 7.62 dB; (0.3, 3) 12.48x, 7.60x, 2.15 dB. Heavier weights push the ratio against the model's OWN
    # reconstruction toward 1 by losing reconstruction, while the ratio against the twin stays >= 8x: the <= 1.5x
    # target is not reached by weighting at this step count.
    "cpu": EqVAEStudyConfig(
        vae=SDVAEConfig(block_out_channels=(16, 32, 64, 64), layers_per_block=2, norm_num_groups=8, sample_size=64),
        equivariant=EquivariantVAEConfig(block_fields=(2, 4, 8, 8), layers_per_block=2, norm_num_groups=2),
        photo_size=128, crop_size=48, val_photos=32, select_photos=24, passes_per_epoch=3, seeds=(0, 1, 2),
        sweep_rotation_weights=(0.03, 0.1, 0.3, 1.0), sweep_encoder_weights=(0.03, 0.1, 0.3, 1.0),
        pretrain_fit=FitConfig(epochs=5, batch_size=16, lr=1e-3, optimizer="adamw", weight_decay=1e-4,
                               lr_schedule="cosine", grad_clip=1.0, memory_format="contiguous"),
        finetune_fit=FitConfig(epochs=1, batch_size=16, lr=3e-4, optimizer="adamw", weight_decay=1e-4,
                               lr_schedule="cosine", grad_clip=1.0, warmup_steps=10),
        equivariant_fit=FitConfig(epochs=8, batch_size=16, lr=1e-3, optimizer="adamw", weight_decay=1e-4,
                                  lr_schedule="cosine", grad_clip=1.0, memory_format="contiguous"),
        monitor_images=64, eval_batch_size=32, exactness_images=2, figure_photos=3,
    ),
    # gpu: TAEF2 fine-tuned on 128-px crops of 256-px photos, 366 training photos x 8 crops per epoch (91 steps
    # of 32), 6 epochs per fine-tune (warm-up 10 steps), 3 seeds, a 4-point sweep and the decoder-only arm; the
    # SD-style contrast (widths 64-256) pretrained for 24 epochs and the equivariant VAE for 30. FlopCounterMode: TAEF2 50 GFLOP per
    # 128-px image and plain step (76 with the rotation term, ~99 with the encoder term as well); train_flops()
    # gives the total: minutes on one H100 at an assumed 100-150 TFLOP/s sustained, not yet measured. Checkpoints make a cut-off run resume.
    "gpu": EqVAEStudyConfig(),
}

def check_data(cfg: EqVAEStudyConfig) -> None:
    """What ``rotbook run`` checks before any notebook starts (reads nothing): the photo folder and, for the
    pretrained base, TAEF2's folder."""
    from rotcore.data import check_folder, photos_root

    check_folder(photos_root(), "the photo folder", hint="Set ROTBOOK_DATA to a folder holding photos/ (e.g. "
                 "ROTBOOK_DATA=../shared/data), or rebuild it with `rotbook fetch-photos`.")
    if cfg.base == "taef2":
        from rotcore.models.taesd import taef2_folder

        folder = Path(cfg.taef2_folder) if cfg.taef2_folder else taef2_folder()
        check_folder(folder, "TAEF2's weights", hint="Set ROTBOOK_DATA to a folder holding taesd/ (e.g. "
                     "ROTBOOK_DATA=../shared/data) or taef2_folder to TAEF2's folder.")


ANCHORS = (
    Anchor("ft_roundtrip_vs_twin_ratio_max", "D4 fine-tune at the chosen point of the sweep: worst round-trip MSE "
           "over the 7 non-identity elements / the same seed's twin's reconstruction MSE (a fixed reference; mean "
           "over seeds)", None, "our target: a turned latent decodes almost as well as the control reconstructs",
           "≤ 1.5", "lower", 1.5, unit="×", fmt="{:.3f}", floor="twin_recon_psnr_db", floor_threshold=20.0,
           floor_unit=" dB", floor_label="the twin's reconstruction PSNR"),
    Anchor("ft_psnr_cost_db", "D4 fine-tune at the chosen point: reconstruction PSNR below its twin fine-tuned "
           "without the rotation and encoder losses (paired by seed, mean over seeds)", None,
           "our target: equivariance at a small reconstruction cost", "≤ 1.0 dB", "lower", 1.0, unit=" dB",
           fmt="{:.2f}", floor="twin_recon_psnr_db", floor_threshold=20.0, floor_unit=" dB",
           floor_label="the twin's reconstruction PSNR"),
    Anchor("ft_roundtrip_ratio_max", "D4 fine-tune at the chosen point: worst round-trip MSE / its own "
           "reconstruction MSE (g ≠ e; mean over seeds)", None, "this study (a worse reconstruction lowers this "
           "ratio: the target is judged on the twin-referenced ratio)", "informative", "lower", None, unit="×",
           fmt="{:.3f}"),
    Anchor("latent_equiv_err_ft", "D4 fine-tune at the chosen point: encoder-side latent equivariance error "
           "‖E(g·x) − g·E(x)‖ / ‖E(x)‖ (mean over g ≠ e and seeds)", EQVAE_LATENT_ERR[1],
           "EQ-VAE (Kouzelis et al., 2025): SD-VAE after fine-tuning (0.80 before)", "≤ 0.15", "lower", 0.15,
           fmt="{:.3f}",
           caveat="unverified here; EQ-VAE's exact definition may differ from ours (norm ratio over the set)"),
    Anchor("tradeoff_points", "Points of the trade-off curve (sweep weights) fine-tuned with at least 3 seeds",
           None, "our target: a curve with seed intervals, not one run", "≥ 4", "higher", 4.0, fmt="{:.0f}"),
    Anchor("ft180_roundtrip_mse_rot180", "rot180 round-trip MSE on [0, 1] pixels, the seed's recipe (rot180 loss "
           "only) on our base", SEED_ROUNDTRIP_MSE, "seed: SD 1.5's VAE fine-tuned with its rot180 loss, on its "
           "own data and size; our target: its number at ≤ 1 dB reconstruction cost", "≤ 0.0023", "lower",
           SEED_ROUNDTRIP_MSE, fmt="{:.4f}", floor="ft180_recon_psnr_gap_db", floor_threshold=1.0,
           floor_better="lower", floor_unit=" dB", floor_label="its reconstruction cost against the twin",
           caveat="the seed's scale is not stated: SD's VAE works on [-1, 1], where the same error reads 4× larger "
                  "(ft180_roundtrip_mse_rot180_pm1); another model, data and resolution"),
    Anchor("base_roundtrip_ratio_max", "Untouched TAEF2: worst round-trip MSE / plain reconstruction MSE (g ≠ e)",
           TAEF2_README["roundtrip_ratio_r180"], "../shared/data/taesd/README.md: TAEF2 at r180 on 24 held-out "
           "photos", "informative", "lower", None, unit="×", fmt="{:.2f}",
           caveat="measured there at 256 px on whole photos; here the worst of 7 elements on small tiles (48 px on `cpu`)"),
    Anchor("latent_equiv_err_base_r180", "Untouched TAEF2: latent equivariance error at r180",
           TAEF2_README["latent_equiv_err_r180"], "../shared/data/taesd/README.md", "informative", "lower", None,
           fmt="{:.3f}", caveat="measured there at 256 px on whole photos"),
    Anchor("equi_equiv_err_f64", "Equivariance error of the by-construction VAE (float64, max over D4)", None,
           "exact by construction", "≤ 1e-5", "lower", 1e-5, fmt="{:.1e}", kind="check",
           test="tests/test_eqvae.py::test_equivariant_vae_is_exact_in_float64"),
    Anchor("ftdec_latent_equiv_err_change", "Decoder-only arm: largest change of a seed's latent equivariance "
           "error from the base's (its encoder is frozen, so its latent is the base's)", None,
           "equal by construction", "≤ 1e-5", "lower", 1e-5, fmt="{:.1e}", kind="check",
           test="tests/test_eqvae.py::test_decoder_only_arm_keeps_the_base_encoder"),
    Anchor("gavg_decoder_equiv_err_f64", "Decoder equivariance error of the group-averaged base (float64, max over "
           "r90 and f, which generate D4)", None, "exact by construction", "≤ 1e-5", "lower", 1e-5, fmt="{:.1e}", kind="check",
           test="tests/test_eqvae.py::test_group_averaged_decoder_is_exactly_equivariant"),
)


# ---------------------------------------------------------------------------------------------------------
# Loading a pretrained AutoencoderKL (hub id or local folder)


class BaseModelUnavailable(MissingDataError):
    """The requested pretrained VAE could not be loaded; the message says what to set."""


HUB_HOST = ("huggingface.co", 443)
HUB_PROBE_TIMEOUT_S = 3.0


def hub_offline() -> bool:
    """``True`` when ``HF_HUB_OFFLINE`` is set to a true value (then nothing is fetched, only the cache is read)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection(HUB_HOST, timeout=timeout_s):
            return True
    except OSError:
        return False


def load_pretrained_vae(name_or_path: str | Path, *, subfolder: str | None = None):
    """``AutoencoderKL.from_pretrained`` with a fast, clear failure.

    A local folder (holding ``config.json`` and the weights, or a ``subfolder`` that does) is loaded directly.
    A hub id is loaded from the Hugging Face cache only when ``HF_HUB_OFFLINE`` is set, or when
    huggingface.co cannot be reached within a few seconds (so a machine without network fails in seconds,
    not after ~20 s of retries); otherwise it is downloaded. Failure raises :class:`BaseModelUnavailable`
    naming what to set. Not guaranteed: that a hub model is an ``AutoencoderKL`` at all (diffusers' error).
    """
    from diffusers import AutoencoderKL

    kwargs = {"subfolder": subfolder, "low_cpu_mem_usage": False}
    path = Path(name_or_path).expanduser()
    if path.exists():
        try:
            return AutoencoderKL.from_pretrained(path, **kwargs)
        except OSError as err:
            raise BaseModelUnavailable(
                f"{path} exists but holds no loadable AutoencoderKL"
                + (f" in subfolder {subfolder!r}" if subfolder else "")
                + f" ({err}). Point base at a folder written by save_pretrained (config.json + weights).") from None
    offline = hub_offline()
    reason = "HF_HUB_OFFLINE is set"
    if not offline and not _hub_reachable():
        offline, reason = True, f"huggingface.co:443 could not be reached within {HUB_PROBE_TIMEOUT_S:.0f} s"
    try:
        return AutoencoderKL.from_pretrained(str(name_or_path), local_files_only=offline, **kwargs)
    except OSError as err:
        where = (f"it is not in the Hugging Face cache and {reason}" if offline
                 else f"the download failed ({type(err).__name__}: {str(err)[:200]})")
        raise BaseModelUnavailable(
            f"could not load the VAE {str(name_or_path)!r}" + (f" (subfolder {subfolder!r})" if subfolder else "")
            + f": {where}. Either "
            + ("unset HF_HUB_OFFLINE on a machine with network access" if hub_offline() else
               "run on a machine that can reach huggingface.co")
            + " (and accept the model's license on the hub if it asks), set HF_HOME to a cache that holds it, pass a local folder "
            "written by save_pretrained, or use base='pretrain' to pretrain the offline base in this study."
        ) from None


# ---------------------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class PhotoData:
    """``train``: ``(N, 3, S, S)`` uint8 squares (``S = photo_size``); ``val``: ``(M, 3, c, c)`` float tiles in
    [0, 1] (``c = crop_size``) of the held-out test photos; ``val_names``: one file name per tile; ``select``:
    float tiles of the validation photos (training split, held out of training: the monitor, and the choice of
    the sweep's headline point; ``None``: the monitor falls back to ``val`` and nothing is chosen)."""

    train: torch.Tensor
    val: torch.Tensor
    val_names: list[str]
    n_train_photos: int
    n_val_photos: int
    select: torch.Tensor | None = None
    n_select_photos: int = 0


def load_data(cfg: EqVAEStudyConfig, device: torch.device | str = "cpu") -> PhotoData:
    """The offline photos, split by photo (the manifest's split), as device tensors. The last
    ``cfg.select_photos`` photos of the training split are the validation set (never trained on); training
    uses the first ``cfg.train_photos`` of the others, testing the first ``cfg.val_photos`` of the val split."""
    records = photo_records()
    train_all = [r for r in records if r.split == "train"]
    select_r = train_all[-cfg.select_photos:] if len(train_all) > cfg.select_photos else []
    train_r = train_all[: len(train_all) - len(select_r)][: cfg.train_photos]
    val_r = [r for r in records if r.split == "val"][: cfg.val_photos]
    if not train_r or not val_r:
        raise MissingDataError("the photo folder needs photos in both splits (train and val)")
    train = load_photo_squares(train_r, cfg.photo_size).to(device)
    per = (cfg.photo_size // cfg.crop_size) ** 2

    def as_tiles(recs):
        return tiles(load_photo_squares(recs, cfg.photo_size).float().div_(255.0), cfg.crop_size).to(device)

    names = [r.path.name for r in val_r for _ in range(per)]
    select = as_tiles(select_r) if select_r else None
    return PhotoData(train, as_tiles(val_r), names, len(train_r), len(val_r), select, len(select_r))


class PhotoCropLoader:
    """Batches ``(x,)`` of random ``crop``-pixel crops, float in [0, 1], never flipped or turned.

    No flip augmentation: a left-right flip is an element of D4, so flipped crops would teach every model (the
    twin too) part of what the study measures. Photos stay on the device as uint8; one epoch is ``passes``
    shuffled passes over them. Crops come from the loader's own generator (checkpointed with :meth:`state_dict`), so variants that draw different
    amounts of randomness in their losses still see identical batches.
    """

    def __init__(self, photos: torch.Tensor, *, crop: int, batch_size: int, passes: int, seed: int = 0):
        self.photos, self.crop = photos, crop
        index = torch.arange(len(photos), device=photos.device).repeat(passes)
        self.index = TensorLoader(index, batch_size=batch_size, drop_last=len(index) >= batch_size, seed=seed)
        self.generator = torch.Generator(device=photos.device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.index)

    def __iter__(self):
        for (idx,) in self.index:
            x = random_crop_batch(self.photos[idx], self.crop, generator=self.generator)
            yield (x.float().div_(255.0),)

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.index.load_state_dict(state["index"])
        self.generator.set_state(state["generator"])


# ---------------------------------------------------------------------------------------------------------
# Encode / decode in image units


class GroupAveragedDecoder(torch.nn.Module):
    """A base autoencoder whose decoder is averaged over D4: ``D̄(z) = (1/8) Σ_h h⁻¹·D(h·z)``.

    Exactly equivariant in the decoder (``D̄(g·z) = g·D̄(z)``: the sum over ``h`` runs over ``h∘g`` as well), with
    no training and 8 decodes per decode; the encoder is the base's, untouched. Not guaranteed: a good
    reconstruction (the 8 decodes disagree wherever the base is not equivariant, and their mean blurs)."""

    def __init__(self, base: torch.nn.Module):
        super().__init__()
        self.base = base

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return torch.stack([apply_d4(decode_raw(self.base, apply_d4(z, h)), d4_inverse(h)) for h in D4]).mean(0)


def encode_mean(model, x01: torch.Tensor) -> torch.Tensor:
    """The latent of images in [0, 1] (an ``AutoencoderKL``'s posterior mean; TAEF2's deterministic latent):
    ``(B, 3, H, W) -> (B, latent_channels, H/8, W/8)``."""
    if isinstance(model, GroupAveragedDecoder):
        return encode_mean(model.base, x01)
    if isinstance(model, TinyAutoencoder):
        return model.encode(x01)
    return model.encode(x01 * 2 - 1).latent_dist.mean


def decode_raw(model, z: torch.Tensor) -> torch.Tensor:
    """The decoder's raw output: [-1, 1] scale for an ``AutoencoderKL``, [0, 1] for TAEF2."""
    if isinstance(model, GroupAveragedDecoder):
        return model.decode_raw(z)
    return model.decode(z) if isinstance(model, TinyAutoencoder) else model.decode(z).sample


def decode01(model, z: torch.Tensor) -> torch.Tensor:
    """Decoded images in [0, 1] (clamped, as SD's pipelines do)."""
    out = decode_raw(model, z).float()
    return (out if _unit_range(model) else (out + 1) / 2).clamp(0, 1)


def _unit_range(model) -> bool:
    """Whether the model works on [0, 1] images (TAEF2) rather than SD's [-1, 1]."""
    return isinstance(model.base if isinstance(model, GroupAveragedDecoder) else model, TinyAutoencoder)


# ---------------------------------------------------------------------------------------------------------
# Models


def rotation_elements(key: str, cfg: EqVAEStudyConfig) -> tuple[str, ...]:
    rot = VARIANTS[key].rotation
    return () if rot == "none" else (cfg.seed_elements if rot == "seed" else cfg.d4_elements)


def base_description(cfg: EqVAEStudyConfig, data: PhotoData | None = None) -> str:
    """One sentence naming the base model (for the page)."""
    if cfg.base == "taef2":
        return ("**TAEF2**, the pretrained Tiny AutoEncoder for FLUX.2's latent space (MIT licence; 2.7 M "
                "parameters, 64 channels, 32 latent channels, 8× downsampling), reimplemented in "
                "`rotcore.models.taesd` and loaded with its published weights; it never saw these photos")
    if cfg.base == "pretrain":
        n = f"{data.n_train_photos} " if data is not None else ""
        return (f"an `AutoencoderKL` with SD's structure (widths {list(cfg.vae.block_out_channels)}, "
                f"{cfg.vae.layers_per_block} ResNet layers per block, {cfg.vae.latent_channels} latent channels, "
                f"{cfg.vae.downsampling}× downsampling) **pretrained in this study** on the {n}offline training "
                f"photos ({cfg.crop_size}-px crops); not Stable Diffusion's weights")
    sub = f" (subfolder `{cfg.base_subfolder}`)" if cfg.base_subfolder else ""
    return f"the pretrained `AutoencoderKL` `{cfg.base}`{sub}, loaded with `from_pretrained`"


def data_signature(cfg: EqVAEStudyConfig) -> dict[str, Any]:
    return {"photo_size": cfg.photo_size, "crop_size": cfg.crop_size, "train_photos": cfg.train_photos,
            "select_photos": cfg.select_photos,
            "passes_per_epoch": cfg.passes_per_epoch, "augment": "crop"}


def loss_signature(cfg: EqVAEStudyConfig, elements: Sequence[str], *, rotation_weight: float | None = None,
                   encoder_weight: float = 0.0, encoder_scale: float | None = None) -> dict[str, Any]:
    rot = cfg.rotation_weight if rotation_weight is None else rotation_weight
    sig = {"kl_weight": cfg.kl_weight, "rotation_weight": rot if elements else 0.0,
           "elements": list(elements), "sample_posterior": cfg.sample_posterior}
    if encoder_weight and elements:
        sig.update(encoder_weight=encoder_weight, encoder_scale=encoder_scale)
    return sig


def base_signature(cfg: EqVAEStudyConfig) -> dict[str, Any]:
    """What identifies a base that is loaded, not trained (part of its fine-tunes' checkpoint configs)."""
    if cfg.base == "taef2":
        from rotcore.models.taesd import TAEF2_FILES, taef2_folder

        folder = Path(cfg.taef2_folder) if cfg.taef2_folder else taef2_folder()
        sizes = [(folder / f).stat().st_size if (folder / f).is_file() else None for f in TAEF2_FILES]
        return {"base": "taef2", "files": dict(zip(TAEF2_FILES, sizes))}
    return {"base": cfg.base, "subfolder": cfg.base_subfolder}


def vae_loss(cfg: EqVAEStudyConfig, elements: Sequence[str] = (), *, rotation_weight: float | None = None,
             encoder_weight: float = 0.0, encoder_scale: float = 1.0):
    """``loss_fn(model, (x,))`` for :func:`rotcore.train.fit`: reconstruction + KL (+ rotation and encoder terms).

    ``rec = MSE(D(z), x)`` and, when ``elements`` is not empty, one ``g`` drawn uniformly from ``elements`` per
    image (global RNG; a single element is applied to the whole batch) for the round trip
    ``rot = MSE(D(g·z), g·x)`` (weight ``rotation_weight``, default ``cfg.rotation_weight``) and the
    encoder-side term ``enc = MSE(E(g·x), g·E(x))`` on the latent (posterior means for an ``AutoencoderKL``),
    weighted ``encoder_weight · encoder_scale``: with ``encoder_scale`` from :func:`encoder_scale` (the base's
    reconstruction MSE over its encoder MSE), ``encoder_weight = 1`` makes the encoder term as heavy as the
    reconstruction term at the start of the fine-tune (unnormalised it starts ~270× heavier on TAEF2).
    ``AutoencoderKL``: ``z`` a posterior sample (or the mean when ``cfg.sample_posterior`` is false), images on
    SD's [-1, 1] scale, plus ``kl_weight·KL/(3HW)`` (LDM's per-image weighting). TAEF2: [0, 1] images, its
    deterministic latent. Logged: ``rec_mse`` and ``rot_mse`` in [0, 1] image units, ``enc_mse`` in latent
    units.
    """
    g_table = torch.tensor([d4_index(g) for g in elements], dtype=torch.long)
    rot_w = cfg.rotation_weight if rotation_weight is None else rotation_weight

    def loss_fn(model, batch):
        (x01,) = batch
        tiny = isinstance(model, TinyAutoencoder)
        if tiny:  # [0, 1] images, deterministic latent, no KL
            x, scale = x01, 1.0
            z = z_mean = model.encode(x)
            rec = F.mse_loss(model.decode(z).float(), x)
            loss, logs = rec, {"rec_mse": rec.detach()}
        else:
            x, scale = x01 * 2 - 1, 4.0
            posterior = model.encode(x).latent_dist
            z_mean = posterior.mean
            z = posterior.sample() if cfg.sample_posterior else z_mean
            rec = F.mse_loss(model.decode(z).sample.float(), x)
            kl = posterior.kl().float().mean() / x[0].numel()
            loss = rec + cfg.kl_weight * kl
            logs = {"rec_mse": rec.detach() / scale, "kl": kl.detach()}
        if len(g_table) and (rot_w > 0 or encoder_weight > 0):
            if len(g_table) == 1:  # one element: no per-image draw (and no data-dependent indexing)
                def act(t):
                    return apply_d4(t, elements[0])
            else:
                gi = g_table.to(x.device)[torch.randint(len(g_table), (len(x),), device=x.device)]

                def act(t):
                    return apply_d4_batch(t, gi)
            xg = act(x)
            if rot_w > 0:
                rot = F.mse_loss(decode_raw(model, act(z)).float(), xg)
                loss = loss + rot_w * rot
                logs["rot_mse"] = rot.detach() / scale
            if encoder_weight > 0:
                zg = model.encode(xg) if tiny else model.encode(xg).latent_dist.mean
                enc = F.mse_loss(zg.float(), act(z_mean).float())
                loss = loss + encoder_weight * encoder_scale * enc
                logs["enc_mse"] = enc.detach()
        return loss, logs

    return loss_fn


def encoder_scale(model, data: PhotoData, cfg: EqVAEStudyConfig, *, images: int = 32, seed: int = 0) -> float:
    """The base's reconstruction loss over its encoder-equivariance loss (both as :func:`vae_loss` computes them,
    latent means, the mean over the non-identity elements of ``cfg.d4_elements``) on ``images`` random training
    crops drawn with ``seed``: the factor that makes a relative encoder weight of 1 start as heavy as the
    reconstruction term. Rounded to 4 significant digits (it enters the checkpoint's config)."""
    photos = data.train[: images]
    gen = torch.Generator(device=photos.device).manual_seed(seed)
    x01 = random_crop_batch(photos, cfg.crop_size, generator=gen).float().div_(255.0)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        z = encode_mean(model, x01)
        tiny = _unit_range(model)
        rec = F.mse_loss(decode_raw(model, z).float(), x01 if tiny else x01 * 2 - 1).item()
        enc = [F.mse_loss(encode_mean(model, apply_d4(x01, g)).float(), apply_d4(z, g).float()).item()
               for g in cfg.d4_elements if g != "e"]
    model.train(was_training)
    return float(f"{rec / max(sum(enc) / max(len(enc), 1), 1e-12):.4g}")


def monitor(cfg: EqVAEStudyConfig, tiles01: torch.Tensor, curve_elements: Sequence[str] = ("r90", "r180", "f")):
    """``validate(model)`` for ``fit`` on the first ``cfg.monitor_images`` of ``tiles01`` (the validation tiles):
    ``val_recon_mse`` / ``val_recon_psnr_db``, the worst round trip over the non-identity elements of D4
    (``val_roundtrip_mse_max``, used by :func:`select_point`) and, for the curves, the round trip's PSNR of
    the mean MSE over ``curve_elements``. ``None`` when disabled."""
    if cfg.monitor_images == 0:
        return None
    probe = tiles01[: cfg.monitor_images]
    elements = D4[1:]

    def validate(model):
        stats = predict(model, probe, batch_size=cfg.eval_batch_size,
                        fn=lambda m, xb: _image_stats(m, xb, elements, latents=False))
        n = probe[0].numel() * len(probe)
        sums = stats.sum(0) / n
        rec = sums[0].item()
        curve = sum(sums[1 + elements.index(g)].item() for g in curve_elements) / len(curve_elements)
        return {"val_recon_mse": rec, "val_recon_psnr_db": psnr_from_mse_db(rec),
                "val_roundtrip_mse_max": sums[1:].max().item(), "val_roundtrip_psnr_db": psnr_from_mse_db(curve)}

    return validate


@dataclasses.dataclass
class Trained:
    key: str  # the variant
    model: torch.nn.Module
    result: FitResult | None  # None for a base that is loaded, not trained
    run_config: dict[str, Any]
    seed: int = 0
    name: str = ""  # the run's name: the variant, or ``<variant>_s<seed>`` for later seeds
    point: int | None = None  # the sweep point of a D4 fine-tune

    def __post_init__(self):
        self.name = self.name or self.key


def _fit(key: str, model, cfg: EqVAEStudyConfig, fit_cfg: FitConfig, data: PhotoData, run_cfg: dict[str, Any],
         elements: Sequence[str], *, name: str | None = None, device=None, progress=None, **loss_kw) -> Trained:
    name = name or key
    loader = PhotoCropLoader(data.train, crop=cfg.crop_size, batch_size=fit_cfg.batch_size,
                             passes=cfg.passes_per_epoch, seed=fit_cfg.seed)
    ckpt = run_dir(STUDY, name, run_cfg) / "checkpoint.pt"
    tiles01 = data.select if data.select is not None else data.val
    result = fit(model, vae_loss(cfg, elements, **loss_kw), loader, config=fit_cfg, validate=monitor(cfg, tiles01),
                 checkpoint=ckpt, run_config=run_cfg, device=device, progress=progress,
                 desc=f"{name}: {VARIANTS[key].label}")
    return Trained(key, model, result, run_cfg, seed=fit_cfg.seed, name=name)


def train_base(cfg: EqVAEStudyConfig, data: PhotoData, *, device=None, progress: bool | None = None) -> Trained:
    """The base: TAEF2 with its published weights, an SD-style VAE pretrained here on the photos
    (cache-or-train), or a VAE loaded with ``from_pretrained``."""
    if cfg.base == "pretrain":
        return _pretrain("base", cfg, data, device=device, progress=progress)
    if cfg.base == "taef2":
        model = load_taef2(cfg.taef2_folder)
    else:
        model = load_pretrained_vae(cfg.base, subfolder=cfg.base_subfolder)
    return Trained("base", model.to(device) if device is not None else model, None, base_signature(cfg))


def _pretrain(key: str, cfg: EqVAEStudyConfig, data: PhotoData, *, device=None, progress=None) -> Trained:
    """The SD-style VAE pretrained from scratch on the photos (one cached run, whether it is the base or the
    contrast)."""
    seed_everything(cfg.pretrain_fit.seed)
    model = build_autoencoder_kl(cfg.vae)
    run_cfg = {"study": STUDY, "phase": "pretrain", "vae": cfg.vae, "fit": cfg.pretrain_fit,
               "data": data_signature(cfg), "loss": loss_signature(cfg, ())}
    t = _fit("base", model, cfg, cfg.pretrain_fit, data, run_cfg, (), device=device, progress=progress)
    return dataclasses.replace(t, key=key, name=key)


def train_contrast(cfg: EqVAEStudyConfig, data: PhotoData, *, device=None,
                   progress: bool | None = None) -> Trained | None:
    """The contrast (``cfg.contrast``): the SD-style VAE pretrained from scratch on the photos, measured
    untouched. ``None`` when the base is itself that model or the contrast is off."""
    if not cfg.contrast or cfg.base == "pretrain":
        return None
    return _pretrain("scratch", cfg, data, device=device, progress=progress)


def finetune(key: str, base: Trained, cfg: EqVAEStudyConfig, data: PhotoData, *, seed: int | None = None,
             point: int | None = None, encoder_scale_value: float | None = None, device=None,
             progress: bool | None = None) -> Trained:
    """Fine-tune a copy of the base: ``twin`` (no rotation loss), ``ft180`` (seed's recipe), ``ft`` (sweep
    point ``point``, default 0: D4 round trip and encoder terms) or ``ftdec`` (the decoder only: D4 round trip
    at the sweep's last rotation weight, no encoder term), with ``seed`` (default: the first of
    ``cfg.seeds``) for the crops, the rotation draws and the optimiser. ``encoder_scale_value``: the base's
    :func:`encoder_scale` (computed here when the point needs it and none is given). With
    ``cfg.finetune_params == "decoder"``, and always for ``ftdec``, the encoder is frozen."""
    if key not in FINETUNES:
        raise ValueError(f"key={key!r}; choose one of {FINETUNES}")
    seed = cfg.seeds[0] if seed is None else seed
    elements = rotation_elements(key, cfg)
    loss_kw: dict[str, Any] = {}
    if key == "ft":
        point = 0 if point is None else point
        if not 0 <= point < len(cfg.sweep_rotation_weights):
            raise ValueError(f"point={point}; the sweep has {len(cfg.sweep_rotation_weights)} points")
        loss_kw = {"rotation_weight": cfg.sweep_rotation_weights[point],
                   "encoder_weight": cfg.sweep_encoder_weights[point]}
        if loss_kw["encoder_weight"]:
            loss_kw["encoder_scale"] = (encoder_scale(base.model, data, cfg) if encoder_scale_value is None
                                        else encoder_scale_value)
    else:
        point = None
        if key == "ftdec":
            loss_kw = {"rotation_weight": cfg.sweep_rotation_weights[-1]}
    params = "decoder" if key == "ftdec" else cfg.finetune_params
    fit_cfg = dataclasses.replace(cfg.finetune_fit, seed=seed)
    seed_everything(seed)
    model = copy.deepcopy(base.model)
    if params == "decoder":
        freeze_encoder(model)
    run_cfg = {"study": STUDY, "phase": "finetune", "base": base.run_config, "fit": fit_cfg,
               "data": data_signature(cfg), "params": params,
               "loss": loss_signature(cfg, elements, **loss_kw)}
    t = _fit(key, model, cfg, fit_cfg, data, run_cfg, elements, name=run_name(key, seed, cfg, point),
             device=device, progress=progress, **loss_kw)
    return dataclasses.replace(t, point=point)


def freeze_encoder(model: torch.nn.Module) -> torch.nn.Module:
    """Stop gradients to the encoder (and an ``AutoencoderKL``'s ``quant_conv``): a decoder-only fine-tune."""
    for part in ((model.encoder,) if isinstance(model, TinyAutoencoder) else
                 (model.encoder, getattr(model, "quant_conv", None))):
        for prm in (part.parameters() if part is not None else ()):
            prm.requires_grad_(False)
    return model


def finetune_runs(cfg: EqVAEStudyConfig) -> list[tuple[str, int, int | None]]:
    """``(variant, seed, sweep point)`` of every fine-tune, in training order: twin, rot180, every sweep point
    and (``cfg.decoder_only``) the decoder-only arm for the first seed, then the twin, every sweep point and the
    decoder-only arm for each further seed."""
    points = range(len(cfg.sweep_rotation_weights))

    def per_seed(s):
        return ([("twin", s, None)] + [("ft", s, j) for j in points]
                + ([("ftdec", s, None)] if cfg.decoder_only else []))

    first = per_seed(cfg.seeds[0])
    return first[:1] + [("ft180", cfg.seeds[0], None)] + first[1:] + [r for s in cfg.seeds[1:] for r in per_seed(s)]


def group_averaged(base: Trained) -> Trained:
    """The base with its decoder averaged over D4 (:class:`GroupAveragedDecoder`): no training."""
    return Trained("gavg", GroupAveragedDecoder(base.model), None, {"base": base.run_config, "decoder": "D4 average"})


def train_equivariant(cfg: EqVAEStudyConfig, data: PhotoData, *, device=None, progress: bool | None = None) -> Trained:
    """The by-construction D4-equivariant VAE, trained from scratch with reconstruction + KL only."""
    seed_everything(cfg.equivariant_fit.seed)
    model = build_equivariant_vae(cfg.equivariant)
    run_cfg = {"study": STUDY, "phase": "scratch", "equivariant": cfg.equivariant, "fit": cfg.equivariant_fit,
               "data": data_signature(cfg), "loss": loss_signature(cfg, ())}
    return _fit("equi", model, cfg, cfg.equivariant_fit, data, run_cfg, (), device=device, progress=progress)


def model_table(trained: Sequence[Trained]):
    """Parameters, training time and images seen per model (a DataFrame)."""
    import pandas as pd

    rows = []
    for t in trained:
        r = t.result
        rows.append({"model": t.name, "label": VARIANTS[t.key].label, "seed": t.seed if r else None,
                     "class": type(t.model).__name__,
                     "parameters": count_parameters(t.model),
                     "epochs": len(r.history) if r else 0,
                     "train_time_s": r.train_time_s if r else 0.0,
                     "rotation loss": ", ".join(t.run_config.get("loss", {}).get("elements", [])) or "—"})
    return pd.DataFrame(rows).set_index("model")


# ---------------------------------------------------------------------------------------------------------
# Export in diffusers' format


def export_pretrained(trained: Trained, folder: str | Path, cfg: EqVAEStudyConfig) -> Path:
    """``save_pretrained`` the model (diffusers' own config and safetensors) and write our additions (loss
    weights, group elements, base, data) beside it as ``rotbook_eqvae.json``. Returns the folder."""
    folder = Path(folder)
    if isinstance(trained.model, TinyAutoencoder):  # TAEF2's own format: two state dicts, loadable by load_taef2
        from rotcore.models.taesd import TAEF2_FILES

        folder.mkdir(parents=True, exist_ok=True)
        for part, name in zip((trained.model.encoder, trained.model.decoder), TAEF2_FILES):
            torch.save({k: v.detach().cpu().contiguous() for k, v in part.state_dict().items()}, folder / name)
    else:
        trained.model.save_pretrained(folder)
    extra = {"study": STUDY, "variant": trained.key, "label": VARIANTS[trained.key].label,
             "run_config": _config.to_dict(trained.run_config), "base": cfg.base,
             "base_subfolder": cfg.base_subfolder}
    (folder / "rotbook_eqvae.json").write_text(json.dumps(extra, indent=2) + "\n")
    return folder


def load_exported(folder: str | Path):
    """Load a folder written by :func:`export_pretrained`: a TAEF2 (its two state dicts), or an
    ``AutoencoderKL`` / ``EquivariantAutoencoderKL`` according to diffusers' ``_class_name`` in its
    ``config.json``."""
    from diffusers import AutoencoderKL

    from rotcore.models.taesd import TAEF2_FILES

    if all((Path(folder) / f).is_file() for f in TAEF2_FILES):
        return load_taef2(folder)
    name = json.loads((Path(folder) / "config.json").read_text()).get("_class_name")
    cls = EquivariantAutoencoderKL if name == EquivariantAutoencoderKL.__name__ else AutoencoderKL
    return cls.from_pretrained(folder, low_cpu_mem_usage=False)


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def _sse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).pow(2).flatten(1).sum(1)


def _image_stats(model, x01: torch.Tensor, elements: Sequence[str], *, latents: bool = True) -> torch.Tensor:
    """Per image: ``[recon SSE, round-trip SSE per element, (latent SSE per element, latent energy, recon
    SSIM)]``."""
    z = encode_mean(model, x01).float()
    decoded = _decodes01(model, z, ("e", *elements))
    rec = decoded["e"]
    cols = [_sse(rec, x01)]
    for g in elements:
        cols.append(_sse(decoded[g], apply_d4(x01, g)))
    if latents:
        for g in elements:
            cols.append(_sse(encode_mean(model, apply_d4(x01, g)), apply_d4(z, g)))
        cols.append(z.pow(2).flatten(1).sum(1))
        cols.append(ssim_per_image(rec, x01.float()))
    return torch.stack(cols, dim=1)


def _decodes01(model, z: torch.Tensor, elements: Sequence[str]) -> dict[str, torch.Tensor]:
    """``{g: decode01(model, g·z)}``; for a :class:`GroupAveragedDecoder` from one set of 8 base decodes
    (``D̄(g·z) = (1/8) Σ_h h⁻¹·D((h∘g)·z)``), the same numbers as ``decode01`` up to the order of the sum."""
    if not isinstance(model, GroupAveragedDecoder):
        return {g: decode01(model, apply_d4(z, g)) for g in elements}
    raw = {k: decode_raw(model.base, apply_d4(z, k)).float() for k in D4}
    out = {}
    for g in elements:
        avg = torch.stack([apply_d4(raw[d4_compose(h, g)], d4_inverse(h)) for h in D4]).mean(0)
        out[g] = (avg if _unit_range(model) else (avg + 1) / 2).clamp(0, 1)
    return out


def image_stats(trained: Sequence[Trained], x01: torch.Tensor, cfg: EqVAEStudyConfig,
                elements: Sequence[str] = D4) -> dict[str, torch.Tensor]:
    """Per run (by name): ``(N, 3 + 2·len(elements))`` float64 values per held-out tile ``x01`` (posterior
    mean, fp32): reconstruction SSE, round-trip SSE per element, latent SSE per element, latent energy,
    reconstruction SSIM (see :func:`evaluate`)."""
    return {t.name: predict(t.model, x01, batch_size=cfg.eval_batch_size,
                           fn=lambda m, xb: _image_stats(m, xb, elements)).double().cpu() for t in trained}


def evaluate(stats: Mapping[str, torch.Tensor], pixels_per_image: int, elements: Sequence[str] = D4):
    """Per model and D4 element, from :func:`image_stats` of held-out tiles:

    * ``recon_mse`` / ``recon_psnr_db``: ``D(E(x))`` vs ``x`` (the same for every element);
    * ``roundtrip_mse`` / ``roundtrip_psnr_db``: ``D(g·E(x))`` vs ``g·x`` (the seed's metric);
    * ``roundtrip_ratio``: ``roundtrip_mse / recon_mse``;
    * ``latent_equiv_err``: ``‖E(g·x) − g·E(x)‖ / ‖E(x)‖`` with both norms over the whole set (relative,
      0 = equivariant; the definition of ../shared/data/taesd/README.md, 0.81 for TAEF2 at r180);
    * ``ssim``: mean SSIM of the plain reconstruction (torchmetrics, Gaussian window 11).

    MSEs are on [0, 1] pixels pooled over all tiles; PSNR is ``10·log10(1/MSE)`` of that pooled MSE.
    Returns a long DataFrame (one row per run and element; ``model`` is the run's name, ``variant`` its
    variant, ``first_seed`` whether it is the first seed's run).
    """
    import pandas as pd

    rows = []
    n_el = len(elements)
    for key, per_image in stats.items():
        s = per_image.sum(0)
        pixels = pixels_per_image * len(per_image)
        rec = s[0].item() / pixels
        energy = s[1 + 2 * n_el].item()
        ssim = per_image[:, 2 + 2 * n_el].mean().item() if per_image.shape[1] > 2 + 2 * n_el else float("nan")
        variant = variant_of(key)
        for i, g in enumerate(elements):
            rt = s[1 + i].item() / pixels
            rows.append({"model": key, "variant": variant, "first_seed": is_first_seed(key),
                         "label": VARIANTS[variant].short, "element": g,
                         "recon_mse": rec, "recon_psnr_db": psnr_from_mse_db(rec), "ssim": ssim,
                         "roundtrip_mse": rt, "roundtrip_psnr_db": psnr_from_mse_db(rt),
                         "roundtrip_ratio": rt / rec, "latent_equiv_err": (s[1 + n_el + i].item() / energy) ** 0.5})
    return pd.DataFrame(rows)


def headline_cis(stats: Mapping[str, torch.Tensor], photos: Sequence[str], *, elements: Sequence[str] = D4,
                 n_boot: int = 2000, seed: int = 0, ft_name: str = "ft") -> dict[str, Any]:
    """95 % intervals for the headline numbers by a percentile bootstrap over held-out **photos** (all tiles of
    a photo are drawn together: tiles of one photo are not independent tests). Each resample recomputes the
    same pooled statistic as the point estimate:

    * ``ft_recon_psnr_gap_db``: twin minus D4-fine-tune (run ``ft_name``, first seed) reconstruction PSNR,
      **paired** (both models scored on
      the same resampled tiles, so the photos' shared difficulty cancels);
    * ``<model>_roundtrip_ratio_max``: the worst element's pooled round-trip MSE over the pooled
      reconstruction MSE, for each model in ``stats``.

    Returns the results-JSON form (``metric``, ``metric_ci95``, ``metric_n`` = number of photos).
    """
    import numpy as np

    arrays = {k: v.numpy() for k, v in stats.items()}
    index = np.arange(len(photos), dtype=float)
    cols = [1 + j for j, g in enumerate(elements) if g != "e"]  # the worst over g ≠ e, as headline_metrics

    def ratio_max(a):
        return lambda idx: float((a[idx.astype(int)][:, cols].sum(0) / a[idx.astype(int), 0].sum()).max())

    out: dict[str, Any] = {}
    if "twin" in arrays and ft_name in arrays:
        tw, ft = arrays["twin"][:, 0], arrays[ft_name][:, 0]

        def gap(idx):
            i = idx.astype(int)
            return float(10 * np.log10(ft[i].sum() / tw[i].sum()))  # PSNR_twin − PSNR_ft of the pooled MSEs

        out.update(with_ci("ft_recon_psnr_gap_db",
                           *bootstrap_ci95(index, clusters=list(photos), statistic=gap, n_boot=n_boot, seed=seed)))
    for key, a in arrays.items():
        out.update(with_ci(f"{key}_roundtrip_ratio_max", *bootstrap_ci95(
            index, clusters=list(photos), statistic=ratio_max(a), n_boot=n_boot, seed=seed)))
    return out


def exactness(models: Mapping[str, torch.nn.Module], x01: torch.Tensor, elements: Sequence[str] = D4):
    """Float64 equivariance errors per model and element (a DataFrame): ``encoder`` = max |E(g·x) − g·E(x)|
    on the latent (posterior mean), ``decoder`` = max |D(g·z) − g·D(z)| on ``z = E(x)`` (raw outputs: [-1, 1]
    for an ``AutoencoderKL``, [0, 1] for TAEF2).

    The models are copied and cast to float64 on their own device (the training copies are not touched)."""
    import pandas as pd

    rows = []
    for key, model in models.items():
        m = copy.deepcopy(model).double().eval()
        x = x01.detach().to(next(m.parameters()).device, torch.float64)
        with torch.no_grad():
            z = encode_mean(m, x)
        for g in elements:
            act = (lambda t, g=g: apply_d4(t, g))  # noqa: E731
            enc = equivariance_error(lambda t, m=m: encode_mean(m, t), x, act, act)
            dec = equivariance_error(lambda t, m=m: decode_raw(m, t), z, act, act)
            rows.append({"model": key, "element": g, "encoder": enc, "decoder": dec})
    df = pd.DataFrame(rows)
    df["max"] = df[["encoder", "decoder"]].max(axis=1)
    return df


def latent_sweep(trained: Sequence[Trained], x01: torch.Tensor, elements: Sequence[str] = D4) -> torch.Tensor:
    """Frames for an animation: ``(len(elements), 1 + len(trained), 3, H, W)``: per element, the target
    ``g·x`` and each model's ``D(g·E(x))`` for one image ``x01`` of shape ``(3, H, W)``."""
    frames = []
    x = x01.unsqueeze(0)
    zs = {}
    with torch.no_grad():
        for t in trained:
            t.model.eval()
            zs[t.key] = encode_mean(t.model, x.to(next(t.model.parameters()).device)).float()
        for g in elements:
            row = [apply_d4(x, g).cpu()]
            row += [decode01(t.model, apply_d4(zs[t.key], g)).cpu() for t in trained]
            frames.append(torch.cat(row))
    return torch.stack(frames)


def scrambled_vs_correct(trained: Sequence[Trained], x01: torch.Tensor, elements: Sequence[str] = ("r180", "r90")):
    """The seed's comparison as an image grid: rows = target ``g·x`` then each model's ``D(g·E(x))``;
    columns = images × elements. Returns ``(images (R·C, 3, H, W), row_labels, column_titles)``."""
    rows, labels = [], ["target"]
    with torch.no_grad():
        targets = [apply_d4(x01, g) for g in elements]
        rows.append(torch.cat(targets).cpu())
        for t in trained:
            t.model.eval()
            dev = next(t.model.parameters()).device
            z = encode_mean(t.model, x01.to(dev)).float()
            rows.append(torch.cat([decode01(t.model, apply_d4(z, g)) for g in elements]).cpu())
            labels.append(VARIANTS[t.key].short)
    titles = [f"{g}" for g in elements for _ in range(len(x01))]
    return torch.cat(rows), labels, titles


# ---------------------------------------------------------------------------------------------------------
# Headline metrics


def _seed_suffix(name: str) -> str:
    return next((f"_{p}" for p in name.split("_")[1:] if p[:1] == "s" and p[1:].isdigit()), "")


def seed_pairs(names: Sequence[str], variant: str = "ft") -> list[tuple[str, str]]:
    """``(twin, run)`` run names trained with the same seed, for every fine-tune of ``variant`` (default the D4
    sweep: ``twin``/``ft_p0``, ``twin_s1``/``ft_p2_s1``, ...; ``"ftdec"``: ``twin_s1``/``ftdec_s1``), in the
    order of ``names``."""
    return [("twin" + _seed_suffix(n), n) for n in names
            if variant_of(n) == variant and "twin" + _seed_suffix(n) in names]


def select_point(runs: Sequence[Trained], cfg: EqVAEStudyConfig) -> tuple[int, Any]:
    """The headline point of the sweep, chosen on the **validation** tiles (the monitor's last epoch; never the
    test photos): among the points whose mean reconstruction cost against their twins (paired by seed) is
    within the ``ft_psnr_cost_db`` target, the one with the lowest mean worst-round-trip-over-twin ratio; if no
    point is within it, the cheapest. Returns ``(point, table)``, the table one row per point. Without
    validation numbers (monitor off) point 0 is returned and the table says so."""
    import pandas as pd

    last = {t.name: t.result.history[-1] for t in runs if t.result is not None and t.result.history}
    rows = []
    for j, (rw, ew) in enumerate(zip(cfg.sweep_rotation_weights, cfg.sweep_encoder_weights)):
        ratios, costs = [], []
        for tw, ft in seed_pairs([t.name for t in runs]):
            if point_of(ft) != j or "val_recon_mse" not in last.get(ft, {}) or tw not in last:
                continue
            ratios.append(last[ft]["val_roundtrip_mse_max"] / last[tw]["val_recon_mse"])
            costs.append(10 * math.log10(last[ft]["val_recon_mse"] / last[tw]["val_recon_mse"]))
        rows.append({"point": j, "rotation_weight": rw, "encoder_weight": ew, "seeds": len(ratios),
                     "val_roundtrip_vs_twin_ratio_max": sum(ratios) / len(ratios) if ratios else float("nan"),
                     "val_psnr_cost_db": sum(costs) / len(costs) if costs else float("nan")})
    table = pd.DataFrame(rows).set_index("point")
    measured = table[table.seeds > 0]
    if measured.empty:
        table["chosen"] = table.index == 0
        return 0, table
    within = measured[measured.val_psnr_cost_db <= _threshold("ft_psnr_cost_db")]
    point = int(within.val_roundtrip_vs_twin_ratio_max.idxmin() if len(within) else measured.val_psnr_cost_db.idxmin())
    table["chosen"] = table.index == point
    return point, table


def _with_ci_nonneg(name: str, values) -> dict[str, Any]:
    """``with_ci(name, *mean_ci95(values))`` for a quantity that cannot be negative (a ratio of MSEs, a latent
    error): a Student-t interval over few seeds that reaches below 0 is clipped at 0, and its method says so."""
    out = with_ci(name, *mean_ci95(values))
    ci = out.get(f"{name}_ci95")
    if ci is not None and ci[0] < 0:
        out[f"{name}_ci95"] = [0.0, ci[1]]
        out[f"{name}_ci_method"] = (out.get(f"{name}_ci_method") or "interval") + ", clipped to the range [0, inf]"
    return out


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def headline_metrics(eval_df, exact_df, table, *, base_source: str, point: int | None = None,
                     sweep: Sequence[tuple[float, float]] = (), rotation_weight: float | None = None,
                     dec_rotation_weight: float | None = None) -> dict[str, Any]:
    """The flat ``metrics`` object of ``results/02_equivariant_vae.json``.

    Per run (``<name>_...``): reconstruction MSE / PSNR / SSIM, round trips per element, their worst ratio;
    ``latent_equiv_err_<name>`` (mean over g ≠ e) and ``latent_equiv_err_<name>_r180``; for a D4 fine-tune,
    ``<name>_roundtrip_vs_twin_ratio_max`` (worst round-trip MSE over its twin's reconstruction MSE). Per
    sweep point ``j`` over seeds (Student-t 95 % intervals): ``tradeoff_p<j>_...`` (``recon_psnr_db``,
    ``roundtrip_vs_twin_ratio_max``, ``psnr_cost_db`` paired by seed, ``roundtrip_ratio_max``,
    ``latent_equiv_err``, ``ssim_cost``, ``seeds``, weights from ``sweep``). The headline ``ft_...`` keys and
    ``latent_equiv_err_ft`` are those of ``point`` (chosen on validation data by :func:`select_point`;
    default 0). References on the same axes: ``base``/``gavg``/``ft180``/``twin``
    ``_roundtrip_vs_twin_ratio_max`` (against the twins' mean reconstruction MSE; ft180 against the first
    seed's twin). ``ft180_roundtrip_mse_rot180`` on [0, 1] pixels and ``..._pm1`` on SD's [-1, 1] (× 4);
    ``ft180_rotation_weight`` = ``rotation_weight`` (the seed's recipe's weight). The decoder-only arm over
    seeds: ``ftdec_mean_...`` (``recon_psnr_db``, ``roundtrip_vs_twin_ratio_max``, ``psnr_cost_db``,
    ``roundtrip_ratio_max``, ``ssim_cost``), ``latent_equiv_err_ftdec_mean``, ``ftdec_seeds``,
    ``ftdec_rotation_weight`` (= ``dec_rotation_weight``) and the check ``ftdec_latent_equiv_err_change`` (the
    largest change of a seed's latent error from the base's: 0 up to rounding, its encoder being frozen).
    """
    m: dict[str, Any] = {"base_source": base_source}
    names = list(dict.fromkeys(eval_df.model))
    for key, part in eval_df.groupby("model", sort=False):
        part = part.set_index("element")
        m[f"{key}_recon_mse"] = float(part.recon_mse.iloc[0])
        m[f"{key}_recon_psnr_db"] = float(part.recon_psnr_db.iloc[0])
        if "ssim" in part:
            m[f"{key}_ssim"] = float(part.ssim.iloc[0])
        for g, row in part.iterrows():
            m[f"{key}_roundtrip_mse_{g}"] = float(row.roundtrip_mse)
            m[f"{key}_roundtrip_psnr_db_{g}"] = float(row.roundtrip_psnr_db)
            m[f"{key}_roundtrip_ratio_{g}"] = float(row.roundtrip_ratio)
        nontrivial = part.drop(index="e", errors="ignore")
        m[f"{key}_roundtrip_ratio_max"] = float(nontrivial.roundtrip_ratio.max())
        m[f"{key}_roundtrip_mse_max"] = float(nontrivial.roundtrip_mse.max())
        m[f"{key}_roundtrip_ratio_worst_element"] = str(nontrivial.roundtrip_ratio.idxmax())
        m[f"{key}_roundtrip_psnr_db_min"] = float(nontrivial.roundtrip_psnr_db.min())
        m[f"latent_equiv_err_{key}"] = float(nontrivial.latent_equiv_err.mean()) if len(nontrivial) else None
        if "r180" in part.index:
            m[f"latent_equiv_err_{key}_r180"] = float(part.loc["r180", "latent_equiv_err"])
            m[f"{key}_roundtrip_mse_rot180"] = float(part.loc["r180", "roundtrip_mse"])
    pairs = seed_pairs(names)
    for tw, ft in pairs:  # against a fixed reference: a worse reconstruction no longer lowers the ratio
        m[f"{ft}_roundtrip_vs_twin_ratio_max"] = m[f"{ft}_roundtrip_mse_max"] / m[f"{tw}_recon_mse"]
    twins = [n for n in names if variant_of(n) == "twin"]
    if twins:
        twin_mse = _mean(m[f"{n}_recon_mse"] for n in twins)
        m["twin_mean_recon_mse"] = twin_mse
        m.update(with_ci("twin_mean_recon_psnr_db", *mean_ci95([m[f"{n}_recon_psnr_db"] for n in twins])))
        m.update(_with_ci_nonneg("twin_roundtrip_vs_twin_ratio_max",
                         [m[f"{n}_roundtrip_ratio_max"] for n in twins]))
        if all(m.get(f"latent_equiv_err_{n}") is not None for n in twins):  # beside the ft's mean over seeds
            m.update(_with_ci_nonneg("latent_equiv_err_twin_mean", [m[f"latent_equiv_err_{n}"] for n in twins]))
        m["twin_seeds"] = len(twins)
        for ref in ("base", "gavg", "equi", "scratch"):
            if f"{ref}_roundtrip_mse_max" in m:
                m[f"{ref}_roundtrip_vs_twin_ratio_max"] = m[f"{ref}_roundtrip_mse_max"] / twin_mse
    if "twin_recon_psnr_db" in m and "ft180_recon_psnr_db" in m:
        m["ft180_recon_psnr_gap_db"] = m["twin_recon_psnr_db"] - m["ft180_recon_psnr_db"]
        m["ft180_roundtrip_vs_twin_ratio_max"] = m["ft180_roundtrip_mse_max"] / m["twin_recon_mse"]
        for g in D4:
            if f"ft180_roundtrip_mse_{g}" in m:
                m[f"ft180_roundtrip_vs_twin_ratio_{g}"] = m[f"ft180_roundtrip_mse_{g}"] / m["twin_recon_mse"]
    if "ft180_roundtrip_mse_rot180" in m:
        m["ft180_roundtrip_mse_rot180_pm1"] = 4 * m["ft180_roundtrip_mse_rot180"]
        if rotation_weight is not None:
            m["ft180_rotation_weight"] = float(rotation_weight)
    points = sorted({point_of(ft) for _, ft in pairs})
    for j in points:
        pj = [(tw, ft) for tw, ft in pairs if point_of(ft) == j]
        fts = [ft for _, ft in pj]
        pre = f"tradeoff_p{j}"
        m[f"{pre}_seeds"] = len(fts)
        m[f"{pre}_run"] = fts[0]
        if j < len(sweep):
            m[f"{pre}_rotation_weight"], m[f"{pre}_encoder_weight"] = map(float, sweep[j])
        m.update(with_ci(f"{pre}_recon_psnr_db", *mean_ci95([m[f"{ft}_recon_psnr_db"] for ft in fts])))
        m.update(_with_ci_nonneg(f"{pre}_roundtrip_vs_twin_ratio_max",
                         [m[f"{ft}_roundtrip_vs_twin_ratio_max"] for ft in fts]))
        m.update(with_ci(f"{pre}_psnr_cost_db",
                         *mean_ci95([m[f"{tw}_recon_psnr_db"] - m[f"{ft}_recon_psnr_db"] for tw, ft in pj])))
        m.update(_with_ci_nonneg(f"{pre}_roundtrip_ratio_max", [m[f"{ft}_roundtrip_ratio_max"] for ft in fts]))
        m.update(_with_ci_nonneg(f"{pre}_latent_equiv_err", [m[f"latent_equiv_err_{ft}"] for ft in fts]))
        if all(f"{n}_ssim" in m for pair in pj for n in pair):
            m.update(with_ci(f"{pre}_ssim_cost", *mean_ci95([m[f"{tw}_ssim"] - m[f"{ft}_ssim"] for tw, ft in pj])))
        for g in D4:
            if all(f"{ft}_roundtrip_ratio_{g}" in m for ft in fts):
                m[f"{pre}_roundtrip_ratio_{g}"] = _mean(m[f"{ft}_roundtrip_ratio_{g}"] for ft in fts)
            if all(f"{ft}_roundtrip_mse_{g}" in m for ft in fts):
                m[f"{pre}_roundtrip_vs_twin_ratio_{g}"] = _mean(m[f"{ft}_roundtrip_mse_{g}"] / m[f"{tw}_recon_mse"]
                                                                 for tw, ft in pj)
        m[f"{pre}_roundtrip_mse_rot180"] = _mean(m.get(f"{ft}_roundtrip_mse_rot180", float("nan")) for ft in fts)
    dec_pairs = seed_pairs(names, "ftdec")
    for tw, ft in dec_pairs:
        m[f"{ft}_roundtrip_vs_twin_ratio_max"] = m[f"{ft}_roundtrip_mse_max"] / m[f"{tw}_recon_mse"]
    if dec_pairs:  # the decoder-only arm over seeds (``ftdec_mean_...``; ``ftdec_...`` is its first seed's run)
        fts = [ft for _, ft in dec_pairs]
        m["ftdec_seeds"] = len(fts)
        if dec_rotation_weight is not None:
            m["ftdec_rotation_weight"] = float(dec_rotation_weight)
        m.update(with_ci("ftdec_mean_recon_psnr_db", *mean_ci95([m[f"{ft}_recon_psnr_db"] for ft in fts])))
        m.update(_with_ci_nonneg("ftdec_mean_roundtrip_vs_twin_ratio_max",
                         [m[f"{ft}_roundtrip_vs_twin_ratio_max"] for ft in fts]))
        m.update(with_ci("ftdec_mean_psnr_cost_db",
                         *mean_ci95([m[f"{tw}_recon_psnr_db"] - m[f"{ft}_recon_psnr_db"] for tw, ft in dec_pairs])))
        m.update(_with_ci_nonneg("ftdec_mean_roundtrip_ratio_max",
                         [m[f"{ft}_roundtrip_ratio_max"] for ft in fts]))
        m.update(_with_ci_nonneg("latent_equiv_err_ftdec_mean", [m[f"latent_equiv_err_{ft}"] for ft in fts]))
        if all(f"{n}_ssim" in m for pair in dec_pairs for n in pair):
            m.update(with_ci("ftdec_mean_ssim_cost",
                             *mean_ci95([m[f"{tw}_ssim"] - m[f"{ft}_ssim"] for tw, ft in dec_pairs])))
        for g in D4:
            if all(f"{ft}_roundtrip_mse_{g}" in m for ft in fts):
                m[f"ftdec_mean_roundtrip_vs_twin_ratio_{g}"] = _mean(
                    m[f"{ft}_roundtrip_mse_{g}"] / m[f"{tw}_recon_mse"] for tw, ft in dec_pairs)
        if m.get("latent_equiv_err_base") is not None:  # a check: the frozen encoder keeps the base's latent
            m["ftdec_latent_equiv_err_change"] = max(abs(m[f"latent_equiv_err_{ft}"] - m["latent_equiv_err_base"])
                                                     for ft in fts)
    m["tradeoff_points"] = sum(m[f"tradeoff_p{j}_seeds"] >= 3 for j in points)
    m["tradeoff_points_measured"] = len(points)
    if points:
        j = points[0] if point is None or point not in points else point
        pre = f"tradeoff_p{j}"
        m["ft_point"], m["ft_run"], m["seeds"] = j, m[f"{pre}_run"], m[f"{pre}_seeds"]
        for k in list(m):
            if k.startswith(pre + "_") and not k.endswith(("_run", "_seeds")):
                rest = k[len(pre) + 1:]
                m["latent_equiv_err_ft" + rest[len("latent_equiv_err"):] if rest.startswith("latent_equiv_err")
                  else f"ft_{rest}"] = m[k]
        if "base_recon_psnr_db" in m:
            m["ft_psnr_cost_vs_base_db"] = m["base_recon_psnr_db"] - m["ft_recon_psnr_db"]
    for key, part in exact_df.groupby("model", sort=False):
        m[f"{key}_equiv_err_f64"] = float(part["max"].max())
        m[f"{key}_encoder_equiv_err_f64"] = float(part["encoder"].max())
        m[f"{key}_decoder_equiv_err_f64"] = float(part["decoder"].max())
    for key, row in table.iterrows():
        m[f"params_{key}"] = int(row.parameters)
        m[f"train_time_s_{key}"] = float(row.train_time_s)
    m["seed_roundtrip_mse_rot180"] = SEED_ROUNDTRIP_MSE
    for a in ANCHORS:
        m.setdefault(a.metric, None)
    return m


def tradeoff_table(m: Mapping[str, Any]):
    """The trade-off curve's points from :func:`headline_metrics`: one row per sweep point (``kind="sweep"``,
    intervals over seeds), the decoder-only arm (``kind="ftdec"``, intervals over seeds) and per reference
    (base, twin, the seed's rot180 recipe, the group-averaged base);
    ``psnr_db`` = reconstruction PSNR, ``ratio`` = worst round-trip MSE over the twin's reconstruction MSE."""
    import pandas as pd

    def ci(key):
        lo_hi = m.get(f"{key}_ci95")
        return tuple(lo_hi) if lo_hi else (float("nan"), float("nan"))

    rows = []
    for j in range(m.get("tradeoff_points_measured", 0)):
        pre = f"tradeoff_p{j}"
        label = (f"rot {m.get(pre + '_rotation_weight', float('nan')):g}, enc "
                 f"{m.get(pre + '_encoder_weight', float('nan')):g}")
        rows.append({"label": label, "kind": "sweep", "chosen": j == m.get("ft_point"), "seeds": m[f"{pre}_seeds"],
                     "psnr_db": m[f"{pre}_recon_psnr_db"], "psnr_ci": ci(f"{pre}_recon_psnr_db"),
                     "ratio": m[f"{pre}_roundtrip_vs_twin_ratio_max"],
                     "ratio_ci": ci(f"{pre}_roundtrip_vs_twin_ratio_max")})
    if m.get("ftdec_mean_recon_psnr_db") is not None:
        w = m.get("ftdec_rotation_weight")
        rows.append({"label": "decoder only" + (f" (rot {w:g})" if w is not None else ""), "kind": "ftdec",
                     "chosen": False, "seeds": m.get("ftdec_seeds"), "psnr_db": m["ftdec_mean_recon_psnr_db"],
                     "psnr_ci": ci("ftdec_mean_recon_psnr_db"), "ratio": m["ftdec_mean_roundtrip_vs_twin_ratio_max"],
                     "ratio_ci": ci("ftdec_mean_roundtrip_vs_twin_ratio_max")})
    refs = [("base", "base (untouched)", "base_recon_psnr_db", "base_roundtrip_vs_twin_ratio_max"),
            ("twin", "twin (no rotation loss)", "twin_mean_recon_psnr_db", "twin_roundtrip_vs_twin_ratio_max"),
            ("ft180", "seed's recipe (rot180)", "ft180_recon_psnr_db", "ft180_roundtrip_vs_twin_ratio_max"),
            ("gavg", "group-averaged decoder", "gavg_recon_psnr_db", "gavg_roundtrip_vs_twin_ratio_max")]
    for key, label, x, y in refs:
        if m.get(x) is not None and m.get(y) is not None:
            rows.append({"label": label, "kind": key, "chosen": False, "seeds": None, "psnr_db": m[x],
                         "psnr_ci": ci(x), "ratio": m[y], "ratio_ci": ci(y)})
    return pd.DataFrame(rows)


def plot_tradeoff(points, *, target_ratio: float | None = None, ax=None):
    """The trade-off curve: reconstruction PSNR (x) against the worst round trip over the twin's
    reconstruction MSE (y, log scale), sweep points joined with their seed intervals, the decoder-only arm
    and the references as markers.
    ``points``: :func:`tradeoff_table`. Returns the Figure."""
    import math as _math

    from rotcore import plots

    if ax is None:
        fig, ax = plots.plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    sweep = points[points.kind == "sweep"]

    def err(col, ci_col, frame):
        lo = [v - c[0] if not _math.isnan(c[0]) else 0.0 for v, c in zip(frame[col], frame[ci_col])]
        hi = [c[1] - v if not _math.isnan(c[1]) else 0.0 for v, c in zip(frame[col], frame[ci_col])]
        return [lo, hi]

    if len(sweep):
        ax.errorbar(sweep.psnr_db, sweep.ratio, xerr=err("psnr_db", "psnr_ci", sweep),
                    yerr=err("ratio", "ratio_ci", sweep), fmt="o-", color=COLORS[VARIANTS["ft"].short],
                    capsize=3, label="D4 + encoder loss (sweep)")
        for _, r in sweep.iterrows():
            ax.annotate(r.label + (" (chosen)" if r.chosen else ""), (r.psnr_db, r.ratio), fontsize=8,
                        textcoords="offset points", xytext=(5, 5))
    markers = {"base": "s", "twin": "D", "ft180": "^", "gavg": "*", "ftdec": "P"}
    for _, r in points[points.kind != "sweep"].iterrows():
        ax.errorbar([r.psnr_db], [r.ratio], xerr=err("psnr_db", "psnr_ci", points.loc[[_]]),
                    yerr=err("ratio", "ratio_ci", points.loc[[_]]), fmt=markers.get(r.kind, "o"), ms=8,
                    color=COLORS.get(VARIANTS[r.kind].short, "k"), capsize=3, label=r.label)
    if target_ratio is not None:
        ax.axhline(target_ratio, ls="--", color="k", lw=0.8, label="target")
    ax.set_yscale("log")
    ax.set_xlabel("reconstruction PSNR (dB, held-out photos)")
    ax.set_ylabel("worst round-trip MSE / twin's recon MSE")
    ax.set_title("Equivariance against reconstruction")
    ax.legend(fontsize=8)
    return fig


def _threshold(metric: str) -> float:
    return report.anchor(sys.modules[__name__], metric).threshold


def _floor(metric: str) -> float:
    return report.anchor(sys.modules[__name__], metric).floor_threshold


def _frontier_sentences(m: Mapping[str, Any]) -> dict[str, str]:
    """The trade-off curve read from the numbers: which sweep points meet both targets, how the round trip and
    the cost move with the weights, the chosen point, and where the zero-training references sit."""
    ratio_t, cost_t = _threshold("ft_roundtrip_vs_twin_ratio_max"), _threshold("ft_psnr_cost_db")
    n = m.get("tradeoff_points_measured", 0)
    pts = [(j, m[f"tradeoff_p{j}_roundtrip_vs_twin_ratio_max"], m[f"tradeoff_p{j}_psnr_cost_db"],
            m.get(f"tradeoff_p{j}_rotation_weight"), m.get(f"tradeoff_p{j}_encoder_weight")) for j in range(n)]

    def name(p):
        return f"rot {p[3]:g} / enc {p[4]:g}" if p[3] is not None else f"point {p[0]}"

    out: dict[str, str] = {}
    if not pts:
        return {"eqvae_frontier_sentence": "No sweep point was fine-tuned in this run.", "eqvae_gavg_sentence": "",
                "eqvae_selection_sentence": "", "eqvae_ftdec_sentence": _ftdec_sentence(m, [], name)}
    both = [p for p in pts if p[1] <= ratio_t and p[2] <= cost_t]
    parts = [f"`{name(p)}`: {p[1]:.2f}× at {p[2]:.2f} dB" for p in pts]
    ratios = [p[1] for p in pts]
    costs = [p[2] for p in pts]
    monotone = all(b <= a for a, b in zip(ratios, ratios[1:])) and all(b >= a for a, b in zip(costs, costs[1:]))
    shape = ("heavier weights buy a lower round trip at a higher reconstruction cost, a frontier in the order "
             "of the sweep" if monotone else
             "the points do not line up as a simple frontier in the order of the sweep (seed noise or a weight "
             "that helps both)")
    verdict = (f"{len(both)} of {len(pts)} point(s) meet both targets (≤ {ratio_t:g}× and ≤ {cost_t:g} dB)"
               if both else f"no point meets both targets (≤ {ratio_t:g}× and ≤ {cost_t:g} dB) in this run")
    out["eqvae_frontier_sentence"] = (
        f"Worst round trip over the twin's reconstruction, and reconstruction cost against the twin, per sweep "
        f"point (mean over seeds, test photos): {'; '.join(parts)}. Read along the sweep, {shape}; {verdict}.")
    j = m.get("ft_point")
    chosen = next((p for p in pts if p[0] == j), None)
    out["eqvae_selection_sentence"] = (
        "" if chosen is None else
        f"The headline point, `{name(chosen)}`, was chosen on the validation photos (training split, held out "
        f"of training) before the test photos were scored: the lowest validation round trip among the points "
        f"within {cost_t:g} dB of their twins, or the cheapest point when none is.")
    refs = []
    for label, x_key, y_key in (
            ("the untouched base", "base_recon_psnr_db", "base_roundtrip_vs_twin_ratio_max"),
            ("the twins", "twin_mean_recon_psnr_db", "twin_roundtrip_vs_twin_ratio_max"),
            ("the seed's recipe", "ft180_recon_psnr_db", "ft180_roundtrip_vs_twin_ratio_max"),
            ("the decoder-only arm", "ftdec_mean_recon_psnr_db", "ftdec_mean_roundtrip_vs_twin_ratio_max"),
            ("the group-averaged decoder", "gavg_recon_psnr_db", "gavg_roundtrip_vs_twin_ratio_max")):
        y, x = m.get(y_key), m.get(x_key)
        if x is not None and y is not None:
            refs.append(f"{label} {y:.2f}× at {x:.2f} dB")
    g_ratio, g_psnr, b_psnr = (m.get("gavg_roundtrip_ratio_max"), m.get("gavg_recon_psnr_db"),
                               m.get("base_recon_psnr_db"))
    g_ssim, b_ssim = m.get("gavg_ssim"), m.get("base_ssim")
    gavg = ""
    if g_ratio is not None and b_psnr is not None:
        g_y = m["gavg_roundtrip_vs_twin_ratio_max"]
        beaten = [name(p) for p in pts if m[f"tradeoff_p{p[0]}_recon_psnr_db"] <= g_psnr and p[1] >= g_y]
        gavg = (f" Averaging the base's eight decodes makes its decoder exactly equivariant with no training (its "
                f"round trip is {g_ratio:.7f}× its own reconstruction) and reconstructs at {g_psnr:.2f} dB, "
                + (f"{b_psnr - g_psnr:.2f} dB below the base" if g_psnr <= b_psnr else
                   f"{g_psnr - b_psnr:.2f} dB above the base")
                + (f", SSIM {g_ssim:.3f} against the base's {b_ssim:.3f}" if g_ssim is not None and b_ssim is not None
                   else "")
                + (". It is at least as good on both axes as " + ", ".join(f"`{b}`" for b in beaten)
                   + ", so fine-tuning earns its place only where it beats this reference." if beaten else
                   ". No sweep point is beaten by it on both axes."))
    out["eqvae_gavg_sentence"] = ("On the same axes: " + "; ".join(refs) + "." if refs else "") + gavg
    out["eqvae_ftdec_sentence"] = _ftdec_sentence(m, pts, name)
    return out


def _ftdec_sentence(m: Mapping[str, Any], pts: Sequence[tuple], name) -> str:
    """The decoder-only arm beside the all-parameter sweep point of the same rotation weight (which also has
    the encoder term, so the difference mixes freezing the encoder with that term), and the check that its
    latent is the base's."""
    r, c = m.get("ftdec_mean_roundtrip_vs_twin_ratio_max"), m.get("ftdec_mean_psnr_cost_db")
    if r is None or c is None:
        return ""
    w, n = m.get("ftdec_rotation_weight"), m.get("ftdec_seeds", "?")
    r_ci, c_ci = m.get("ftdec_mean_roundtrip_vs_twin_ratio_max_ci95"), m.get("ftdec_mean_psnr_cost_db_ci95")

    def with_ci_txt(v, ci, fmt, unit):
        return f"{fmt.format(v)}{unit}" + (f" (95 % CI {fmt.format(ci[0])}–{fmt.format(ci[1])}{unit})" if ci else "")

    text = ("**Decoder only.** With the encoder frozen and the D4 round trip"
            + (f" at rotation weight {w:g}" if w is not None else "") + " (no encoder term), over "
            f"{n} seeds the worst round trip is {with_ci_txt(r, r_ci, '{:.2f}', '×')} the twin's reconstruction "
            f"MSE, at a reconstruction cost of {with_ci_txt(c, c_ci, '{:.2f}', ' dB')} against the twins.")
    same = [p for p in pts if w is not None and p[3] == w]
    if same:
        p = same[-1]
        pre = f"tradeoff_p{p[0]}"
        p_r_ci, p_c_ci = m.get(f"{pre}_roundtrip_vs_twin_ratio_max_ci95"), m.get(f"{pre}_psnr_cost_db_ci95")

        def overlap(a, b):
            return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]

        def cmp(mine, theirs, a, b, lower, higher, what):
            if mine == theirs:
                return f"the same {what}"
            return f"{lower if mine < theirs else higher} {what}" + (
                " (the seed intervals overlap)" if overlap(a, b) else
                "" if a is None or b is None else " (the seed intervals do not overlap)")

        text += (f" The all-parameter sweep point of the same rotation weight, `{name(p)}`, reaches {p[1]:.2f}× at "
                 f"{p[2]:.2f} dB: the decoder-only arm has "
                 + cmp(r, p[1], r_ci, p_r_ci, "a lower", "a higher", "round trip") + " and "
                 + cmp(c, p[2], c_ci, p_c_ci, "a smaller", "a larger", "reconstruction cost") + "."
                 + (f" That point also carries the encoder term (relative weight {p[4]:g}), so the difference mixes "
                    "freezing the encoder with the encoder term; this run does not separate the two." if p[4] else
                    " That point has no encoder term, so the difference is that of freezing the encoder."))
    change, base = m.get("ftdec_latent_equiv_err_change"), m.get("latent_equiv_err_base")
    lat = m.get("latent_equiv_err_ftdec_mean")
    if change is not None and lat is not None and base is not None:
        bound = _threshold("ftdec_latent_equiv_err_change")
        text += (f" Its latent equivariance error is the base's, {lat:.3f} against {base:.3f} (largest change over "
                 f"seeds {change:.1e}): a check that the encoder stayed frozen, not a result." if change <= bound else
                 f" **Its latent equivariance error differs from the base's** ({lat:.3f} against {base:.3f}, largest "
                 f"change over seeds {change:.1e} > {bound:g}): its encoder should be frozen, so this is a bug.")
    return text


def discussion(m: Mapping[str, Any]) -> dict[str, str]:
    """Sentences for the notebook's discussion, written from the run's metrics (so no claim about a result is
    typed into the page; targets come from ``ANCHORS``). Keys are glue names; every value is Markdown."""
    out: dict[str, str] = {}
    target = _threshold("ft_roundtrip_vs_twin_ratio_max")

    def ratio(key: str) -> str:
        return f"{m[key + '_roundtrip_ratio_max']:.2f}× its reconstruction MSE (worst element: " \
               f"`{m[key + '_roundtrip_ratio_worst_element']}`)"

    r = m["base_roundtrip_ratio_max"]
    kind = ("it scrambles turned latents, as the seed found for SD's VAE" if r > 1.5 else
            "turned latents cost the base noticeably more than upright ones" if r > target else
            "on this run the base already decodes turned latents about as well as upright ones, so there is "
            "little scrambling to repair")
    out["eqvae_base_sentence"] = f"Its round trip is at worst {ratio('base')}: {kind}."
    if m.get("scratch_roundtrip_ratio_max") is not None:
        sr = m["scratch_roundtrip_ratio_max"]
        out["eqvae_contrast_sentence"] = (
            f"The contrast, an SD-style `AutoencoderKL` trained from scratch on these photos, is at worst "
            f"{sr:.2f}× its own reconstruction MSE before any rotation loss"
            + (": turned latents cost it little more than upright ones, unlike the pretrained TAEF2. That ratio is "
               f"to its own reconstruction, which at {m['scratch_recon_psnr_db']:.1f} dB is far worse than the "
               "twin's, and a worse reconstruction lowers it: against the twin's reconstruction MSE its worst round "
               f"trip is {m['scratch_roundtrip_vs_twin_ratio_max']:.1f}×. Why it scrambles less is not measured here."
               if sr < r / 2 and m.get("scratch_roundtrip_vs_twin_ratio_max") is not None
               and m.get("scratch_recon_psnr_db") is not None else "."))
    else:
        out["eqvae_contrast_sentence"] = ""
    t = m.get("twin_roundtrip_vs_twin_ratio_max")
    t_ci = None
    if t is None:
        t = m["twin_roundtrip_ratio_max"]
        twin_txt = ratio("twin")
    else:
        t_ci = m.get("twin_roundtrip_vs_twin_ratio_max_ci95")
        twin_txt = (f"{t:.2f}×{f' (95 % CI {t_ci[0]:.2f}–{t_ci[1]:.2f}×)' if t_ci else ''} its reconstruction MSE (each twin's "
                    f"worst element, mean over {m.get('twin_seeds', '?')} seeds)")
    # the verb from the comparison with the base's ratio: the seed interval when there is one, else ±5 %
    lo, hi = t_ci if t_ci else (t / 1.05, t * 1.05)
    moved = (f"raises that from the base's {r:.2f}× to {twin_txt}" if lo > r else
             f"lowers that from the base's {r:.2f}× to {twin_txt}" if hi < r else
             f"does not clearly move that (the base's {r:.2f}×; the twins' {twin_txt})")
    out["eqvae_twin_sentence"] = (
        f"Fine-tuning without the rotation loss {moved}"
        + (", so fine-tuning alone does not teach the round trip." if t > target else "."))

    # per element, the same seed means as the headline ratio (not the first seed's run)
    worst = {g: m[f"ft_roundtrip_vs_twin_ratio_{g}"] for g in D4[1:] if f"ft_roundtrip_vs_twin_ratio_{g}" in m}
    missed = [g for g, v in worst.items() if v > target]
    out["eqvae_ratio_missed"] = ("every element meets it" if not missed else
                                 "**the target is missed** for " + ", ".join(f"`{g}` ({worst[g]:.3f})" for g in missed))
    ci = m.get("ft_psnr_cost_db_ci95")
    # the sweep moves the rotation and encoder weights together: the cost is theirs jointly
    enc_w = m.get("ft_encoder_weight")
    losses = ("the added losses cost" if enc_w is None else "the rotation and encoder losses together cost" if enc_w
              else "the rotation loss costs")
    out["eqvae_gap_sign"] = (
        "" if ci is None else
        f"The interval lies above zero: {losses} reconstruction on these photos." if ci[0] > 0 else
        "The interval lies below zero: on these photos the D4 fine-tune reconstructs better than its twin."
        if ci[1] < 0 else "The interval includes zero: no reconstruction cost is resolved on these photos.")

    ft, base = m["latent_equiv_err_ft"], m["latent_equiv_err_base"]
    tw_mean = m.get("latent_equiv_err_twin_mean")
    tw = m["latent_equiv_err_twin"] if tw_mean is None else tw_mean
    enc_w = m.get("ft_encoder_weight")
    # the sweep's latent errors: the chosen point and the strongest encoder weight need not agree in direction
    n_pts = m.get("tradeoff_points_measured", 0)
    sweep_lat = [(j, m.get(f"tradeoff_p{j}_latent_equiv_err"), m.get(f"tradeoff_p{j}_rotation_weight"),
                  m.get(f"tradeoff_p{j}_encoder_weight")) for j in range(n_pts)]
    sweep_lat = [p for p in sweep_lat if p[1] is not None]

    def pname(p):
        return f"`rot {p[2]:g} / enc {p[3]:g}`" if p[2] is not None and p[3] is not None else f"point {p[0]}"

    strongest = max(sweep_lat, key=lambda p: (p[3] or 0.0, p[2] or 0.0, p[0])) if sweep_lat else None
    if strongest is not None and strongest[0] == m.get("ft_point"):
        strongest = None  # the chosen point is the strongest: nothing more to say
    across = ("" if len(sweep_lat) < 2 else
              " Across the sweep (means over seeds): " + ", ".join(f"{pname(p)} {p[1]:.3f}" for p in sweep_lat) + ".")
    out["eqvae_latent_sentence"] = (
        f"The chosen fine-tune{f' (relative encoder weight {enc_w:g})' if enc_w is not None else ''} "
        f"{'lowers' if ft < tw else 'does not lower'} it relative to "
        + (f"its twins ({ft:.3f} against {tw:.3f}, both means over seeds)" if tw_mean is not None else
           f"the twin ({ft:.3f}, mean over seeds, against the first seed's twin {tw:.3f})")
        + f", and from the untouched base ({base:.3f}) it "
        + ("lowers it." if ft < base else
           "raises it: fine-tuning moves the latent further from equivariance than the base had it, and the "
           "added losses hold back only part of that." if ft < tw else "raises it.")
        + across)
    lat_t = _threshold("latent_equiv_err_ft")

    def direction(value):
        return (f"the same way (down from its base, {base:.3f} → {value:.3f}"
                + (f", still above the {lat_t:g} target)" if value > lat_t else ")") if value < base else
                f"the other way (up from its base, {base:.3f} → {value:.3f})")

    out["eqvae_latent_direction"] = (
        ("at the chosen point " if strongest is not None else "") + f"ours goes {direction(ft)}"
        + ("" if strongest is None else
           f"; at the sweep's strongest encoder weight, {pname(strongest)}, it goes {direction(strongest[1])}"))
    seed_mse, cost = m["ft180_roundtrip_mse_rot180"], m.get("ft180_recon_psnr_gap_db")
    limit = _floor("ft180_roundtrip_mse_rot180")
    cost_txt = "" if cost is None else (
        f", reconstructing {-cost:.2f} dB better than its twin" if cost < 0 else
        f", at a reconstruction cost of {cost:.2f} dB against its twin"
        + (f" (within our {limit:g} dB)" if cost <= limit else
           f" (more than our {limit:g} dB, so the seed's \"without forgetting 0° reconstruction\" does not hold "
           "here)"))
    out["eqvae_seed_sentence"] = (
        f"With the seed's recipe (rot180 loss only) the rot180 "
        f"round-trip MSE is {seed_mse:.4f} on [0, 1] pixels, {4 * seed_mse:.4f} on SD's [-1, 1] scale"
        f"{cost_txt}. The seed reported {SEED_ROUNDTRIP_MSE} without stating the scale, so neither reading is "
        f"known to be the comparable one. At the chosen sweep point it is {m['ft_roundtrip_mse_rot180']:.4f} "
        f"([0, 1], mean over seeds).")
    # the target has two parts (the seed's MSE, at ≤ `limit` dB cost): missing either misses it
    mse_t = _threshold("ft180_roundtrip_mse_rot180")
    if cost is None:
        out["eqvae_ft180_verdict"] = report.anchor(sys.modules[__name__], "ft180_roundtrip_mse_rot180").verdict_for(m)
    else:
        mse_ok, cost_ok = seed_mse <= mse_t, cost <= limit
        mse_txt = f"{seed_mse:.4f} {'≤' if mse_ok else '>'} {mse_t:g} on [0, 1] pixels"
        cost_part = f"a reconstruction cost of {cost:.2f} dB {'≤' if cost_ok else '>'} {limit:g} dB"
        out["eqvae_ft180_verdict"] = (
            f"meets the target ({mse_txt}, at {cost_part})" if mse_ok and cost_ok else
            f"**misses the target on both parts** ({mse_txt}, at {cost_part})" if not (mse_ok or cost_ok) else
            f"**misses the target** on its MSE ({mse_txt}; {cost_part} is within the target)" if cost_ok else
            f"**misses the target** on its cost ({mse_txt}, but at {cost_part})")
    # the quarter turns: the rot180-only model against the sweep point of the same rotation weight, if any
    r90_180 = m.get("ft180_roundtrip_vs_twin_ratio_r90")
    w180 = m.get("ft180_rotation_weight")
    same = [j for j in range(n_pts) if w180 is not None and m.get(f"tradeoff_p{j}_rotation_weight") == w180
            and m.get(f"tradeoff_p{j}_roundtrip_vs_twin_ratio_r90") is not None]
    j90 = same[-1] if same else m.get("ft_point")
    r90_d4 = m.get(f"tradeoff_p{j90}_roundtrip_vs_twin_ratio_r90") if j90 is not None else None
    if r90_d4 is None and not same:
        r90_d4 = m.get("ft_roundtrip_vs_twin_ratio_r90")
    if r90_180 is None or r90_d4 is None:
        out["eqvae_r90_sentence"] = ""
    else:
        rw, ew = m.get(f"tradeoff_p{j90}_rotation_weight"), m.get(f"tradeoff_p{j90}_encoder_weight")
        d4_name = ("the D4 sweep point of the same rotation weight" if same else "the chosen D4 point") + (
            f" (`rot {rw:g} / enc {ew:g}`)" if rw is not None and ew is not None else "")
        w_txt = f" at rotation weight {w180:g}" if w180 is not None else ""
        taught = (f"The rot180 loss alone{w_txt} does not teach the quarter turns as well as {d4_name}"
                  if r90_180 > max(target, 1.05 * r90_d4) else
                  f"On this run the rot180 loss alone{w_txt} gives a lower quarter-turn round trip than {d4_name}"
                  if r90_180 < 0.95 * r90_d4 else
                  f"On this run the rot180 loss alone{w_txt} does about as well on the quarter turns as {d4_name}")
        enc_note = (f" That D4 point also has the encoder term (relative weight {ew:g}), so the comparison is not "
                    "of the rotation losses alone." if ew else "")
        if not same and w180 is not None and rw is not None and rw != w180:
            enc_note += " The rotation weights differ, so this is not a like-for-like comparison."
        failed = cost is not None and cost > limit
        out["eqvae_r90_sentence"] = (
            f"{taught}: against the twin's reconstruction MSE, the rot180-only model's `r90` round trip is "
            f"{r90_180:.2f}× (one seed), the D4 model's {r90_d4:.2f}× (mean over "
            f"{m.get(f'tradeoff_p{j90}_seeds', m.get('seeds', '?'))} seeds).{enc_note}"
            + (f" The rot180-only model reconstructs {cost:.2f} dB worse than its twin, beyond our {limit:g} dB, "
               "so it is not a working alternative whatever its round trip." if failed else ""))
    out.update(_frontier_sentences(m))
    fe, be = m["ft_equiv_err_f64"], m["base_equiv_err_f64"]
    out["eqvae_ft_exact_sentence"] = (
        f"The D4 fine-tune moves the base's float64 equivariance error from {be:.2f} to {fe:.2f}"
        + (": far from exact. A hypothesis this run does not test: the losses see only photo crops, for the "
           "profile's steps, and reward the round trip on them, which need not make the function itself symmetric."
           if fe > 100 * _threshold("equi_equiv_err_f64") else "."))
    exported = m.get("export_roundtrip_exact")
    out["eqvae_export"] = ("was not checked in this run" if exported is None else
                           "with bit-identical weights" if exported else "**with different weights (a bug)**")
    return out


# ---------------------------------------------------------------------------------------------------------
# Cost


def _step_flops(model: torch.nn.Module, crop: int, cfg: EqVAEStudyConfig, elements: Sequence[str],
                **loss_kw) -> float:
    """FLOPs of one training step (forward + backward) on one ``crop``-px image, counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, crop, crop, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        # the rotation term costs the same for every element: count it with one (no data-dependent indexing)
        loss, _ = vae_loss(cfg, tuple(elements)[:1], **loss_kw)(model, (x,))
        loss.backward()
    return float(counter.get_total_flops())


TRAIN_PHOTOS_IN_MANIFEST = 390  # used only when the photo folder is absent (the shipped manifest's train split)


def train_flops(cfg: EqVAEStudyConfig) -> float:
    """Training FLOPs of ``cfg``: the SD-style pretraining (as the base or the contrast), every fine-tune
    (:func:`finetune_runs`: twins, rot180, sweep points and the decoder-only arm, whose frozen encoder needs no
    backward) and the equivariant VAE, as FLOPs per image and step (``FlopCounterMode`` on the
    meta device: no compute, about a second) times the images each fit sees. Optimiser steps, monitoring and
    evaluation are not counted. A hub base is costed as the SD-style ``vae`` config."""
    try:
        n_photos = sum(r.split == "train" for r in photo_records())
    except MissingDataError:
        n_photos = TRAIN_PHOTOS_IN_MANIFEST
    if n_photos > cfg.select_photos:  # the validation photos are held out of training (load_data)
        n_photos -= cfg.select_photos
    if cfg.train_photos is not None:
        n_photos = min(n_photos, cfg.train_photos)
    per_epoch = n_photos * cfg.passes_per_epoch
    with torch.device("meta"):
        sd = build_autoencoder_kl(cfg.vae)
        tuned = TinyAutoencoder() if cfg.base == "taef2" else sd
    eq = build_equivariant_vae(cfg.equivariant).to("meta")  # its D4 tables are built with real tensors
    plain, rotated = _step_flops(tuned, cfg.crop_size, cfg, ()), _step_flops(tuned, cfg.crop_size, cfg, ("r180",))
    both = _step_flops(tuned, cfg.crop_size, cfg, ("r180",), encoder_weight=1.0)
    # the decoder-only arm: no backward through the frozen encoder
    dec_only = _step_flops(freeze_encoder(copy.deepcopy(tuned)), cfg.crop_size, cfg, ("r180",))

    def per_step(key, point):
        if key == "twin":
            return plain
        if key == "ftdec":
            return dec_only
        if key == "ft" and cfg.sweep_encoder_weights[point]:
            return both if cfg.sweep_rotation_weights[point] else both - rotated + plain
        return rotated

    total = sum(per_epoch * cfg.finetune_fit.epochs * per_step(k, j) for k, _, j in finetune_runs(cfg))
    if cfg.base == "pretrain" or cfg.contrast:
        total += per_epoch * cfg.pretrain_fit.epochs * _step_flops(sd, cfg.crop_size, cfg, ())
    total += per_epoch * cfg.equivariant_fit.epochs * _step_flops(eq, cfg.crop_size, cfg, ())
    return total
