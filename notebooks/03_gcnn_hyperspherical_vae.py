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
# # A rotation-invariant embedding: are 6s just rotated 9s?
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rotbook/rotbook/blob/main/notebooks/03_gcnn_hyperspherical_vae.ipynb)
#
# A variational auto-encoder whose **encoder ignores rotation** should map a digit and every rotated copy of
# it to the same code, and its decoder should draw the same upright digit for all of them. Then a 9 turned
# upside down should still come out as a 9, and not as the 6 it now resembles: unless 6s really are just
# rotated 9s, in which case nothing but handwriting style can tell them apart.
#
# We build four VAEs with a **hyperspherical latent** (the code lives on the unit sphere $S^{d-1}$), the same
# decoder and two encoders. The first two are trained on **upright** MNIST digits only, the seed project's
# question:
#
# * **S-VAE**: a plain CNN encoder;
# * **S-GVAE**: a group-equivariant encoder ([escnn](https://github.com/QUVA-Lab/escnn), regular fields of the
#   rotation group C8, pooled over the group), so the whole posterior is invariant to quarter turns of the input,
#   exactly. Between quarter turns it is not: {glue:md}`sv_sgvae_between_sentence` Its training digits are upright,
#   but its encoder never sees them untouched: it sees each digit as two copies turned by
#   {glue:text}`sgvae_orbit_deg` and max-pools their invariant features (**orbit pooling**, see below). There is
#   no pose head: the decoder only sees the invariant code;
# * **S-VAE-aug**: the S-VAE's architecture trained on **randomly rotated** inputs (a fresh uniform angle per
#   digit and batch, binarised after rotating) with the **upright** digit as the decoder's target: the baseline
#   that learns from data what the S-GVAE has by construction. Without it the comparison would be an
#   architecture against nothing;
# * **S-GVAE-aug**: the S-GVAE's C8 encoder, without the orbit, trained the same way (rotated inputs, upright
#   targets). It **no longer sees upright digits only**. Its encoder is exactly invariant to quarter turns; between
#   them (15°, 30°, 45°, ...) our hypothesis, not tested on this page, is that the bilinearly resampled pixel grid
#   differs from a turned digit in ways upright-only training never shows the encoder (issue 21 measured that an
#   *untrained* C8 encoder already moves its code by about half the distance between two digits' codes for a +30°
#   then −30° round trip). Whether rotated training makes the code move less is what the invariance table below
#   measures.
#
# The posterior is a **Power Spherical** distribution (De Cao & Aziz 2020) with a uniform prior on the sphere:
# like the von Mises–Fisher of the original S-VAE (Davidson et al. 2018), but sampled without rejection
# and numerically stable at high concentration. An **independent judge**, a plain CNN trained on upright MNIST,
# reads the decoded outputs of rotated MNIST test digits. The seed project reported one accuracy per model and
# digit, aggregated over its own set of rotated test digits (with a pretrained ResNet50 as the judge, which
# cannot be downloaded here): the results table at the end sets our **means over angles** beside those numbers
# (aggregate against aggregate), and reports the **worst angle** as well, which the seed did not measure.
#
# **Running it yourself.** `profile = "cpu"` reproduces this page in at most 25 minutes on 2 CPU cores (this
# page's run took {glue:md}`runtime_min` min; `rotbook list --flops` gives the training FLOPs).
# On a Colab GPU runtime choose `profile = "gpu"`, the seed project's scale (the full training
# set, 30 epochs, latent dimensions 2, 5 and 10 in the ELBO table); this profile has not been timed on a GPU.

# %% tags=["remove-cell"]
# Colab only: install rotcore and its stack (a no-op everywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "rotcore @ git+https://github.com/rotbook/rotbook"], check=True)

# %% tags=["parameters"]
profile = "smoke"  # "smoke": CI, about a minute; "cpu": the published numbers, 2 CPU cores, at most 25 min; "gpu": one GPU
overrides = {}  # e.g. {"latent_dim": 32, "equivariant_encoder.group": "C16", "fit.epochs": 40}

# %%
import pandas as pd
import torch
from IPython.display import HTML, display

