"""Study 05: checkpoints keyed by the whole run, the headline model named beforehand (never chosen on test),
CIs on the headline numbers, and the training-FLOP count."""
import dataclasses

import pandas as pd
import pytest
import torch

from rotcore import paths, report
from rotcore.config import ConfigError
from rotcore.data import Images, load_mnist, subset
from rotcore.metrics import bootstrap_ci95
from rotcore.studies import invariance as study


@pytest.mark.usefixtures("mnist_available")
def test_a_run_with_other_fit_settings_gets_its_own_checkpoint(runs_dir):
    cfg = report.resolve_config(study, "smoke", {"upright_fit.batch_size": 32})
    data = subset(load_mnist("train"), 64, seed=0)
    kw = dict(val_set=subset(load_mnist("test"), 32, seed=0), progress=False)
    first = study.train("cnn", cfg, "upright", data, **kw)
    longer = dataclasses.replace(cfg, upright_fit=dataclasses.replace(cfg.upright_fit, epochs=2))
    again = study.train("cnn", longer, "upright", data, **kw)  # not refused by the 1-epoch run
    assert again.result.resumed_from_epoch == 0 and len(again.result.history) == 2
    assert again.result.checkpoint != first.result.checkpoint
    # the same settings load the finished run instead of training again
    assert study.train("cnn", cfg, "upright", data, **kw).result.resumed_from_epoch == 1


def test_study_fills_in_the_contract_and_every_profile_names_its_headline_g_cnn():
    report.check_study(study)
    assert set(paths.PROFILES) <= set(study.PROFILES)
    for name, cfg in study.PROFILES.items():
        assert study.is_gcnn(cfg.headline_model), name
        assert cfg.headline_model in cfg.upright_models and cfg.headline_model in cfg.replica_models, name
        assert len(cfg.replica_seeds) >= 2, f"{name}: a CI over seeds needs at least two seeds"
    assert len(study.PROFILES["cpu"].replica_seeds) >= 3
    assert study.PROFILES["gpu"].headline_model == "d16c16"  # the model behind the 0.682 % anchor
    checks = [a for a in study.ANCHORS if a.kind == "check"]
    assert [a.metric for a in checks] == ["invariance_err_rot90_max"]
    assert checks[0].test == "tests/test_models.py::test_quarter_turn_invariance_does_not_depend_on_the_weights"


@pytest.mark.parametrize("overrides, message", [
    ({"headline_model": "cnn_aug"}, "name one G-CNN"),
    ({"headline_model": "nope"}, "name one G-CNN"),
    ({"headline_model": "c16", "upright_models": ["cnn", "c8"]}, "not in upright_models"),
    ({"headline_model": "c16"}, "not in replica_models"),
    ({"replica_models": ["cnn_aug"]}, "not in replica_models"),
    ({"replica_models": ["cnn", "cnn_aug", "c8"]}, "same run twice"),
    ({"eval_precision": "fp16"}, "eval_precision"),
])
def test_bad_headline_configs(overrides, message):
    with pytest.raises(ConfigError, match=message):
        report.resolve_config(study, "smoke", overrides)
    # an empty protocol needs no headline model in it
    assert report.resolve_config(study, "smoke", {"upright_models": []}).upright_models == ()


def _upright_frames(accs: dict[str, list[float]], angles):
    rows = [{"model": study.MODELS[k].label, "angle_deg": a, "label": "all", "acc_pct": v, "n": 4}
            for k, vs in accs.items() for a, v in zip(angles, vs)]
    return pd.DataFrame(rows)


def test_headline_is_the_named_model_even_when_another_has_lower_test_error():
    cfg = report.resolve_config(study, "smoke", {"replica_models": ["cnn_aug", "c8", "c16"],
                                                 "replica_seeds": [0, 1, 2]})
    assert cfg.headline_model == "c8"
    replica_df = pd.DataFrame(
        [{"model": k, "label": study.MODELS[k].label, "seed": s, "test_error_pct": e, "upright_acc_pct": 99.0,
          "rotated_acc_pct": 100 - e, "test_digits": 10_000, "test_digits_total": 50_000, "train_time_s": 1.0}
         for k, errs in {"cnn_aug": [3.0, 3.2, 3.1], "c8": [2.0, 2.4, 2.2], "c16": [1.0, 1.1, 0.9]}.items()
         for s, e in enumerate(errs)])
    # upright protocol: the C16 is right everywhere, the headline C8 on half the (digit, angle) pairs
    y = torch.tensor([0, 1, 2, 3])
    angles = (0.0, 90.0)
    preds = {"c8": torch.tensor([[0, 1, 9, 9], [9, 9, 2, 3]]), "c16": y.expand(2, 4).clone()}
    upright_df = _upright_frames({"c8": [50.0, 50.0], "c16": [100.0, 100.0]}, angles)
    m = study.headline_metrics(cfg, upright_df=upright_df, upright_preds=preds,
                               upright_test=Images(torch.zeros(4, 1, 28, 28), y, torch.zeros(4)),
                               replica_df=replica_df, inv_df=pd.DataFrame(), model_df=pd.DataFrame(),
                               six_nine=pd.DataFrame(columns=["model", "six_as_nine_pct", "nine_as_six_pct"]))
    assert m["headline_model"] == "c8"
    assert m["rotmnist_test_error_pct"] == pytest.approx(2.2) == m["rotmnist_test_error_pct_c8"]
    assert m["rotmnist_test_error_pct_c16"] == pytest.approx(1.0)  # lower, reported, not promoted
    lo, hi = m["rotmnist_test_error_pct_ci95"]
    assert lo < 2.2 < hi and m["rotmnist_test_error_pct_n"] == 3
    assert m["rotmnist_test_error_pct_cnn_aug_ci95"] is not None
    assert m["upright_to_rotated_mean_acc_pct"] == pytest.approx(50.0)
    assert m["upright_to_rotated_mean_acc_pct_c16"] == pytest.approx(100.0)
    assert m["upright_to_rotated_mean_acc_pct_n"] == 4  # clustered by digit image, not by (digit, angle)
    assert set(a.metric for a in study.ANCHORS) <= set(m)  # publish() gets every anchored metric
    assert m["upright_to_rotated_mean_acc_pct_cnn"] is None  # not run: None, not missing
    sentences = study.discussion(m)
    assert sentences["inv_headline_model"] == "C8 G-CNN"
    assert "C16 G-CNN 1.00 %" in sentences["inv_others_sentence"]
    assert m["rotmnist_test_digits"] == 10_000 and "first 10,000 of the replica's 50,000" in sentences[
        "inv_anchor_sentence"]
    assert "best" not in " ".join(sentences.values())


