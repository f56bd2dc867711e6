# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Angle regression over the full circle
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/rotbook/rotbook/blob/main/notebooks/04_angle_regression.ipynb)
#
# By how much has a photo been rotated, anywhere in 0–360°? The seed project trains a ResNet18 to predict
# the unit vector (cos θ, sin θ) of a synthetically rotated COCO image (MSE on the vector, `atan2` to decode)
# and reports a 4.57° mean circular error. Its split is over rotated copies, so rotations of one photo sit on
# both sides of it, and it pads with reflection, which can leave cues. Here we:
#
# 1. keep the photos in a **FiftyOne** data set (source, licence, split by photo) and train from its
#    exported manifest, so the same samples reach machines without FiftyOne;
# 2. rotate every training batch **on the device** with fresh angles, and compare the seed's reflection
#    padding with a **rotation-safe crop** (the largest square that is inside the photo at every angle);
# 3. train the **seed's recipe** on an honest split by photo, the same recipe on the seed's **leaky**
#    per-rotation split, and **our recipe** (augmentation, a circular classification head, rot90 TTA);
# 4. look at errors by angle and source, an **abstention** curve and **Grad-CAM** maps;
# 5. evaluate the same kind of model on digits: the **MNIST angle judge** used by the generative studies.
#
# Offline the photos are 492 COCO images and wallpapers (`$ROTBOOK_DATA/photos`); with a network,
# `overrides={"source": "coco-2017"}` builds the same data set from the FiftyOne zoo's COCO-2017.

# %% tags=["remove-cell"]
# Colab only: install rotcore and its stack (a no-op everywhere else).
import sys

if "google.colab" in sys.modules:
    import subprocess

    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "rotcore[fiftyone] @ git+https://github.com/rotbook/rotbook"], check=True)

# %% tags=["parameters"]
profile = "smoke"  # "smoke": CPU, about a minute; "full": the published numbers, one GPU
overrides = {}  # e.g. {"source": "coco-2017", "model.pretrained": True, "fiftyone": "off"}

# %%
import pandas as pd
import torch
from IPython.display import Markdown, display

from rotcore import plots
from rotcore.results import Stopwatch, glue_metrics, glue_text, profile_note, run_card, verdict, write_results
from rotcore.studies import angle_regression as study
from rotcore.train import default_device

cfg = study.resolve_config(profile, overrides)  # raises on an unknown profile or key, before any work
clock = Stopwatch()
device = default_device()
plots.use_style()
display(Markdown(run_card(study.STUDY, profile=profile, device=device)))

# %% [markdown]
# ## The data set
#
# Photos are registered in a persistent FiftyOne data set (re-running adds nothing; a changed folder is
# detected and synced), exported to a manifest, and read back from that manifest. Where FiftyOne is not
# installed (the GPU machine) the manifest is written straight from the folder, and the line below says so.

# %%
data = study.prepare_photos(cfg, device)
display(Markdown(f"**Samples:** {data.registry}  \n**Manifest:** `{data.manifest.name}`"))
study.photo_table(data)

# %% [markdown]
# The test photos (the manifest's `val` split) are never trained on; a tenth of the training photos is held
# out for early stopping and for choosing our best run. Every evaluation set is fixed and seeded: several
# angles per photo. Borders compared: the whole rotated square with reflected corners (the seed's), and the
# rotation-safe crop, which shows the same zoom at every angle and never a corner:

# %%
sets = study.eval_sets(data, cfg)
demo = study.EvalSet("demo", data.test_idx[:1].repeat(6), torch.tensor([0.0, 30, 45, 90, 150, 250]).to(device))
strips = torch.cat([study.render(data.squares, demo, size=cfg.input_size, border=b) for b in ("reflect", "crop")])
fig = plots.image_grid(strips, nrow=2, row_labels=["reflect", "crop"], titles=[f"{a:.0f}°" for a in demo.angle_deg.tolist()],
                       scale=1.3)

# %% [markdown]
# ## Training
#
# | run | what it tests |
# |---|---|
# | seed recipe | ResNet18, (cos, sin) head, MSE, Adam 1e-3 + wd 1e-4, stepped LR, clipping 1.0, early stopping (patience 5, min Δ 0.01°), no augmentation, split by photo, crop |
# | seed recipe, reflect | the same with reflection padding: does the border leak the angle? |
# | seed recipe, leaky split | the same on fixed rotated copies of *all* photos split 80/20 by copy (the seed's protocol) |
# | ours, vec / bins head | flips, zoom, shift and colour jitter, AdamW + cosine, lower resolution; (cos, sin) head vs 72 bins with a von Mises soft target |
#
# All runs share the shared `fit` loop (checkpoints, resume, early stopping, bf16 on CUDA); the batch size is
# probed on the GPU (halved until a step fits).

# %%
study.run_table(cfg)