from rotcore import judges, plots, report
from rotcore.studies import svae as study
from rotcore.train import predict

run = report.start(study, profile, overrides)  # raises on an unknown profile or key, before any work
cfg, device = run.cfg, run.device

# %% [markdown]
# ## The judge, first
#
# Every accuracy below is the judge's reading of a decoded image, so the judge's own accuracy on real
# (upright) MNIST test digits bounds what the models can score. It is trained separately (cache-or-train,
# `rotcore.judges.digit_judge(..., rotated=False)`), shares no weights with the VAEs, and is never shown a
# VAE output during training.

# %%
data = study.load_data(cfg, device)
judge = judges.digit_judge(cfg.judge_config(), rotated=False, device=device)
judge_df = judges.evaluate_digit_judge(judge, data.test, [0.0])
judge_df.drop(columns="angle_deg").rename(index={0: "judge on real upright test digits (%)"}).round(2)

# %% [markdown]
# ## The four VAEs
#
# Both encoders follow one layer plan (the E(2)-CNN paper's MNIST classifier: six convolutions, 28 → 20 → 10
# → 5 → 1 px, 2×2 max pooling on even grids that it tiles exactly, then a fully connected head that outputs
# the posterior's direction $\mu$ and concentration $\kappa$). No step is strided, so the escnn encoder's code
# is *exactly* invariant to quarter turns of a 28×28 image without padding it to 29×29 (a one-pixel pad would
# move the rotation centre by half a pixel and break exactness for rotations applied to the 28×28 digit).
# The decoder is the same design for all four (each augmented model has its upright-only twin's architecture,
# except for the S-GVAE's orbit).
# The concentration starts **concentrated**: $\kappa = \kappa_{\min} + \exp(\min(r + \log\kappa_0,
# \log 10^5))$ for the encoder's output $r$, so that at initialisation ($r \approx 0$) samples lie close to
# $\mu$. {glue:md}`sv_kappa_sentence`
# Why a concentrated start: issue 21 measured (cpu settings, one seed; not on this page) that with the former
# $\mathrm{softplus}(r) + 1$, which starts at $\kappa \approx 1.7$ (samples nearly uniform on $S^{15}$), the code
# carried 1.3 nats of KL after one epoch and upright 9s decoded right 71.3 % of the time, against a KL of 18.4 nats
# and 95.1 % with the $\kappa$ output started near 300. That the decoder then learns to ignore the code is our
# reading of those numbers, a hypothesis. The distribution is always evaluated in float32.
#
# **Orbit pooling.** C8's equivariance to a 45° turn holds only approximately on the square pixel grid. The
# S-GVAE encodes two copies of each input, turned by −22.5° and +22.5° in one batch, and max-pools their
# group-pooled features before the head (`rotcore.models.svae.OrbitPooled`); a 45° turn of the input then swaps
# the copies up to resampling. Why this orbit, and the numbers behind it, come from a validation script, **not
# from this page** (`scripts/check_sgvae_encoder_variants.py`: validation digits at 0–75°, one seed, 2026-12-05):
# there the plain C8 encoder trained on upright digits moved the code of a digit turned by 45° by 1.37, about the
# distance between two different digits' codes (1.39), and its decoded rotated 6s were read right 80 % of the time
# on average; with this orbit the code moved by 0.09 at 45° and the 6s read right 97 %, at a cost of 8 nats of
# validation −ELBO, 3 points on upright 9s (91 % against 94 %) and about 1.3× the training time. An orbit that
# included the untouched input lost the 45° invariance in that script; our explanation (a hypothesis, not tested)
# is that the network can tell the sharp copy from the resampled one. The S-GVAE-aug keeps the plain C8 encoder:
# in the same script, trained on rotated inputs, its code moved by 0.13 at 45° without an orbit, and the orbit
# changed its readings by at most 1.6 points. So the S-GVAE and the S-GVAE-aug differ in training *and* in this
# one part of the encoder; what this page measures of both is in the invariance table.
#
# All train on MNIST, **dynamically binarised** (a fresh Bernoulli draw of every pixel each batch),
# with a Bernoulli likelihood, through `rotcore.train.fit` (best validation ELBO on upright digits kept); the
# S-GVAE and the S-VAE see upright digits only, the two augmented models rotated inputs and upright targets.
#
# **Training seeds.** The models in `replicated` ({glue:text}`replicated_text`) are trained again with each seed
# of `replicate_seeds` (same data and settings; the seed sets the initial weights and the batches). Every reading
# of decoded rotated digits below (the curves, the tables, the 6↔9 confusion and the results table) pools a
# model's seeds, and its headline intervals resample the seeds as well as the test digits. The figures of decoded
# examples, the probes, the invariance table, the matched-input control and the ELBO table use the first seed's
# model; the collapse check covers every seed.

