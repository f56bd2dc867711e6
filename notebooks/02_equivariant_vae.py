# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # An equivariant VAE: rotating the latent rotates the image
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rotbook/rotbook/blob/main/notebooks/02_equivariant_vae.ipynb)
#
# Stable Diffusion works in the latent space of a VAE (diffusers' `AutoencoderKL`): 4 channels at 1/8 of the
# image's resolution. Turn an image by 180° and its latent does *not* simply turn by 180°; worse, turn the
# latent and decode it, and a standard VAE paints a scrambled image. The seed project fine-tuned SD 1.5's VAE
# with two losses, reconstruction and `MSE(decode(rot180(encode(x))), rot180(x))`, and reported a rot180
# round-trip MSE of about 0.0023 "without forgetting 0° reconstruction". EQ-VAE (Kouzelis et al., ICML 2025)
# fine-tunes SD-VAE with the same kind of image-space round-trip loss (decode a transformed latent, compare
# with the transformed image) for 90° rotations and scalings.
#
# This page does the same for **all eight elements of D4** (quarter turns and flips), starting from a real
# pretrained latent autoencoder, **TAEF2** (the tiny autoencoder for FLUX.2's latent space, MIT licence). It
# adds EQ-VAE's encoder-side term `MSE(E(g·x), g·E(x))` with a weight relative to the reconstruction loss,
# sweeps the weights of both terms, and draws the **trade-off curve**: reconstruction against the worst round
# trip, each point with an interval over seeds, measured against twins fine-tuned identically without those
# losses. On the same axes: the untouched base, the twins, the seed's 180° recipe, a decoder-only fine-tune
# (encoder frozen), and a zero-training reference that is exactly equivariant (the base's decoder averaged over
# D4). It then builds a VAE with SD's
# block plan that is **exactly** D4-equivariant by construction, and shows the one line of SD's architecture
# that forbids exactness.
#
# **Running it yourself.** `profile = "cpu"` reproduces this page on 2 CPU cores within the
# {glue:md}`cpu_budget_min` minutes its profile is sized for (this page's run took {glue:md}`runtime_min` min).
# On a Colab GPU runtime
# choose `profile = "gpu"` (128-px crops, 6 epochs per fine-tune, the contrast at SD's widths; not yet timed
# on a GPU).
#
# Notation: `E` encodes to the latent (an `AutoencoderKL`'s posterior mean), `D` decodes, `g·` applies a D4 element to the last two axes
# (`rotcore.rotate.apply_d4`: an optional left-right flip, then `k` quarter turns counter-clockwise; names
# `e, r90, r180, r270, f, r90f, r180f, r270f`). The round trip of the seed is `D(g·E(x))` against `g·x`.

# %% tags=["remove-cell"]
# Colab only: install rotcore and its stack (a no-op everywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "rotcore @ git+https://github.com/rotbook/rotbook"], check=True)
    # Colab has no offline data folder: rebuild the photos from their GitHub sources into ./data/photos (the
    # default ROTBOOK_DATA there); TAEF2's weights download by themselves on first use.
    subprocess.run([sys.executable, "-m", "rotcore.runner", "fetch-photos", "--dest", "data/photos"], check=False)

# %% tags=["parameters"]
profile = "smoke"  # "smoke": CI, about a minute; "cpu": the published numbers, ≤ 25 min on 2 cores; "gpu": one GPU
overrides = {}  # e.g. {"finetune_fit.epochs": 6}, or {"base": "stable-diffusion-v1-5/stable-diffusion-v1-5", "base_subfolder": "vae"}

# %%
import dataclasses

import pandas as pd
from IPython.display import HTML, Markdown, display

from rotcore import plots, report
from rotcore.models.eqvae import build_equivariant_vae
from rotcore.results import glue_text
from rotcore.rotate import D4
from rotcore.studies import eqvae as study
from rotcore.train import seed_everything, state_dicts_equal

run = report.start(study, profile, overrides)  # raises on an unknown profile or key, before any work
cfg, device = run.cfg, run.device
glue_text("cpu_budget_min", f"{report.study_info(study).cpu_budget_min:g}")