# %%
trained = [study.train(k, cfg, data, sets, device=device) for k in cfg.runs]
fig, axes = plots.plt.subplots(1, 2, figsize=(11, 3.4))
labels = {study.label(t.key): t.result.history for t in trained}
plots.plot_histories(labels, "train_mae_deg", ax=axes[0], ylabel="train MAE (°)", title="training batches",
                     colors=study.COLORS)
plots.plot_histories(labels, "val_mae_deg", ax=axes[1], ylabel="validation MAE (°)",
                     title="early-stopping set (leaky run: its leaky copies)", colors=study.COLORS)
fig.tight_layout()

# %% [markdown]
# ## Held-out photos
#
# Circular absolute error CAE = min(|Δ|, 360 − |Δ|) on the fixed test set. `test_tta` is exact rot90
# test-time augmentation (predict on the image and its three quarter turns, turn the answers back, take the
# circular mean); `seen` is new angles of *training* photos (memorisation check); `leaky-test` is the seed's
# split. `ours_ensemble` averages the predicted vectors of the two "ours" runs (no extra training); our best
# run is chosen among the "ours" rows on the early-stopping photos, never on the test photos. The
# brightness-centroid row is a non-learned baseline (the sky is bright).

# %%
evals = {t.key: study.evaluate_run(t, cfg, data, sets) for t in trained}
if (ens := study.ensemble(evals)) is not None:
    evals["ours_ensemble"] = ens  # the mean of the two heads' predicted vectors: no extra training
baseline = study.evaluate_baseline(cfg, data, sets)
table = study.summary_table(evals, baseline)
table.drop(columns="label").round(2)

# %%
best = study.best_run(evals)
honest = {study.label(k): study.headline_eval(evals, k).err_deg for k in evals if "test" in evals[k]}
honest["brightness centroid"] = baseline.err_deg
fig, axes = plots.plt.subplots(1, 2, figsize=(11, 3.4))
plots.plot_error_hist(honest, ax=axes[0], title="held-out photos: error histogram", colors=study.COLORS)
plots.plot_error_cdf(honest, ax=axes[1], title="held-out photos: error CDF", colors=study.COLORS)
fig.tight_layout()

# %%
mae = {study.label(k): (v.get("test") or v["leaky-test"]).err_deg.mean().item() for k, v in evals.items()}
fig = plots.plot_bars(mae, ylabel="MAE (°)", colors=study.COLORS,
                      title="MAE without TTA (leaky run: on its leaky test copies)", fmt="{:.1f}")

# %% [markdown]
# Error by the true angle (a model that learned "up" should be flat; one that reads the border or the
# photo's aspect shows structure every 90°), and by source:

# %%
fig = plots.plot_vs_angle(study.by_angle(evals), y="mae_deg", hue="model", ylabel="MAE (°)", colors=study.COLORS,
                          title="held-out photos: error by true angle")

# %%
study.per_source(study.headline_eval(evals, best), data).round(2)

# %% [markdown]
# ## Abstention
#
# The length of the predicted vector is a confidence (the seed's suggestion): keep only the most confident
# predictions and score those. A useful confidence makes the curve fall as coverage drops.

# %%
curves = study.abstention(evals, cfg)
fig = plots.plot_coverage(curves, colors=study.COLORS, title="held-out photos: error vs coverage")

# %% [markdown]
# ## Where the best model looks: Grad-CAM
#
# Grad-CAM on ResNet's third stage (the fourth is only 3×3 at our input size), explaining the length of the
# predicted vector along its own direction, for the best *trained* run (an ensemble has no single map).

# %%
best_t = study.best_trained_run(evals, trained)
x_cam, cams, titles = study.gradcam_maps(best_t, cfg, data, sets["test"])
fig = plots.cam_grid(x_cam, cams, titles=titles)

# %% [markdown]
# ## The evaluation set in FiftyOne
#
# The fixed test set with every model's prediction is saved as JSON (FiftyOne-free). Where FiftyOne is
# installed it is materialised and registered with a ground-truth angle, a `Regression` field per model and a
# per-sample circular error from `evaluate_regressions`; sort by `eval_pred_<run>` in the App to see the worst
# cases (`fo.launch_app(ds)` in an interactive session).

# %%
pred_file = study.save_predictions(study.results_path_for_predictions(profile), data, sets["test"],
                                   {k: study.headline_eval(evals, k) for k in evals if "test" in evals[k]})
if data.dataset is not None:
    eval_ds = study.register_evaluation(pred_file, cfg=cfg, size=cfg.input_size)
    worst = eval_ds.sort_by(f"eval_pred_{best}", reverse=True).limit(3)
    msg = (f"Registered `{eval_ds.name}` ({len(eval_ds)} samples) in FiftyOne; worst three for `{best}`: "
           + ", ".join(f"{w:.0f}°" for w in worst.values(f"eval_pred_{best}")))
    if cfg.launch_app:
        from rotcore.fiftyone_io import launch_app_if_interactive

        launch_app_if_interactive(eval_ds)