# %%
models = study.model_table(cfg)
models

# %%
trained = study.train_models(cfg, data, device=device)
replicas = study.train_replicates(cfg, data, device=device)  # {key: [the same model, trained with another seed]}
runs = [*trained.values(), *(t for ts in replicas.values() for t in ts)]
fig, axes = plots.plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 3.4))
for ax, t in zip(axes, runs):
    plots.plot_history(t.result.history, ["train_loss", "val_neg_elbo"], ax=ax, title=t.label)
    ax.set_ylabel("−ELBO (nats per image)")
fig.tight_layout()

# %% [markdown]
# ## Rotated inputs, decoded
#
# A test 6 and a test 9, rotated, and what each VAE decodes from its code (the posterior's location, not a
# sample). Rows: input, then each model's output.

# %%
examples = torch.cat([data.test.where(data.test.y == d).x[:1] for d in (study.SIX, study.NINE)])
sweep_angles = cfg.test_angles_deg[:: max(1, len(cfg.test_angles_deg) // 12)]
frames = study.rotation_sweep_images(trained, examples, sweep_angles)  # (T, rows, 1, 28, 28)
short = [t.label.split(" ")[0] for t in trained.values()]
row_labels = [f"{d}: {name}" for d in ("6", "9") for name in ("input", *short)]
fig = plots.image_grid(frames.transpose(0, 1).flatten(0, 1), nrow=frames.shape[1], row_labels=row_labels,
                       titles=[f"{a:.0f}°" for a in sweep_angles])

# %% [markdown]
# The same digits turning through every test angle (the slider needs no kernel):

# %%
anim_frames = study.rotation_sweep_images(trained, examples, cfg.test_angles_deg)
display(HTML(plots.animation_html(anim_frames, titles=[
    f"{a:.0f}° · columns: " + ", ".join(f"{name}({d})" if name else d for d in ("6", "9") for name in ("", *short))
    for a in cfg.test_angles_deg])))

# %% [markdown]
# ## What the judge reads in the decoded outputs

# %%
evals = {key: study.evaluate_rotated_seeds([t, *replicas.get(key, [])], judge.model, data, cfg)
         for key, t in trained.items()}  # a model's seeds pooled
rot_df = pd.concat([ev.df for ev in evals.values()], ignore_index=True)
sixnine_df = rot_df[rot_df.label.isin([str(study.SIX), str(study.NINE)])].assign(
    curve=lambda d: d.model.str.split(" ").str[0] + " · rotated " + d.label + "s")
fig = plots.plot_vs_angle(sixnine_df, y="judge_acc_pct", hue="curve", ylim=(0, 101),
                          band=("judge_acc_lo", "judge_acc_hi"), ylabel="judge accuracy on decoded output (%)",
                          title="Rotated 6s and 9s, decoded: does the digit survive?")

# %% [markdown]
# The seed project's table, for our four models (mean and worst over all test angles; the 95 % intervals in the
# results table resample test digits, all angles of a digit together, and a model's training seeds):

# %%
study.seed_table(rot_df).round(1)

# %% [markdown]
# The models trained with several seeds, each seed apart (the same numbers, and the code's 5-NN accuracy):

# %%
seeds_df = study.seed_spread_table(evals, {k: t.label for k, t in trained.items()})
seeds_df.rename(columns=study.SEED_SPREAD_COLUMNS).round(1)

# %% [markdown]
# **By angle class.** A quarter turn maps the 28×28 grid onto itself, so the test angles fall into classes by
# their remainder modulo 90° (0°, 15°, 30°, 45°, 60°, 75°); an escnn encoder gives every angle of a class the
# same code (exactly: a check, see the checks table), so everything it loses is lost at the angles between
# quarter turns. The escnn models are therefore decoded once per class and that reading stands for the
# class's four angles (a test checks that this reads what decoding every angle reads), so their *spread*
# within a class is zero by construction; the plain encoders' spread is measured. Mean judge accuracy per
# class, and the spread within it:

# %%
study.angle_class_table(rot_df).round(1)

# %% [markdown]
# **Matched input statistics.** The VAEs were trained on *binarised* digits, but the rotated test digits above
# are grayscale and softened by bilinear interpolation. The control: the same rotated test 6s and 9s,
# binarised after rotating exactly as in training (once per angle class with a fixed seed, then turned by the
# angle's whole quarter turns, which only move pixels), mean and worst angle:

# %%
bin_df = pd.concat([study.evaluate_binarised_six_nine(t, judge.model, data, cfg) for t in trained.values()],
                   ignore_index=True)
pd.concat([rot_df[rot_df.label.isin(["6", "9"])].assign(inputs="grayscale"), bin_df]).pivot_table(
    index=["model", "inputs"], columns="label", values="judge_acc_pct", aggfunc=["mean", "min"], sort=False).round(1)

# %% [markdown]
# All ten digits, mean judge accuracy over angles (rows: model; columns: digit):

# %%
per_digit = rot_df[rot_df.label != "all"].pivot_table(index="model", columns="label", values="judge_acc_pct",
                                                     aggfunc="mean", sort=False)
per_digit.assign(all=rot_df[rot_df.label == "all"].groupby("model", sort=False).judge_acc_pct.mean()).round(1)

# %% [markdown]
# What the judge reads the decoded rotated 6s and 9s **as**, pooled over all test angles (% of the readings per
# label; rows: model and true digit):

# %%
labels_df = study.judge_label_table(evals, data.test, {k: t.label for k, t in trained.items()})
labels_df.drop(columns="label").round(1)

# %% [markdown]
# And over **all** decoded test digits and angles: the label the judge gives most often to each model's
# outputs, and its share. Decodes spread over the ten digits give each label about 10 %; a share far above that
# means the decoder draws nearly the same digit whatever the code.

# %%
modes_df = study.mode_label_table(evals, {k: t.label for k, t in trained.items()})
modes_df.round(1)

# %% [markdown]
# ## 6 or 9?
#
# The headline: how often the judge reads a decoded 6 as a 9, and a decoded 9 as a 6, by input angle.

# %%
six_nine = study.six_nine_table(evals, data.test, cfg.test_angles_deg, {k: t.label for k, t in trained.items()})
fig = plots.plot_six_nine(six_nine, colors=study.COLORS, what="decoded ")

# %% [markdown]
# The S-GVAE's code is exactly the same for a digit at every quarter turn, so whatever 6↔9 confusion it has at
# 180° it already has on *upright* digits: a 9 turned by 180°, which looks like a 6, gets exactly the code of the
# upright 9 (and a 6 turned by 180°, that of the upright 6), so whatever tells 6s from 9s in its code survives a
# half turn: handwriting style, not orientation. The upright 6s and 9s it gets wrong (input, then decoded output;
# the first seed's model, at most six of each):

# %%
sg = trained["sgvae"]
wrong = [study.misread_examples(sg, judge.model, data.test, digit=a, read_as=b, n=len(data.test))
         for a, b in ((study.SIX, study.NINE), (study.NINE, study.SIX))]
n_misread = sum(len(x_in) for x_in, _ in wrong)  # all of them, for the discussion
imgs = [im[:6] for x_in, x_out in wrong for im in (x_in, x_out)]
if sum(len(i) for i in imgs):
    n = max(len(i) for i in imgs)
    pad = [torch.cat([i, torch.zeros(n - len(i), 1, 28, 28)]) for i in imgs]
    fig = plots.image_grid(torch.cat(pad), nrow=4, row_labels=["6 in", "read as 9", "9 in", "read as 6"])
else:
    print("The S-GVAE's decoded upright 6s and 9s are never read as each other in this run.")

# %% [markdown]
# ## The code itself
#
# **5-nearest-neighbour digit accuracy** of the code: each rotated test digit's code is labelled by its 5
# nearest codes (cosine distance) among upright training digits. No judge, no decoder involved.

# %%
knn = rot_df[rot_df.label == "all"]
fig = plots.plot_vs_angle(knn, y="knn_acc_pct", hue="model", ylim=(0, 101), colors=study.COLORS,
                          band=("knn_acc_lo", "knn_acc_hi"), ylabel=f"{cfg.knn_k}-NN accuracy from the code (%)",
                          title="Is the code a digit code at every angle?")

# %% [markdown]
# **A linear probe for 6 against 9**, again without decoder or judge: a logistic regression on the codes of the
# upright 6s and 9s of the *training* split, scored on the test 6s and 9s upright and turned by 180° (AUC, with
# a 95 % bootstrap interval over the test digits). A code that is invariant to rotation gives a 9 turned by 180°
# the code of the upright 9, so it can only separate 6s from 9s by what survives that turn: handwriting style.

# %%
probe_df = study.probe_table(trained, data, cfg)
probe_df.round(3)

# %% [markdown]
# **Invariance error** of the code, $\max_i \lVert z(x_i) - z(\mathrm{rot}\,x_i) \rVert_2$ over a probe batch of
# test digits ($z$ the unit direction $\mu$; the largest possible value is 2). Quarter turns in float64, where
# the escnn encoder is exact by construction (to float64 rounding); other angles in float32, where the pixel
# grid itself is not symmetric (`rotcore.metrics.invariance_errors` with the Euclidean distance), and beside
# each worst case the mean change over the probe digits (`rot<angle>_mean`), so that a large maximum can be
# told apart from a shift of every code.

# %%
inv_df = study.invariance_errors(trained, data.test.head(cfg.invariance_probe_size), cfg)
inv_df.style.format("{:.2e}", subset=[c for c in inv_df.columns if c != "label"])

# %% [markdown]
# ## Gaussian vs hyperspherical latents: the ELBO table
#
# More VAEs, all with the **plain** encoder and the same decoder: Gaussian (standard normal prior) and Power
# Spherical (uniform prior on $S^{d-1}$) latents at each $d$ of `elbo_dims` (the `cpu` profile: $d$ = 2 only;
# `gpu`: 2, 5, 10), with $d$ the dimension of the space the code lives in, as in the S-VAE authors' code.
# Trained with dynamic binarisation on `elbo_train_size` of the training digits (`cpu`: 8k, one epoch; all on
# `gpu`); evaluated on `elbo_test_size` MNIST test digits **binarised once with a
# fixed seed**. `elbo` is a one-sample ELBO averaged over those digits; `iwll` the importance-weighted bound
# (Burda et al. 2016) with `iw_samples` samples (500 on `gpu`, as in the S-VAE paper; 100 on `cpu`), a
# lower bound on $\log p(x)$ that tightens with more samples. The S-VAE paper's log-likelihoods (in the results
# table) came from an MLP encoder and decoder, the vMF posterior and all 10k test digits, so only the direction
# of the gap compares, not the values. The last column is the collapse check's verdict (below) for each model: a
# bound of a model that collapsed or failed its task is not compared.

# %%
elbo_models = study.train_elbo_models(cfg, data, device=device)
elbo_df = study.elbo_table(elbo_models, data, cfg)
main_elbo = study.elbo_table(list(trained.values()), data, cfg, iw_samples=cfg.main_iw_samples)
collapse_df = study.collapse_table(runs + elbo_models, judge.model, data, cfg)  # shown below
study.with_collapse_column(pd.concat([elbo_df, main_elbo]), collapse_df).drop(columns=["latent"]).round(2)

# %% [markdown]
# **The collapse check**, for every VAE trained on this page: on upright test digits, the KL its code carries
# from the prior (per dimension of the space the code lives in), the judge's accuracy on its decoded digits, and
# the share of its decodes read as its most common label. A model whose decodes the judge reads as one label at
# least half of the time, or right less than half of the time, or draws some digit right less than half of the
# time (its worst digit), has not learned its task: its row is marked collapsed and it is **not compared** in the
# discussion (`status` says which: collapsed onto one label, or failed its task with its labels spread, and
# `failed_digits` lists the digits drawn right less than half of the time).

# %%
collapse_df.round(2)

# %%
fig, axes = plots.plt.subplots(1, 2, figsize=(8.4, 4.0))
x_show = data.test.head(2_000)
for ax, t in zip(axes, [t for t in elbo_models if t.config.latent_dim == 2]):
    z = predict(t.model, x_show.x)
    plots.plot_latent_2d(z, x_show.y, ax=ax, title=t.label, unit_circle=t.config.latent == "power_spherical")
fig.tight_layout()

# %% [markdown]
# ## Results

# %%
cis = {**study.headline_cis(evals, data.test),  # 95 % bootstrap intervals, clustered by test digit (and seed)
       **study.upright_six_nine(trained, judge.model, cfg, replicates=replicas)}  # upright: all of MNIST test's
metrics = study.headline_metrics(rot_df, inv_df, elbo_df, main_elbo, models, judge_df, six_nine, cis,
                                 probe_df=probe_df, labels_df=labels_df, binarised_df=bin_df, modes_df=modes_df,
                                 collapse_df=collapse_df, seeds_df=seeds_df)
metrics["kappa_init"] = cfg.kappa_init
metrics["sgvae_orbit_deg"] = study.orbit_text(cfg)
metrics["replicated_text"] = study.replicated_text(cfg)
metrics["sgvae_upright_six_nine_misread_n"] = n_misread  # the figure's upright 6<->9 misreadings (first seed)
metrics["sgvae_upright_six_nine_n"] = int(((data.test.y == study.SIX) | (data.test.y == study.NINE)).sum())
path = run.publish(metrics)

# %% [markdown]
# ## Discussion
#
# *Every number below comes from this run (profile and device are stated at the top of the page).*
#
# **The judge.** On real upright test digits it is right {glue:text}`judge_acc_pct:.2f` % of the time
# ({glue:text}`judge_acc_pct_6:.1f` % of 6s, {glue:text}`judge_acc_pct_9:.1f` % of 9s): the ceiling for
# everything it reads.
#
# **The invariant encoder.** The S-GVAE's decoded rotated 6s are read correctly at worst
# {glue:md}`sgvae_six_acc_min_pct_with_ci` of the time over all angles, which
# {glue:md}`sgvae_six_acc_min_pct_verdict`; its rotated 9s at worst {glue:md}`sgvae_nine_acc_min_pct_with_ci`,
# which {glue:md}`sgvae_nine_acc_min_pct_verdict`. Upright, on all {glue:text}`sgvae_six_acc_upright_pct_n`
# test 6s and {glue:text}`sgvae_nine_acc_upright_pct_n` test 9s (the per-angle tables use the evaluation
# subset: {glue:text}`sgvae_six_acc_min_pct_n` 6s and {glue:text}`sgvae_nine_acc_min_pct_n` 9s), the same model
# scores {glue:text}`sgvae_six_acc_upright_pct:.1f` % on 6s and
# {glue:md}`sgvae_nine_acc_upright_pct_with_ci` on 9s.
# Against the seed's S-GVAE, its mean over angles {glue:md}`sgvae_six_acc_mean_pct_verdict` for 6s and
# {glue:md}`sgvae_nine_acc_mean_pct_verdict` for 9s; upright 9s alone {glue:md}`sgvae_nine_acc_upright_pct_verdict`.
# {glue:md}`sv_drop_sentence` Under quarter turns its code moves by at most
# {glue:text}`latent_invariance_err_rot90:.1e` (a check: exact by construction, see the checks table); between
# quarter turns it moves by up to {glue:text}`latent_invariance_err_other_max:.2f` (the largest possible change of
# a unit vector is 2). {glue:md}`sv_code_change_sentence` Averaged over angles, the code's 5-NN digit accuracy is
# {glue:md}`sgvae_latent_knn_acc_mean_pct_with_ci` (worst angle
# {glue:text}`sgvae_latent_knn_acc_min_pct:.1f` %), which {glue:md}`sgvae_latent_knn_acc_mean_pct_verdict`.
# {glue:md}`sv_gap_sentence`
#
# **The plain encoder.** The S-VAE's decoded upright digits are judged correct
# {glue:text}`svae_upright_acc_pct:.1f` % of the time (all digits); averaged over angles,
# {glue:text}`svae_all_acc_mean_pct:.1f` %: it {glue:md}`sv_collapse_verdict`. On rotated 6s it averages
# {glue:md}`svae_six_acc_mean_pct_with_ci` (worst angle {glue:text}`svae_six_acc_min_pct:.1f` %) and on rotated
# 9s {glue:md}`svae_nine_acc_mean_pct_with_ci` (worst angle {glue:text}`svae_nine_acc_min_pct:.1f` %); its code
# moves by up to {glue:text}`svae_latent_invariance_err_rot90:.2f` under a quarter turn, and its 5-NN accuracy
# averages {glue:text}`svae_latent_knn_acc_mean_pct:.1f` % over angles.
#
# **Rotated training for the invariant encoder.** The S-GVAE-aug, trained on rotated inputs with upright targets,
# reads decoded rotated 6s right at worst {glue:md}`sgvae_aug_six_acc_min_pct_with_ci` over every test angle
# (45° included), which {glue:md}`sgvae_aug_six_acc_min_pct_verdict`, and rotated 9s at worst
# {glue:md}`sgvae_aug_nine_acc_min_pct_with_ci`, which {glue:md}`sgvae_aug_nine_acc_min_pct_verdict`. Its code's
# 5-NN digit accuracy at the worst angle is {glue:md}`sgvae_aug_latent_knn_acc_min_pct_with_ci`, which
# {glue:md}`sgvae_aug_latent_knn_acc_min_pct_verdict`. {glue:md}`sv_aug_upright_sentence`
#
# **Against augmentation.** {glue:md}`sv_aug_sentence` The augmented S-VAE's most common reading takes
# {glue:md}`svae_aug_mode_label_pct_with_ci` of its decodes, which {glue:md}`svae_aug_mode_label_pct_verdict`.
# {glue:md}`sv_collapse_sentence`
#
# **Matched inputs.** {glue:md}`sv_binarised_sentence`
#
# **Against the seed.** {glue:md}`sv_seed_sentence`
#
# **Are 6s just rotated 9s?** For the S-GVAE-aug, whose code is exactly invariant at quarter turns.
# {glue:md}`sv_sgvae_aug_between_sentence`
# {glue:md}`sv_six_nine_answer` A code invariant to quarter turns cannot use orientation at a half turn, the cue
# that makes the difference obvious to us; what is left is style (the loop's size against the stem, the stem's
# length and curl), and a 6 written like a turned 9 is, to this code, exactly a turned 9 at every quarter turn
# {glue:md}`sv_misread_note`. For comparison, the S-VAE reads up to
# {glue:text}`svae_six_as_nine_max_pct:.1f` % of 6s as 9s and {glue:text}`svae_nine_as_six_max_pct:.1f` % of 9s
# as 6s, at the angles that turn one into the other. {glue:md}`sv_confusion_sentence`
#
# **Without the decoder.** {glue:md}`sv_probe_sentence`
#
# **Gaussian vs hyperspherical.** With the same plain encoder and decoder, the hyperspherical minus the
# Gaussian test log-likelihood bound is {glue:md}`sv_elbo_gaps` (positive: the sphere is better).
# {glue:md}`sv_elbo_sentence` {glue:md}`sv_paper_sentence`
#
# **Training seeds.** {glue:md}`sv_seeds_sentence`
#
# *The intervals are 95 % percentile-bootstrap intervals over the test digits (each digit with all its angles
# resampled together), and over the training seeds for a model trained with several (seeds and digits resampled
# independently).*
#
# {glue:md}`profile_note`