# %% [markdown]
# ## The base: a real pretrained latent autoencoder
#
# Stable Diffusion's VAE cannot be downloaded here, so the base is **TAEF2**, a tiny pretrained latent
# autoencoder (the TAESD family, for FLUX.2's latent space: 8× downsampling to 32 channels), reimplemented in
# `rotcore.models.taesd` from its state dicts' layout and loaded with its published weights from
# `$ROTBOOK_DATA/taesd`. It never saw these photos. With network access, `overrides = {"base": "<hub id or
# folder>", "base_subfolder": "vae"}` fine-tunes an `AutoencoderKL` (e.g. SD's) with the same code instead.
#
# As a contrast, an `AutoencoderKL` with SD's structure is trained **from scratch** on the training photos and
# measured untouched. Training crops are random crops, never flipped: a left-right flip is an element of D4,
# so flip augmentation would teach every model, the twins included, part of what is measured. Nothing is
# chosen on the held-out test photos (split by photo): each model trains for its configured epochs. A few
# photos of the training split are held out of training as a **validation** set: their tiles draw the
# training curves and choose the headline point of the sweep. **The base on this page:**

# %%
data = study.load_data(cfg, device)
base_text = study.base_description(cfg, data)
glue_text("eqvae_base", base_text)
display(Markdown(f"{base_text}. Training photos: {data.n_train_photos}; validation photos: {data.n_select_photos}; "
                 f"held-out test photos: {data.n_val_photos} ({len(data.val)} tiles of {cfg.crop_size} px)."))
base = study.train_base(cfg, data, device=device)
contrast = study.train_contrast(cfg, data, device=device)

# %% [markdown]
# ## Fine-tuning: the twin, the seed's rot180 loss, and a sweep of D4 + encoder losses
#
# Copies of the base are fine-tuned with the same optimiser, steps and batches (the crops come from the
# loader's own generator, so the variants of one seed see the same images), with a short linear warm-up and a
# per-step cosine decay (measured before this page, not on it: a 10-step warm-up with a per-step cosine gained
# 2.4 to 2.8 dB of reconstruction on both arms at the same step count, against no warm-up and a cosine stepped
# per epoch):
#
# * **twin**: reconstruction only: what fine-tuning alone does;
# * **seed's recipe**: reconstruction + `MSE(D(r180·z), r180·x)`;
# * **sweep point** `(a, b)`: reconstruction + `a·MSE(D(g·z), g·x)` + `b·s·MSE(E(g·x), g·E(x))` with `g` drawn
#   from all eight elements per image and step. The encoder term is far larger than the reconstruction loss
#   at the start, so it is scaled by `s`, the base's reconstruction MSE over its encoder MSE on training
#   crops: `b = 1` starts as heavy as reconstruction;
# * **decoder only**: the encoder frozen (so the latent stays the base's), reconstruction +
#   `a·MSE(D(g·z), g·x)` with `a` the sweep's last (strongest) rotation weight and no encoder term.
#
# The twin, every sweep point and the decoder-only arm are repeated for every seed of the config (the seed's
# recipe runs once), so each point of the curve gets an interval over seeds. Images are scored in [0, 1].

# %%
scale = study.encoder_scale(base.model, data, cfg)
finetuned = [study.finetune(k, base, cfg, data, seed=s, point=j, encoder_scale_value=scale, device=device)
             for k, s, j in study.finetune_runs(cfg)]
print(f"encoder-term scale s = {scale:.4g}")

# %% [markdown]
# **The headline point is chosen on the validation photos**, never on the test photos: among the sweep
# points whose reconstruction cost against their twins (paired by seed) is within the target, the one with the
# lowest worst round trip over its twin's reconstruction; the cheapest point if none is within it.

# %%
point, selection = study.select_point(finetuned, cfg)
chosen_name = study.run_name("ft", cfg.seeds[0], cfg, point)
first = {t.key: t for t in finetuned if study.is_first_seed(t.name) and t.key != "ft"}
first["ft"] = next(t for t in finetuned if t.name == chosen_name)  # the first seed's runs, shown in the figures
selection.round(3)