def test_summarize_replica_keeps_the_training_order_and_gives_student_t_intervals():
    df = pd.DataFrame({"model": ["c8", "c8", "cnn_aug", "cnn_aug"], "label": ["C8", "C8", "CNN", "CNN"],
                       "seed": [0, 1, 0, 1], "test_error_pct": [2.0, 3.0, 1.0, 1.0], "upright_acc_pct": 99.0,
                       "rotated_acc_pct": 98.0, "train_time_s": 1.0})
    out = study.summarize_replica(df)
    assert list(out.index) == ["c8", "cnn_aug"]  # not sorted by test error
    assert out.loc["c8", "ci_lo"] < 2.5 < out.loc["c8", "ci_hi"]
    assert out.loc["cnn_aug", "ci_lo"] == out.loc["cnn_aug", "ci_hi"] == 1.0


def test_digit_clustered_bootstrap_equals_the_bootstrap_of_per_digit_means():
    """Every digit is tested at every angle, so resampling digits with all their copies and averaging is
    the same as resampling per-digit mean accuracies (same draws, same interval)."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (300,), generator=gen)
    pred = torch.where(torch.rand(8, 300, generator=gen) < 0.9, y.expand(8, 300), (y + 1) % 10)
    est, (lo, hi), n, _ = study.mean_acc_over_angles_ci95(pred, y, n_boot=500, seed=1)
    per_digit = 100.0 * (pred == y).double().mean(0).numpy()
    ref = bootstrap_ci95(per_digit, n_boot=500, seed=1)
    assert n == 300 and est == pytest.approx(ref[0]) and (lo, hi) == pytest.approx(ref[1])
    naive = bootstrap_ci95(100.0 * (pred == y).double().flatten().numpy(), n_boot=500, seed=1)
    assert naive[2] == 8 * 300  # treating copies as independent would claim 2,400 units


def test_train_flops_counts_each_run_and_the_g_cnn_costs_more_per_image():
    cfg = report.resolve_config(study, "smoke", {"upright_models": ["cnn", "c8"]})
    cnn_img, cnn_step = study.step_flops(study.model_config("cnn", cfg))
    c8_img, c8_step = study.step_flops(study.model_config("c8", cfg))
    assert cnn_img > 0 and cnn_step == 0  # a plain CNN has no per-step filter expansion
    assert c8_img > 3 * cnn_img and c8_step > 0  # escnn expands its filters once per step
    by_model = study.train_flops_by_model(cfg)
    assert set(by_model) == {"cnn", "cnn_aug", "c8"} and study.train_flops(cfg) == pytest.approx(sum(by_model.values()))
    twice = dataclasses.replace(cfg, replica_seeds=cfg.replica_seeds * 2)
    extra = study.train_flops_by_model(twice)["cnn_aug"] - by_model["cnn_aug"]
    assert extra == pytest.approx(by_model["cnn_aug"])  # cnn_aug trains in the replica protocol only
    images = study.train_images(cfg, "replica")
    batches = cfg.replica_train_size // cfg.replica_fit.batch_size
    assert images == cfg.replica_fit.epochs * batches * cfg.replica_fit.batch_size


@pytest.mark.parametrize("aug, aug_ci, expected", [
    (3.0, [2.8, 3.2], "do not overlap: augmentation teaches"),
    (1.6, [1.3, 1.9], "does not tell the two apart"),
    (1.0, [0.9, 1.1], "augmentation alone did better"),
    (3.0, None, "no interval"),
    (None, None, "was not part"),
])
def test_discussion_says_what_the_numbers_say(aug, aug_ci, expected):
    m = {"headline_model": "c8", "rotmnist_test_error_pct": 1.5, "rotmnist_test_error_pct_ci95": [1.4, 1.6],
         "rotmnist_test_error_pct_cnn_aug": aug, "rotmnist_test_error_pct_cnn_aug_ci95": aug_ci}
    assert expected in study.discussion(m)["inv_aug_sentence"]


def test_discussion_claims_exactness_only_at_quarter_turns():
    m = {"headline_model": "c8", "rotmnist_test_error_pct": 1.5, "rotmnist_test_error_pct_ci95": [1.4, 1.6],
         "rotmnist_test_error_pct_cnn_aug": 3.0, "rotmnist_test_error_pct_cnn_aug_ci95": [2.8, 3.2]}
    sentence = study.discussion(m)["inv_aug_sentence"]
    assert "guarantees it" not in sentence and "exact at quarter turns" in sentence


@pytest.mark.parametrize("n, total, says", [(10_000, 50_000, True), (50_000, 50_000, False), (None, None, False)])
def test_anchor_sentence_says_when_the_replica_is_tested_on_part_of_its_test_set(n, total, says):
    sentence = study.discussion({"rotmnist_test_digits": n, "rotmnist_test_digits_total": total})[
        "inv_anchor_sentence"]
    assert ("first 10,000 of the replica's 50,000 test digits" in sentence) is says
    assert "reports 0.682 %" in sentence  # the anchor is always quoted as its source measured it


def test_discussion_of_an_empty_run_makes_no_claim():
    sentences = study.discussion({})
    assert all(isinstance(v, str) for v in sentences.values())
    assert "was not part" in sentences["inv_aug_sentence"] and "was not part" in sentences["inv_cnn_sentence"]


@pytest.mark.parametrize("upright, mean, expected", [(99.0, 40.0, "59.0 points lower"), (12.0, 12.1, "0.1 points higher"),
                                                     (50.0, 50.0, "no lower")])
def test_cnn_sentence_holds_whichever_way_the_numbers_go(upright, mean, expected):
    m = {"upright_acc_pct_cnn": upright, "upright_to_rotated_mean_acc_pct_cnn": mean}
    assert study.discussion(m)["inv_cnn_sentence"].endswith(expected + ".")


class _Identity(torch.nn.Module):
    """Predicts the class from the image itself: class k iff the mean brightness of row k is largest."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, 0, :10, :].mean(-1) + 0 * self.w