else:
    msg = (f"FiftyOne registration of the evaluation set **skipped** (FiftyOne is not used here). Predictions "
           f"saved to `{pred_file.name}`; register them where FiftyOne is installed with "
           "`study.register_evaluation(pred_file, cfg=cfg)`.")
display(Markdown(msg))

# %% [markdown]
# ## Digits: the MNIST angle judge
#
# A small CNN with the same (cos, sin) head, trained on MNIST digits rotated uniformly over 360° with
# **bicubic** rotations and a share of binarised digits (the generators it judges use bilinear rotations),
# evaluated on the MNIST test set rotated (bilinear) with several fixed seeds. It is cached through
# `rotcore.judges.angle_judge`, where the generative studies load it. 0, 1 and 8 are nearly symmetric under
# 180°; 6 and 9 turn into each other, so their rows are reported on their own.

# %%
judge, mnist_summary, per_digit = study.mnist_judge(cfg, device=device)
fig = plots.plot_bars({str(d): v for d, v in zip(per_digit.digit, per_digit.mae_deg)}, ylabel="MAE (°)",
                      title="MNIST angle judge: MAE per digit", fmt="{:.1f}")
per_digit.set_index("digit").round(2).T

# %% [markdown]
# ## Results

# %%
metrics = study.headline_metrics(evals, baseline, curves, mnist_summary, per_digit, trained)
runtime_s = clock.elapsed_s
path = write_results(study.STUDY, metrics, profile=profile, runtime_s=runtime_s, config=cfg, device=device)
glue_metrics(metrics)
glue_text("ar_best_label", study.label(best))
glue_text("ar_half_verdict", verdict(metrics["photos_best_to_seed_ratio"], 0.5, fmt="{:.2f}", unit="×"))
glue_text("ar_stretch_verdict", verdict(metrics["photos_mae_deg"], 20.0, unit="°", fmt="{:.1f}"))
glue_text("ar_mnist_verdict", verdict(metrics["mnist_mae_deg"], 3.0, unit="°"))
glue_text("profile_note", profile_note(profile))
for key, sentence in study.discussion(metrics).items():
    glue_text(key, sentence)
print(f"wrote {path.relative_to(path.parents[1])}")
pd.Series(metrics, name=profile).to_frame()

# %% [markdown]
# ## Discussion
#
# *Every number below comes from this run (profile and device are stated at the top of the page).*
#
# **The leak.** {glue:md}`ar_leak_sentence` The seed's 4.57° also rested on ImageNet pretraining and 30,000
# photos; offline we have neither, so the honest question is how far a model trained from scratch on a few
# hundred scenes generalises to new ones.
#
# **Held-out photos.** {glue:md}`ar_best_sentence` Against the target of half the seed recipe's error this
# {glue:md}`ar_half_verdict`; against the stretch target of 20° it {glue:md}`ar_stretch_verdict`. Within 5°,
# 10° and 15° it places {glue:text}`photos_within5_pct:.1f` %, {glue:text}`photos_within10_pct:.1f` % and
# {glue:text}`photos_within15_pct:.1f` % of the test images (median {glue:text}`photos_median_deg:.1f`°, p90
# {glue:text}`photos_p90_deg:.1f`°). The non-learned brightness-centroid baseline scores
# {glue:text}`photos_centroid_baseline_mae_deg:.1f`°. {glue:md}`ar_memorise_sentence`
#
# **Borders, TTA, abstention.** {glue:md}`ar_border_sentence` {glue:md}`ar_tta_sentence` Keeping only the most
# confident half of the best run's predictions gives {glue:text}`photos_mae_at_50pct_coverage_deg:.1f`° MAE.
#
# **Digits.** The MNIST angle judge averages {glue:text}`mnist_mae_deg:.2f`° (± {glue:text}`mnist_mae_std_over_seeds_deg:.2f`°
# over seeds), which {glue:md}`ar_mnist_verdict` (RotNet's MNIST model: 6–7°). Without 6 and 9 it averages
# {glue:text}`mnist_mae_excl_6_9_deg:.2f`°; 6 alone {glue:text}`mnist_mae_deg_digit6:.1f`°, 9 alone
# {glue:text}`mnist_mae_deg_digit9:.1f`°. Read upside down (more than 135° off): {glue:text}`mnist_flipped_pct_digit6:.1f` %
# of the 6s and {glue:text}`mnist_flipped_pct_digit9:.1f` % of the 9s, against {glue:text}`mnist_flipped_pct_digit4:.1f` %
# of the 4s.
#
# **Not done here.** The seed's other two border strategies (random background, alpha mask) are not
# implemented; reflect vs crop is the comparison the issue requires. Ensembling and ImageNet pretraining
# are options for users with more time or a network (`model.pretrained`), not part of the published run.
#
# {glue:md}`profile_note`