# %% [markdown]
# ## Exactly equivariant by construction
#
# SD's encoder downsamples with `F.pad(x, (0, 1, 0, 1))` (right and bottom only) and a stride-2 3×3
# convolution: on an even grid it samples pixel centres at even positions, which a 180° turn maps to odd ones,
# so no choice of weights makes it commute with rot90 or rot180. `EquivariantAutoencoderKL` keeps SD's plan
# (ResNet blocks, GroupNorm, SiLU, mid-block attention, 4 latent channels, 8× downsampling) and changes two
# things: **2×2 average pooling** for downsampling (2×2 blocks map to 2×2 blocks under D4), and **D4 weight
# sharing** (every hidden feature is a regular field of D4; each kernel is stored once and used in its eight
# transformed copies; GroupNorm groups hold whole fields). Latents and images are plain channels, so
# `E(g·x) = g·E(x)` and `D(g·z) = g·D(z)` hold up to rounding. It is trained from scratch with
# reconstruction only: a rotation loss would be redundant.

# %%
equi = study.train_equivariant(cfg, data, device=device)
gavg = study.group_averaged(base)  # the zero-training reference: the base's decoder averaged over D4
trained = [base, *finetuned, gavg, equi] + ([contrast] if contrast is not None else [])
shown_models = [base, *first.values(), gavg, equi] + ([contrast] if contrast is not None else [])
table = study.model_table(trained)
table

# %% [markdown]
# The check, in float64 on a few held-out tiles: the largest change of the encoder's latent and of the
# decoder's raw output when the input turns, for every element of D4. The group-averaged base (`gavg`) is
# exact in its decoder only (its encoder is the base's); it is checked for the two generators of D4, `r90`
# and `f` (a map that commutes with both commutes with every element). The last row is the
# equivariant model with SD's asymmetric downsampling put back (untrained): padding alone breaks it, except
# for `r90f`, the transpose, which maps "right and bottom" onto "bottom and right".

# %%
seed_everything(0)
asym = build_equivariant_vae(dataclasses.replace(cfg.equivariant, downsample="asymmetric")).to(device)
exact_df = study.exactness({"base": base.model, "ft": first["ft"].model, "equi": equi.model, "equi_asym": asym},
                           data.val[: cfg.exactness_images])
# the group-averaged base costs 8 decodes per decode: checked on one tile for r90 and f, which generate D4
exact_df = pd.concat([exact_df, study.exactness({"gavg": gavg.model}, data.val[:1], ("r90", "f"))],
                     ignore_index=True)
exact_df.pivot(index="model", columns="element", values="max")[list(D4)].style.format("{:.1e}")

# %% [markdown]
# ## Measurements on held-out photos
#
# For every model and every `g`: plain reconstruction `D(E(x))` vs `x` (PSNR and SSIM), the round trip
# `D(g·E(x))` vs `g·x`, and the latent's own equivariance `‖E(g·x) − g·E(x)‖ / ‖E(x)‖`. The sums are kept per
# tile, so single-run numbers get 95 % intervals from a bootstrap over held-out photos (all tiles of a photo
# drawn together); numbers over seeds get Student-t intervals. Round-trip PSNR by element (first seed):

# %%
stats = study.image_stats(trained, data.val, cfg)
eval_df = study.evaluate(stats, data.val[0].numel())
cis = study.headline_cis(stats, data.val_names, ft_name=chosen_name)
shown_df = eval_df[eval_df.model.isin([t.name for t in shown_models])]
order = list(dict.fromkeys(shown_df.label))
summary = shown_df.pivot(index="label", columns="element", values="roundtrip_psnr_db").loc[order, list(D4)]
summary.insert(0, "recon", shown_df.groupby("label").recon_psnr_db.first())
summary.insert(1, "recon SSIM", shown_df.groupby("label").ssim.first())
summary.round(3)