def test_blur_control_is_upright_at_quarter_turns_and_keeps_the_rotated_predictions():
    cfg = dataclasses.replace(study.PROFILES["smoke"], test_angles_deg=(0.0, 45.0, 90.0), blur_control_size=7)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(9, 1, 28, 28, generator=g), torch.randint(0, 10, (9,), generator=g)
    model = _Identity()
    upright_pred = model(x).argmax(-1)
    rotated_preds = torch.randint(0, 10, (3, 9), generator=g)  # whatever protocol 1 predicted
    t = study.Trained("cnn", "upright", 0, model, None)
    df = study.evaluate_blur_control([t], Images(x, y), {"cnn": rotated_preds}, cfg)
    back = df[df.input == "rotated by θ and back"].set_index("angle_deg").acc_pct
    upright_acc = 100 * (upright_pred[:7] == y[:7]).double().mean().item()
    assert back[0.0] == pytest.approx(upright_acc) and back[90.0] == pytest.approx(upright_acc)  # rot90 is exact
    rotated = df[df.input == "rotated by θ"].set_index("angle_deg").acc_pct
    for i, a in enumerate(cfg.test_angles_deg):  # the comparison curve is protocol 1's, on the same 7 digits
        assert rotated[a] == pytest.approx(100 * (rotated_preds[i, :7] == y[:7]).double().mean().item())
    m = study.headline_metrics(cfg, upright_df=pd.DataFrame(), upright_preds={}, upright_test=Images(x, y),
                               replica_df=pd.DataFrame(), inv_df=pd.DataFrame(), model_df=pd.DataFrame(),
                               six_nine=pd.DataFrame(), blur_df=df)
    assert m["blur_control_upright_acc_pct_cnn"] == pytest.approx(rotated[0.0])
    assert m["blur_control_mean_acc_pct_cnn"] == pytest.approx(back.mean()) and m["blur_control_digits"] == 7


def test_blur_sentence_splits_the_drop_between_resampling_and_rotation():
    m = {"headline_model": "c8", "blur_control_digits": 2000, "blur_control_upright_acc_pct_cnn": 99.0,
         "blur_control_mean_acc_pct_cnn": 97.0, "blur_control_rotated_mean_acc_pct_cnn": 59.0}
    s = study.discussion(m)["inv_blur_sentence"]
    assert "2.0 points" in s and "40.0 points" in s and "about 5 %" in s and "CNN" in s
    assert study.discussion({"headline_model": "c8"})["inv_blur_sentence"] == ""


def test_bad_blur_control_size_is_refused():
    with pytest.raises(ConfigError, match="blur_control_size"):
        dataclasses.replace(study.PROFILES["smoke"], blur_control_size=0)