# %% [markdown]
# Every seed of the twin, of every sweep point and of the decoder-only arm: plain reconstruction, and the worst
# round trip over the seven non-identity elements relative to it.

# %%
per_run = eval_df[eval_df.element != "e"].groupby("model", sort=False).agg(
    variant=("variant", "first"), recon_psnr_db=("recon_psnr_db", "first"), recon_ssim=("ssim", "first"),
    worst_roundtrip_ratio=("roundtrip_ratio", "max"), latent_equiv_err=("latent_equiv_err", "mean"))
per_run[per_run.variant.isin(["twin", "ft", "ftdec"])].round(4)

# %%
fig = plots.plot_grouped_bars(shown_df, x="element", hue="label", y="roundtrip_psnr_db", colors=study.COLORS,
                              ylabel="round-trip PSNR (dB)", title="D(g·E(x)) vs g·x on held-out photos")

# %% [markdown]
# The same numbers against a fixed reference, the first seed's twin's reconstruction MSE: how much larger the
# round-trip MSE is, in percent (a model that reconstructs worse cannot look better by it). The dashed line is
# the target (from the study's anchors), for every `g`.

# %%
twin_mse = shown_df.loc[shown_df.model == "twin", "recon_mse"].iloc[0]
extra = shown_df.assign(extra_pct=100 * (shown_df.roundtrip_mse / twin_mse - 1))
target_pct = 100 * (report.anchor(study, "ft_roundtrip_vs_twin_ratio_max").threshold - 1)
fig = plots.plot_grouped_bars(extra, x="element", hue="label", y="extra_pct", hline=target_pct, hline_label="target",
                              colors=study.COLORS, ylabel="round-trip MSE above the twin's recon MSE (%)",
                              title="Cost of decoding a transformed latent")

# %% [markdown]
# ### The trade-off curve
#
# Every sweep point (mean over seeds, Student-t 95 % intervals on both axes), the decoder-only arm (its own
# marker, also over seeds) and the references on one pair of axes: reconstruction PSNR against the worst round trip over the twin's reconstruction MSE (1 = a turned
# latent decodes as well as the control reconstructs; the dashed line is the target). Up and left is worse.

# %%
metrics = study.headline_metrics(eval_df, exact_df, table, base_source=cfg.base, point=point,
                                 sweep=list(zip(cfg.sweep_rotation_weights, cfg.sweep_encoder_weights)),
                                 rotation_weight=cfg.rotation_weight,
                                 dec_rotation_weight=cfg.sweep_rotation_weights[-1] if cfg.decoder_only else None)
metrics.update(cis)  # the same point estimates, now with their photo-bootstrap intervals
curve = study.tradeoff_table(metrics)
fig = study.plot_tradeoff(curve, target_ratio=report.anchor(study, "ft_roundtrip_vs_twin_ratio_max").threshold)
curve.round(3)

# %% [markdown]
# ### Scrambled vs correct
#
# The seed's picture: encode, turn the latent, decode, and compare with the turned image (top row). A decoder
# that never learned the round trip reads a turned latent as if it were upright content; one that did paints
# the turned image.

# %%
shown = data.val[:: max(1, len(data.val) // cfg.figure_photos)][: cfg.figure_photos]
images, row_labels, titles = study.scrambled_vs_correct(shown_models, shown)
fig = plots.image_grid(images, nrow=len(row_labels), row_labels=row_labels, titles=titles, scale=1.3)

# %% [markdown]
# All eight elements for one held-out tile (left: the target `g·x`; then each model's `D(g·E(x))`). The
# slider runs without a kernel.

# %%
frames = study.latent_sweep(shown_models, data.val[0])
display(HTML(plots.animation_html(frames, titles=[f"g = {g}: target, " + ", ".join(t.key for t in shown_models)
                                                  for g in D4], interval_ms=700, scale=1.6)))

# %% [markdown]
# Is the *latent* equivariant too? The round-trip loss asks the decoder to handle turned latents, and the
# encoder only through the shared `z`; on its own it says nothing directly about `E(g·x)`, which is EQ-VAE's
# actual claim. The sweep's encoder term asks for exactly that (with relative weight `b`); the seed's recipe
# has no such term, and the decoder-only arm keeps the base's encoder, so its latent is the base's. Relative
# latent error per element, measured on the encoder side (0 means equivariant):

# %%
fig = plots.plot_grouped_bars(shown_df[shown_df.element != "e"], x="element", hue="label", y="latent_equiv_err",
                              logy=True, ylabel="‖E(g·x) − g·E(x)‖ / ‖E(x)‖", title="Latent equivariance",
                              colors=study.COLORS)

# %% [markdown]
# Training curves (validation tiles, one point per epoch; the round trip is averaged over `r90`, `r180` and
# `f`; first seed, the chosen sweep point). The fine-tunes start where the base's pretraining ends (at 0 for a
# loaded base); the equivariant VAE and the contrast are trained from scratch:

# %%
offset = len(base.result.history) if base.result is not None else 0  # fine-tunes continue from the base's end
histories = {study.VARIANTS[t.key].short: [dict(h, epoch=h["epoch"] + offset * (t.key in study.FINETUNES))
                                           for h in t.result.history] for t in shown_models if t.result is not None}
fig, axes = plots.plt.subplots(1, 2, figsize=(11, 3.4))
plots.plot_histories(histories, "val_recon_psnr_db", ax=axes[0], ylabel="PSNR (dB)", title="plain reconstruction",
                     colors=study.COLORS)
plots.plot_histories(histories, "val_roundtrip_psnr_db", ax=axes[1], ylabel="PSNR (dB)",
                     title="round trip D(g·E(x))", colors=study.COLORS)
fig.tight_layout()

# %% [markdown]
# ## The fine-tuned autoencoder, saved and reloaded
#
# `study.export_pretrained` writes the chosen D4 fine-tune in its base's own format: TAEF2's two state dicts
# (loadable by `rotcore.models.taesd.load_taef2` and by any TAESD-style loader that knows the FLUX.2 layout;
# diffusers' `AutoencoderTiny` cannot hold TAEF2, because its blocks have no place for the FLUX.2 variant's
# pooled 1×1-conv branch: the module docstring of `rotcore.models.taesd` says exactly what is missing),
# or, for an `AutoencoderKL` base, diffusers' `save_pretrained` folder that reloads with
# `AutoencoderKL.from_pretrained` and drops into a pipeline as its `vae` (tested in
# `tests/test_eqvae.py`). Our additions (loss weights, group elements, base) go beside it in
# `rotbook_eqvae.json`. The cell reloads the folder and compares every tensor bit for bit:

# %%
ft_run = first["ft"]
folder = study.export_pretrained(ft_run, ft_run.result.checkpoint.parent / "export", cfg)
reloaded = study.load_exported(folder)
export_exact = state_dicts_equal(reloaded, ft_run.model)
print(f"{type(reloaded).__name__} reloaded from {folder.name}/: weights identical = {export_exact}")
sorted(p.name for p in folder.iterdir())

# %% [markdown]
# ## Results

# %%
metrics["export_roundtrip_exact"] = export_exact
path = run.publish(metrics)

# %% [markdown]
# ## Discussion
#
# *Every number below comes from this run (profile and device are stated at the top of the page).*
# The base on this page is {glue:md}`eqvae_base`.
#
# **The base and turned latents.** The base reconstructs held-out tiles at {glue:text}`base_recon_psnr_db:.2f` dB
# (SSIM {glue:text}`base_ssim:.3f`); decoding its latent turned by 180° and comparing with the turned image gives
# {glue:text}`base_roundtrip_psnr_db_r180:.2f` dB (90°: {glue:text}`base_roundtrip_psnr_db_r90:.2f` dB).
# {glue:md}`eqvae_base_sentence` Its latent moves with the image only loosely: the relative latent
# equivariance error is {glue:text}`latent_equiv_err_base_r180:.3f` at r180 (the data folder's README measured
# 0.81 on whole photos at 256 px). {glue:md}`eqvae_contrast_sentence` {glue:md}`eqvae_twin_sentence`
#
# **The trade-off.** {glue:md}`eqvae_frontier_sentence` {glue:md}`eqvae_gavg_sentence` Measured outside this
# run (a validation-only probe of the `cpu` profile: seed 0, its data and 68 steps, the validation tiles, not
# the test photos), heavier weights did not close the gap: at (rotation, encoder) weights (1, 10) the worst
# round trip was 3.03× the model's own reconstruction but 9.91× the twin's, at a 5.15 dB cost, and at (3, 30)
# 1.40× its own but 8.06× the twin's, at 7.62 dB. Heavier weights push the ratio against a model's own
# reconstruction toward 1 by losing reconstruction, while against the twin it stayed at 8× or more: at this
# step count the 1.5× target is not reached by weighting.
#
# {glue:md}`eqvae_ftdec_sentence`
#
# **The chosen point.** {glue:md}`eqvae_selection_sentence` Over {glue:text}`seeds` seeds, its worst round
# trip over the seven non-identity elements is {glue:md}`ft_roundtrip_vs_twin_ratio_max_with_ci` the twin's
# plain-reconstruction MSE, which {glue:md}`ft_roundtrip_vs_twin_ratio_max_verdict`; per element, averaged over
# seeds, {glue:md}`eqvae_ratio_missed`. The cost: its plain reconstruction is {glue:md}`ft_psnr_cost_db_with_ci`
# below its twins' (paired by seed), which {glue:md}`ft_psnr_cost_db_verdict`. {glue:md}`eqvae_gap_sign` In
# SSIM the cost is {glue:text}`ft_ssim_cost:.4f`; against the untouched base it is
# {glue:text}`ft_psnr_cost_vs_base_db:.2f` dB. Against its own reconstruction (a ratio that a worse
# reconstruction lowers) the worst round trip is {glue:md}`ft_roundtrip_ratio_max_with_ci`.
#
# **Does the latent turn?** Measured on the encoder side, the chosen point's latent equivariance error is
# {glue:md}`latent_equiv_err_ft_with_ci` (mean over the seven elements and the seeds), which
# {glue:md}`latent_equiv_err_ft_verdict`. {glue:md}`eqvae_latent_sentence` EQ-VAE reports 0.80 → 0.15 for
# SD-VAE after fine-tuning from its base; that figure is unverified here and its definition may differ, so only
# the direction compares: {glue:md}`eqvae_latent_direction`.
#
# **The seed's number on our data.** {glue:md}`eqvae_seed_sentence` Against the target (the seed's number, at a small
# reconstruction cost), the rot180 round trip {glue:md}`eqvae_ft180_verdict`. The seed's number comes from SD 1.5's 84 M-parameter
# VAE on its own images and resolution, so at most the order of magnitude compares. {glue:md}`eqvae_r90_sentence`
#
# **Exact by construction.** The D4-weight-shared VAE with symmetric downsampling is equivariant to within
# {glue:text}`equi_equiv_err_f64:.1e` in float64 (a check, guaranteed by
# `tests/test_eqvae.py::test_equivariant_vae_is_exact_in_float64`); with SD's asymmetric padding put back, the
# same architecture (untrained) is off by {glue:text}`equi_asym_equiv_err_f64:.2f`.
# {glue:md}`eqvae_ft_exact_sentence` (Its decoder alone: {glue:text}`ft_decoder_equiv_err_f64:.2f`.) Trained
# from scratch on these photos with {glue:text}`params_equi` parameters (TAEF2: {glue:text}`params_base`; it
# is not parameter-matched: D4 weight sharing stores each kernel once for eight uses, and matching TAEF2's
# count would cost about 8× the compute), the equivariant VAE reconstructs at
# {glue:text}`equi_recon_psnr_db:.2f` dB, and its worst round trip is
# {glue:text}`equi_roundtrip_ratio_max:.4f`× its reconstruction. The fine-tuned TAEF2 reloads from its export
# {glue:md}`eqvae_export`.
#
# {glue:md}`profile_note`
