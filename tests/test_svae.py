"""Study 03: hyperspherical VAEs, the escnn encoder's invariance, the guards, and the study's config."""

import dataclasses
import math

import pytest
import torch

from rotcore import report
from rotcore.config import ConfigError
from rotcore.data import binarize
from rotcore.metrics import knn_predict, latent_invariance_error
from rotcore.models.svae import DecoderConfig, EncoderConfig, VAEConfig, build_vae, iw_bound
from rotcore.studies import svae as study
from rotcore.train import FitConfig, NonFiniteLossError, TensorLoader, fit, flop_counter, step_flops

SMALL = dict(decoder=DecoderConfig(channels=(8, 8, 4)))


def small_vae(latent="power_spherical", d=5, group="C1", width=0.08, **kw):
    torch.manual_seed(0)
    return build_vae(VAEConfig(latent=latent, latent_dim=d, encoder=EncoderConfig(group=group, width=width, fc=(16,)),
                               **SMALL, **kw))


@pytest.fixture(scope="module")
def x():
    return torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def escnn_vae():
    return small_vae(group="C8", width=0.1, d=6)


def test_samples_lie_on_the_unit_sphere(x):
    vae = small_vae(d=7)
    q = vae.posterior(x)
    z = q.rsample((50,))
    assert z.shape == (50, 4, 7)
    assert torch.allclose(z.norm(dim=-1), torch.ones(50, 4), atol=1e-5)
    assert torch.allclose(vae(x).norm(dim=-1), torch.ones(4), atol=1e-6)
    # also at the guard's extremes of the concentration
    loc = torch.nn.functional.normalize(torch.randn(3, 7), dim=-1)
    for kappa in (1.0, 1e5):
        z = vae.distribution("power_spherical", loc, torch.full((3,), kappa)).rsample((20,))
        assert torch.isfinite(z).all() and torch.allclose(z.norm(dim=-1), torch.ones(20, 3), atol=1e-5)


@pytest.mark.parametrize("latent, d, scale", [("power_spherical", 2, 3.0), ("power_spherical", 5, 1.0),
                                              ("power_spherical", 16, 40.0), ("gaussian", 5, 0.3)])
def test_kl_to_the_prior_matches_monte_carlo(latent, d, scale):
    vae = small_vae(latent=latent, d=d).double()
    g = torch.Generator().manual_seed(1)
    loc = torch.randn(3, d, generator=g, dtype=torch.float64)
    if latent == "power_spherical":
        loc = torch.nn.functional.normalize(loc, dim=-1)
        sc = torch.full((3,), scale, dtype=torch.float64)
    else:
        sc = torch.full((3, d), scale, dtype=torch.float64)
    q, p = vae.distribution(latent, loc, sc), vae.prior(loc)
    torch.manual_seed(2)
    z = q.sample((40_000,))
    log_ratio = q.log_prob(z) - p.log_prob(z)  # (S, 3)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(len(z))
    analytic = vae.kl(loc, sc)
    assert analytic.shape == (3,) and (analytic > 0).all()
    assert ((analytic - mc).abs() <= 5 * se + 1e-3).all(), (analytic, mc, se)


def test_escnn_code_is_invariant_to_quarter_turns(escnn_vae, x):
    errs = latent_invariance_error(escnn_vae, x, [90, 180, 270], dtype=torch.float64)
    assert max(errs.values()) <= 1e-12, errs  # exact to float64 rounding (target: 1e-5)
    # the whole posterior (concentration too), and therefore the decoded image, ignores quarter turns
    vae = escnn_vae.double().eval()
    try:
        xd = x.double()
        loc, kappa = vae.posterior_params(xd)
        loc90, kappa90 = vae.posterior_params(torch.rot90(xd, 1, dims=(-2, -1)))
        assert torch.allclose(kappa, kappa90, rtol=1e-6) and torch.allclose(loc, loc90, atol=1e-6)
    finally:
        vae.float().train()


def test_escnn_code_is_only_approximately_invariant_at_45(escnn_vae, x):
    err = latent_invariance_error(escnn_vae, x, 45.0)
    assert 0 < err < 2  # bounded (unit vectors), not zero: the pixel grid is not symmetric under 45°


def orbit_vae(angles=(-22.5, 22.5)):
    torch.manual_seed(0)
    return build_vae(VAEConfig(latent_dim=6, encoder=EncoderConfig(group="C8", width=0.1, fc=(16,), orbit_deg=angles),
                               **SMALL))


def test_orbit_pooled_code_is_invariant_to_quarter_turns(x):
    errs = latent_invariance_error(orbit_vae(), x, [90, 180, 270], dtype=torch.float64)
    assert max(errs.values()) <= 1e-12, errs


def test_orbit_pooling_is_the_max_over_per_copy_passes_of_the_same_weights(x, escnn_vae):
    """One joint batch of copies gives, in eval mode, the max over one pass per turned copy through the bare
    encoder's features; the orbit adds no parameters (same seed, same weights as the bare encoder) and changes the
    output (so the test can fail)."""
    from escnn import nn as enn

    from rotcore.models.svae import OrbitPooled
    from rotcore.rotate import rotate_batch

    vae = orbit_vae().eval()
    assert isinstance(vae.encoder, OrbitPooled) and vae.encoder.angles_deg == (-22.5, 22.5)
    bare = escnn_vae.encoder.eval()
    assert [p.shape for p in vae.encoder.gcnn.parameters()] == [p.shape for p in bare.parameters()]
    assert all(torch.equal(p, q) for p, q in zip(vae.encoder.gcnn.parameters(), bare.parameters()))
    g = vae.encoder.gcnn
    with torch.no_grad():
        per_copy = torch.stack([g.invariant_features(g.features(enn.GeometricTensor(rotate_batch(x, a), g.in_type)).tensor)
                                for a in (-22.5, 22.5)]).amax(0)
        assert torch.allclose(vae.encoder(x), g.head(per_copy), atol=1e-5)
        assert not torch.allclose(vae.encoder(x), g(x), atol=1e-3)
    escnn_vae.train()


def test_orbit_configs_raise_clear_errors():
    with pytest.raises(ConfigError, match="equivariant group"):
        EncoderConfig(group="C1", orbit_deg=(-22.5, 22.5))
    with pytest.raises(ConfigError, match="duplicate angles"):
        EncoderConfig(group="C8", orbit_deg=(22.5, 382.5))
    with pytest.raises(ConfigError, match="not a finite number"):
        EncoderConfig(group="C8", orbit_deg=(float("nan"),))
    with pytest.raises(ConfigError, match="not a finite number"):
        EncoderConfig(group="C8", orbit_deg=("22.5",))
    assert EncoderConfig(group="C8", orbit_deg=(-22.5, 22.5)).orbit_deg == (-22.5, 22.5)  # signed angles are kept
    assert not EncoderConfig(group="C8").orbit_deg


def test_plain_code_is_not_invariant(x):
    assert latent_invariance_error(small_vae(d=6), x, 90.0, dtype=torch.float64) > 1e-3


def test_latent_invariance_error_is_the_worst_euclidean_change(x):
    vae = small_vae(latent="gaussian", d=4).eval()
    with torch.no_grad():
        manual = (vae(torch.rot90(x, 1, dims=(-2, -1))) - vae(x)).norm(dim=1).max().item()
    assert latent_invariance_error(vae, x, 90.0) == pytest.approx(manual, rel=1e-6)
    assert vae.training is False


@pytest.mark.parametrize("group", ["C1", "C8"])
def test_the_posterior_starts_concentrated(group):
    """At initialisation, samples of the d = 16 posterior (S^15) lie close to its direction: mean cos(z, μ) >= 0.9
    over a batch of real-looking inputs, for the study's profile settings. (The former softplus(raw) + 1 started
    at κ ≈ 1.7, mean cos ≈ 0.1: samples nearly uniform, a decoder that learns to ignore the code.)"""
    cfg = study.PROFILES["cpu"]
    torch.manual_seed(0)
    vae = build_vae(study.vae_config("sgvae" if group == "C8" else "svae", cfg)).eval()
    xb = binarize(torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.6, seed=0)
    with torch.no_grad():
        loc, kappa = vae.posterior_params(xb)
        z = vae.distribution("power_spherical", loc, kappa).sample((8,))
    assert loc.shape[1] == 16
    assert (z * loc).sum(-1).mean() >= 0.9
    assert kappa.min() > 10


def test_nan_loss_raises_the_promised_error(tmp_path):
    vae = small_vae()
    with torch.no_grad():
        vae.decoder.body[-1].bias.fill_(float("nan"))  # a broken decoder: every logit is NaN
    loader = TensorLoader(torch.rand(16, 1, 28, 28), batch_size=8)
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        fit(vae, study.vae_loss, loader, config=FitConfig(epochs=1, batch_size=8), device="cpu", progress=False)


def test_concentration_guard_keeps_the_loss_finite(x):
    vae = small_vae(d=5, kappa_min=1.0, kappa_init=100.0, kappa_max=1e4)
    head = vae.encoder.head[-1]
    xb = binarize(x, seed=0)
    for bias, expect in ((1e8, 1e4 + 1.0), (-1e8, 1.0)):
        with torch.no_grad():
            head.weight.zero_()
            head.bias.fill_(0.1)
            head.bias[5] = bias  # the concentration's pre-activation
        _, kappa = vae.posterior_params(x)
        assert torch.allclose(kappa, torch.full_like(kappa, expect))
        recon, kl = vae.elbo_terms(xb)
        (recon + kl).mean().backward()
        assert torch.isfinite(recon).all() and torch.isfinite(kl).all()
        assert all(torch.isfinite(p.grad).all() for p in vae.parameters() if p.grad is not None)
        vae.zero_grad()


def test_importance_weighted_bound_identities():
    log_w = torch.randn(7, 5, dtype=torch.float64) * 3
    b = iw_bound(log_w)
    assert (b >= log_w.mean(0) - 1e-12).all()  # Jensen: never below the mean (the ELBO estimate)
    assert torch.equal(iw_bound(log_w[:1]), log_w[0])
    vae = small_vae(d=3).eval()
    lw = vae.log_weights(binarize(torch.rand(2, 1, 28, 28), seed=1), 4)
    assert lw.shape == (4, 2) and torch.isfinite(lw).all() and (lw < 0).all()


def test_knn_predict_agrees_with_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    g = torch.Generator().manual_seed(0)
    ref, query = torch.randn(300, 4, generator=g), torch.randn(100, 4, generator=g)
    for k, classes in ((1, 10), (3, 2)):  # odd k with two classes: no ties to break
        y = torch.randint(0, classes, (300,), generator=g)
        ours = knn_predict(ref, y, query, k=k, batch_size=37)
        theirs = KNeighborsClassifier(n_neighbors=k).fit(ref.numpy(), y.numpy()).predict(query.numpy())
        assert torch.equal(ours, torch.as_tensor(theirs))
    with pytest.raises(ValueError, match="metric"):
        knn_predict(ref, y, query, metric="manhattan")


def test_binarize_is_seeded():
    x = torch.rand(3, 1, 28, 28)
    a, b = binarize(x, seed=5), binarize(x, seed=5)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(a, binarize(x, seed=6))


def test_bad_configs_raise_clear_errors():
    with pytest.raises(ConfigError, match="latent='vmf'"):
        VAEConfig(latent="vmf")
    with pytest.raises(ConfigError, match="latent_dim >= 2"):
        VAEConfig(latent="power_spherical", latent_dim=1)
    with pytest.raises(ConfigError, match="kappa_max"):
        VAEConfig(kappa_min=10.0, kappa_max=5.0)
    with pytest.raises(ConfigError, match="kappa_init"):
        VAEConfig(kappa_init=1e6)
    with pytest.raises(ConfigError, match="dihedral"):
        EncoderConfig(group="D8")
    with pytest.raises(ConfigError, match="group"):
        EncoderConfig(group="SO2")
    with pytest.raises(ConfigError, match="three entries"):
        DecoderConfig(channels=(8, 8))
    with pytest.raises(ConfigError, match="unknown profile"):
        report.resolve_config(study, "huge")
    with pytest.raises(ConfigError, match="unknown override key"):
        report.resolve_config(study, "smoke", {"fit.epoch": 3})
    with pytest.raises(ConfigError, match="plain_encoder.group"):
        report.resolve_config(study, "smoke", {"plain_encoder.group": "C8"})
    with pytest.raises(ConfigError, match="equivariant_encoder.group"):
        report.resolve_config(study, "smoke", {"equivariant_encoder.group": "C1"})
    with pytest.raises(ConfigError, match="knn_k"):
        report.resolve_config(study, "smoke", {"knn_k": 1000})
    with pytest.raises(ConfigError, match="include 0"):
        report.resolve_config(study, "smoke", {"test_angles_deg": [90, 180]})
    with pytest.raises(ConfigError, match="elbo_latents"):
        report.resolve_config(study, "smoke", {"elbo_latents": ["gaussian", "vmf"]})
    cfg = report.resolve_config(study, "smoke", {"latent_dim": 4, "equivariant_encoder.group": "C16"})
    assert study.vae_config("sgvae", cfg).encoder.group == "C16" and study.vae_config("svae", cfg).latent_dim == 4


def test_models_share_the_decoder_design_and_report_parameters():
    cfg = report.resolve_config(study, "smoke")
    a, b = study.vae_config("svae", cfg), study.vae_config("sgvae", cfg)
    assert a.decoder == b.decoder and a.latent == b.latent == "power_spherical"
    table = study.model_table(cfg)
    assert list(table.index) == ["svae", "sgvae", "svae_aug", "sgvae_aug"]
    assert table.loc["sgvae_aug", "parameters"] == table.loc["sgvae", "parameters"]
    assert table.loc["svae", "decoder_params"] == table.loc["sgvae", "decoder_params"]
    assert study.vae_config("svae_aug", cfg) == a  # the baseline is the S-VAE's architecture, only trained otherwise
    assert study.loss_for("svae_aug") is study.vae_aug_loss and study.loss_for("svae") is study.vae_loss
    gpu, cpu = study.PROFILES["gpu"], study.PROFILES["cpu"]
    assert gpu.fit.epochs > cpu.fit.epochs > cfg.fit.epochs
    assert gpu.test_angles_deg == tuple(float(a) for a in range(0, 360, 15))
    assert cpu.elbo_dims == (2,) and 0.0 in cpu.test_angles_deg and cpu.judge_profile == "cpu"
    with pytest.raises(ConfigError, match="cpu"):
        report.resolve_config(study, "full")
    report.check_study(study)


def test_kl_equals_the_packages_kl_to_the_uniform_prior():
    from power_spherical import HypersphericalUniform, PowerSpherical

    from rotcore.models.svae import log_sphere_area

    assert log_sphere_area(3) == pytest.approx(math.log(4 * math.pi))  # the 2-sphere's area is 4π
    for d in (2, 5, 16):
        vae = small_vae(d=d).double()
        loc = torch.nn.functional.normalize(torch.randn(4, d, dtype=torch.float64), dim=-1)
        kappa = torch.tensor([1.0, 3.0, 50.0, 1e4], dtype=torch.float64)
        ref = torch.distributions.kl_divergence(PowerSpherical(loc, kappa), HypersphericalUniform(d, dtype=torch.float64))
        # the package evaluates the area in float32 (its `dim` is an integer tensor), hence the tolerance
        assert torch.allclose(vae.kl(loc, kappa), ref, rtol=1e-6, atol=1e-5)


def test_sgvae_code_is_invariant_to_quarter_turns(x):
    """The check ``latent_invariance_err_rot90``: the study's own S-GVAE (its config, fresh weights) maps a digit
    and its quarter turns to the same code, exactly up to float64 rounding, whatever the weights."""
    cfg = report.resolve_config(study, "smoke")
    torch.manual_seed(0)
    vae = build_vae(study.vae_config("sgvae", cfg))
    errs = latent_invariance_error(vae, x, [90, 180, 270], dtype=torch.float64)
    assert max(errs.values()) <= 1e-12 < study.ANCHORS[-1].threshold, errs
    assert study.ANCHORS[-1].metric == "latent_invariance_err_rot90" and study.ANCHORS[-1].kind == "check"
    assert study.ANCHORS[-1].test.endswith("::test_sgvae_code_is_invariant_to_quarter_turns")


def test_angle_accuracy_ci_resamples_whole_digits():
    import numpy as np

    from rotcore.metrics import bootstrap_ci95

    g = torch.Generator().manual_seed(0)
    correct = torch.rand(5, 40, generator=g) < torch.tensor([0.9, 0.8, 0.6, 0.85, 0.95])[:, None]  # (angles, N)
    est, (lo, hi), n, _ = study.angle_accuracy_ci(correct, "min", n_boot=300)
    assert n == 40 and est == pytest.approx(100 * correct.double().mean(1).min().item()) and lo <= est <= hi
    # the same draws by hand: each resample takes whole digits (all their angles) and recomputes every angle
    c = correct.double().numpy()
    draws = np.random.default_rng(0).integers(0, 40, size=(300, 40))
    manual = [100 * c[:, d].mean(1).min() for d in draws]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(manual, [2.5, 97.5])))
    # mean over angles: the per-digit means' bootstrap is the clustered bootstrap of all readings
    est_m, ci_m, *_ = study.angle_accuracy_ci(correct, "mean", n_boot=300)
    flat = bootstrap_ci95(c.T.ravel(), clusters=np.repeat(np.arange(40), 5), n_boot=300)
    assert est_m == pytest.approx(100 * flat[0]) and ci_m == pytest.approx((100 * flat[1][0], 100 * flat[1][1]))
    # an angle the model always gets wrong is the worst angle in every resample
    always_wrong = correct.clone()
    always_wrong[2] = False
    assert study.angle_accuracy_ci(always_wrong, "min", n_boot=50)[:2] == (0.0, (0.0, 0.0))
    with pytest.raises(ValueError, match="statistic"):
        study.angle_accuracy_ci(correct, "median")


def test_headline_cis_name_every_headline_accuracy():
    from rotcore.data import Images

    y = torch.tensor([6, 6, 9, 9, 1, 2])
    test = Images(torch.zeros(6, 1, 28, 28), y)
    judge = torch.stack([y, torch.tensor([6, 0, 9, 6, 1, 2])])  # angle 0: all right; angle 1: one 6, one 9 wrong
    ev = study.RotatedEval(None, judge, torch.stack([y, y]))
    out = study.headline_cis({"sgvae": ev}, test, n_boot=100)
    assert out["sgvae_six_acc_mean_pct"] == pytest.approx(75.0) and out["sgvae_six_acc_min_pct"] == 50.0
    assert out["sgvae_nine_acc_min_pct_n"] == 2 and len(out["sgvae_nine_acc_min_pct_ci95"]) == 2
    assert out["sgvae_latent_knn_acc_mean_pct"] == 100.0 and out["sgvae_latent_knn_acc_mean_pct_n"] == 6


def test_model_selection_reads_validation_never_test(tmp_path, monkeypatch):
    """The best epoch is chosen on the validation ELBO: with the test split poisoned (NaN), training gives the
    same weights and the same chosen epoch as with the real test split."""
    monkeypatch.setenv("ROTBOOK_RUNS", str(tmp_path))
    cfg = report.resolve_config(study, "smoke", {"train_size": 128, "val_size": 64, "test_size": 16,
                                                 "fit.epochs": 2, "fit.batch_size": 32})
    data = study.load_data(cfg)
    poisoned = study.StudyData(data.train, data.val_bin, study.Images(torch.full_like(data.test.x, float("nan")),
                                                                      data.test.y),
                               torch.full_like(data.test_bin, float("nan")))
    runs = []
    for i, d in enumerate((data, poisoned)):
        monkeypatch.setenv("ROTBOOK_RUNS", str(tmp_path / str(i)))
        runs.append(study.train_vae("svae", "S-VAE", study.vae_config("svae", cfg), cfg.fit, cfg, d, device="cpu",
                                    progress=False))
    a, b = runs
    assert a.result.best_epoch == b.result.best_epoch and math.isfinite(a.result.best_metric)
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_elbo_table_trains_on_the_digits_of_a_smaller_train_size(tmp_path, monkeypatch):
    """``elbo_train_size`` = n trains the ELBO table's VAEs on exactly the digits a ``train_size`` of n picks (so
    its checkpoint's data signature is honest), and leaves the headline VAEs' data alone."""
    monkeypatch.setenv("ROTBOOK_RUNS", str(tmp_path))
    from rotcore.data import mnist_splits

    cfg = report.resolve_config(study, "smoke", {"train_size": 96, "val_size": 32, "test_size": 16,
                                                 "elbo_train_size": 40, "elbo_latents": ["gaussian"],
                                                 "elbo_fit.batch_size": 16})
    data = study.load_data(cfg)
    seen = []
    real_fit = study.fit

    def spy(model, loss_fn, loader, **kw):
        seen.append(loader.tensors[0].clone())
        return real_fit(model, loss_fn, loader, **kw)

    monkeypatch.setattr(study, "fit", spy)
    (t,) = study.train_elbo_models(cfg, data, device="cpu", progress=False)
    assert len(data.train) == 96 and len(seen[0]) == 40
    expected, _, _ = mnist_splits(train_size=40, val_size=32)
    assert torch.equal(seen[0], expected.x)
    assert study.train_flops(cfg) < study.train_flops(dataclasses.replace(cfg, elbo_train_size=None))
    with pytest.raises(ConfigError, match="elbo_train_size"):
        report.resolve_config(study, "smoke", {"elbo_train_size": 0})


def test_train_flops_counts_every_trained_model():
    smoke = report.resolve_config(study, "smoke")
    f = study.train_flops(smoke)
    assert 0 < f < 1e14
    more = report.resolve_config(study, "smoke", {"fit.epochs": 3})
    assert study.train_flops(more) > f  # two more epochs of the two VAEs
    # per image and per step: a plain model's step cost is all per image
    m = build_vae(VAEConfig(encoder=EncoderConfig(group="C1", width=0.08, fc=(16,)), **SMALL))
    per_image, per_step = step_flops(m, lambda mm, xb: study.vae_loss(mm, (xb,))[0],
                                            lambda b: torch.rand(b, 1, 28, 28))
    assert per_image > 0 and per_step == pytest.approx(0, abs=1e-6 * per_image)
    # the totals-only counter counts what torch's own FlopCounterMode counts
    from torch.utils.flop_counter import FlopCounterMode

    xb = torch.rand(3, 1, 28, 28)
    with FlopCounterMode(display=False) as ref:
        study.vae_loss(m, (xb,))[0].backward()
    with flop_counter() as ours:
        study.vae_loss(m, (xb,))[0].backward()
    assert ours.get_total_flops() == ref.get_total_flops() > 0


def _discussion_metrics():
    return {"sgvae_six_acc_min_pct": 96.0, "sgvae_nine_acc_min_pct": 90.0, "sgvae_latent_knn_acc_mean_pct": 97.5,
            "latent_invariance_err_rot90": 2e-7, "sgvae_six_as_nine_max_pct": 3.0, "sgvae_nine_as_six_max_pct": 12.0,
            "sgvae_six_acc_upright_pct": 98.0, "sgvae_nine_acc_upright_pct": 97.0, "sgvae_six_acc_drop_pct": 2.0,
            "sgvae_nine_acc_drop_pct": 7.0, "svae_upright_acc_pct": 95.0, "svae_all_acc_mean_pct": 40.0,
            "sgvae_six_acc_mean_pct": 97.0, "sgvae_nine_acc_mean_pct": 60.0, "svae_six_acc_mean_pct": 24.0,
            "svae_nine_acc_mean_pct": 30.0, "sgvae_latent_invariance_err_rot45": 1.8,
            "sgvae_latent_invariance_err_rot45_mean": 0.1, "iwll_ps_d2": -130.0, "iwll_gauss_d2": -133.0}


def _empty_frames():
    import pandas as pd

    rot = pd.DataFrame(columns=["model", "label", "angle_deg", "judge_acc_pct", "knn_acc_pct"])
    inv = pd.DataFrame(columns=["label", "rot90_max"])
    elbo = pd.DataFrame(columns=["elbo", "iwll", "recon", "kl"])
    judge = pd.DataFrame({"acc_pct": [99.0], "acc_pct_6": [98.0], "acc_pct_9": [97.0]})
    six_nine = pd.DataFrame(columns=["model", "six_as_nine_pct", "nine_as_six_pct"])
    return rot, inv, elbo, elbo, pd.DataFrame(columns=["parameters"]), judge, six_nine


def test_discussion_sentences_follow_the_metrics():
    good = _discussion_metrics()
    s = study.discussion(good)
    assert "style is not always enough" in s["sv_six_nine_answer"] and "12.0 %" in s["sv_six_nine_answer"]
    few = {**good, "sgvae_six_as_nine_max_pct": 2.0, "sgvae_nine_as_six_max_pct": 0.0}
    assert study.discussion(few)["sv_six_nine_answer"].startswith("**Mostly not.** At no angle does the judge read "
                                                                  "more than 2.0 %")
    none = {**few, "sgvae_six_as_nine_max_pct": 0.0}
    assert study.discussion(none)["sv_six_nine_answer"].startswith("**Not these ones.** At no test angle does the "
                                                                   "judge read a single decoded 6 as a 9")
    assert "7.0 points" in s["sv_drop_sentence"] and s["sv_collapse_verdict"].startswith("fails on rotated inputs")
    assert "the collapse check passes it" in s["sv_collapse_verdict"]
    assert "it also fails the collapse check" in study.discussion({**good, "svae_collapsed": True})["sv_collapse_verdict"]
    assert s["sv_elbo_gaps"].startswith("+3.00 nats at d = 2") and "better here too" in s["sv_elbo_sentence"]
    assert "above the seed's 95 % for 6s, below its 66 % for 9s" in s["sv_seed_sentence"]
    assert "level with the seed's 24 % for 6s, above its 28 % for 9s" in s["sv_seed_sentence"]
    assert "a few outlying digits" in s["sv_code_change_sentence"] and "-132.50" in s["sv_paper_sentence"]
    bad = {**good, "sgvae_nine_acc_upright_pct": 10.0, "svae_upright_acc_pct": 20.0, "iwll_ps_d2": -140.0,
           "sgvae_latent_invariance_err_rot45_mean": 1.0}
    s = study.discussion(bad)
    assert s["sv_six_nine_answer"].startswith("**This run cannot say.**")
    assert s["sv_collapse_verdict"].startswith("cannot show") and "**not** better" in s["sv_elbo_sentence"]
    assert "a shift of most codes" in s["sv_code_change_sentence"]
    worse = {**good, **{f"{k}_{d}_acc_mean_pct": 1.0 for k in ("sgvae", "svae") for d in ("six", "nine")}}
    assert "(both below the seed's 95 % and 66 %)" in study.discussion(worse)["sv_seed_sentence"]


def test_anchors_drive_the_verdicts_and_quote_the_seed_as_an_aggregate():
    by = {a.metric: a for a in study.ANCHORS}
    assert by["sgvae_six_acc_min_pct"].anchor is None and by["sgvae_six_acc_min_pct"].threshold == 95.0
    assert by["sgvae_six_acc_min_pct"].verdict(96.0).startswith("meets")
    assert by["sgvae_nine_acc_min_pct"].verdict(90.0).startswith("misses")
    for metric, seed in (("sgvae_six_acc_mean_pct", 95.0), ("sgvae_nine_acc_mean_pct", 66.0),
                         ("svae_six_acc_mean_pct", 24.0), ("svae_nine_acc_mean_pct", 28.0)):
        assert by[metric].anchor == seed and "aggregate" in by[metric].caveat  # mean against the seed's mean
    assert "500" in by["iwll_ps_d2"].caveat and by["iwll_gauss_d2"].anchor == -135.73
    checks = [a for a in study.ANCHORS if a.kind == "check"]
    assert [a.metric for a in checks] == ["latent_invariance_err_rot90"]


def _patched_aug(monkeypatch, angle):
    """vae_aug_loss with every angle ``angle`` and binarisation the identity (inputs already binary), so that
    the only random draw left is the posterior sample."""
    monkeypatch.setattr(study, "random_angles", lambda n, device=None: torch.full((n,), float(angle)))
    monkeypatch.setattr(study, "binarize", lambda t: t)


def test_augmented_loss_rotates_the_input_and_keeps_the_target_upright(monkeypatch, x):
    xb = (x > 0.5).float()
    cfg = report.resolve_config(study, "smoke")
    _patched_aug(monkeypatch, 90.0)
    # an encoder exactly invariant to quarter turns: the augmented loss is the plain loss (same sample), which
    # holds only if the decoder's target is the upright digit
    torch.manual_seed(0)
    sg = build_vae(study.vae_config("sgvae", cfg)).double()
    torch.manual_seed(5)
    aug, aug_parts = study.vae_aug_loss(sg, (xb.double(),))
    torch.manual_seed(5)
    plain, _ = study.vae_loss(sg, (xb.double(),))
    assert aug.item() == pytest.approx(plain.item(), rel=1e-6)
    # a plain encoder is not invariant: its KL is the one of the rotated input's posterior
    vae = small_vae(d=8)
    torch.manual_seed(5)
    aug, aug_parts = study.vae_aug_loss(vae, (xb,))
    kl_rot = vae.kl(*vae.posterior_params(torch.rot90(xb, 1, dims=(-2, -1)))).mean()
    kl_up = vae.kl(*vae.posterior_params(xb)).mean()
    assert aug_parts["kl"].item() == pytest.approx(kl_rot.item(), rel=1e-5)
    assert abs(kl_rot.item() - kl_up.item()) > 1e-4


def test_augmented_loss_draws_one_fresh_angle_per_image(monkeypatch, x):
    seen = []

    def record(n, device=None):
        a = torch.rand(n) * 360
        seen.append(a)
        return a

    monkeypatch.setattr(study, "random_angles", record)
    vae = small_vae(d=4)
    for _ in range(2):
        study.vae_aug_loss(vae, (x,))
    assert [len(a) for a in seen] == [len(x), len(x)] and not torch.equal(seen[0], seen[1])


def test_linear_probe_auc_on_separable_and_on_identical_classes():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    n = 400
    y = torch.arange(n) % 2
    z_sep = torch.randn(n, 5, generator=g)
    z_sep[:, 0] += 6 * (y.double() - 0.5)  # classes 6 standard deviations apart along one axis
    w, b = study.fit_linear_probe(z_sep, y)
    z_test = torch.randn(n, 5, generator=g)
    z_test[:, 0] += 6 * (y.double() - 0.5)
    assert study.auc((z_test.double() @ w + b).numpy(), y.numpy()) > 0.99
    z_same = torch.randn(n, 5, generator=g)  # the labels say nothing about the features
    w, b = study.fit_linear_probe(z_same, y)
    s_same = (torch.randn(4000, 5, generator=g).double() @ w + b).numpy()
    y_same = np.arange(4000) % 2
    assert abs(study.auc(s_same, y_same) - 0.5) < 0.05
    # the AUC is the Mann-Whitney statistic: scikit-learn's, ties included; flipping the scores mirrors it
    s = np.array([0.1, 0.4, 0.4, 0.8, 0.3, 0.9])
    lab = np.array([0, 0, 1, 1, 1, 0])
    assert study.auc(s, lab) == pytest.approx(roc_auc_score(lab, s))
    assert study.auc(-s, lab) == pytest.approx(1 - roc_auc_score(lab, s))
    assert math.isnan(study.auc(s, np.zeros(6)))
    est, (lo, hi), k, _ = study.auc_ci95(s_same, y_same, n_boot=100)
    assert k == 4000 and lo <= est <= hi and hi - lo < 0.1


def test_probe_of_an_invariant_code_is_blind_to_a_half_turn(monkeypatch, tmp_path):
    """The S-GVAE's code of a digit turned by 180° is its upright code, so the probe's AUC is the same at 0° and
    180° whatever the weights; a plain encoder's is not."""
    cfg = report.resolve_config(study, "smoke")
    data = study.load_data(cfg)
    out = {}
    for key in ("sgvae", "svae"):
        torch.manual_seed(0)
        t = study.Trained(key, key, study.vae_config(key, cfg), build_vae(study.vae_config(key, cfg)), None)
        out[key] = study.probe_six_nine(t, data, cfg, n_boot=50)
    assert out["sgvae"][0.0][0] == pytest.approx(out["sgvae"][180.0][0], abs=1e-6)
    assert out["svae"][0.0][0] != pytest.approx(out["svae"][180.0][0], abs=1e-6)
    n = int(((data.test.y == 6) | (data.test.y == 9)).sum())
    assert out["sgvae"][0.0][2] == n


def test_judge_label_table_pools_the_readings_over_angles():
    from rotcore.data import Images

    y = torch.tensor([9, 9, 6, 1])
    test = Images(torch.zeros(4, 1, 28, 28), y)
    judge = torch.tensor([[9, 4, 6, 1], [4, 4, 5, 1], [3, 9, 6, 1]])  # three angles
    ev = study.RotatedEval(None, judge, judge)
    t = study.judge_label_table({"sgvae": ev}, test)
    assert list(t.index) == [("sgvae", 6), ("sgvae", 9)]
    assert t.loc[("sgvae", 9), "4"] == pytest.approx(50.0) and t.loc[("sgvae", 9), "9"] == pytest.approx(100 / 3)
    assert t.loc[("sgvae", 6), [str(c) for c in range(10)]].sum() == pytest.approx(100.0)
    assert study.top_confusion(t, "sgvae", 9) == (4, pytest.approx(50.0))
    assert study.top_confusion(t, "sgvae", 6) == (5, pytest.approx(100 / 3))


def test_invariance_table_reports_the_mean_beside_the_max(x):
    from rotcore.data import Images

    cfg = report.resolve_config(study, "smoke")
    trained = {}
    for key in ("svae", "sgvae"):
        torch.manual_seed(0)
        trained[key] = study.Trained(key, key, None, build_vae(study.vae_config(key, cfg)), None)
    inv = study.invariance_errors(trained, Images(x, torch.zeros(len(x), dtype=torch.long)), cfg)
    assert inv.loc["sgvae", "rot90_max"] <= 1e-12 < inv.loc["svae", "rot90_max"]
    for a in cfg.invariance_angles_deg:
        for key in trained:
            assert 0 <= inv.loc[key, f"rot{a:g}_mean"] <= inv.loc[key, f"rot{a:g}"] + 1e-6
    z0, z45 = trained["svae"].model.eval()(x), trained["svae"].model.eval()(study.rotate_batch(x, 45.0))
    assert inv.loc["svae", "rot45"] == pytest.approx((z45 - z0).norm(dim=1).max().item(), rel=1e-4)
    assert inv.loc["svae", "rot45_mean"] == pytest.approx((z45 - z0).norm(dim=1).mean().item(), rel=1e-4)


def test_short_names_and_new_discussion_sentences():
    m = {"sgvae_six_acc_min_pct": 55.0, "sgvae_six_acc_min_pct_ci95": [50.0, 60.0], "sgvae_six_acc_min_pct_n": 300,
         "sgvae_nine_acc_min_pct": 20.0, "sgvae_six_acc_mean_pct": 80.0, "sgvae_nine_acc_mean_pct": 40.0,
         "svae_aug_six_acc_mean_pct": 70.0, "svae_aug_nine_acc_mean_pct": 50.0, "svae_aug_six_acc_min_pct": 60.0,
         "svae_aug_nine_acc_min_pct": 30.0, "sgvae_latent_knn_acc_mean_pct": 90.0}
    short = study.short_names(m)
    assert short["sgvae_acc6_min_pct"] == 55.0 and short["sgvae_acc6_min_pct_ci95"] == [50.0, 60.0]
    assert short["sgvae_acc9_mean_pct"] == 40.0 and short["svae_aug_acc9_min_pct"] == 30.0
    assert short["knn5_acc_mean_pct"] == 90.0 and "svae_acc6_mean_pct" not in short
    # like with like: the augmented escnn model against the augmented plain one, and against its upright twin
    rename = {k.replace("sgvae_", "sgvae_aug_", 1): v for k, v in m.items() if k.startswith("sgvae_")}
    m_aug = {**m, **rename}
    assert "neither is ahead" in study.aug_sentence(m_aug)  # ahead on one count (6s on average), behind on three
    # ahead on three counts and level on the fourth: said so, not "neither is ahead" (the published S-GVAE vs aug)
    level = {**m_aug, "svae_aug_six_acc_mean_pct": 10.0, "svae_aug_nine_acc_mean_pct": 10.0,
             "svae_aug_six_acc_min_pct": 5.0, "svae_aug_nine_acc_min_pct": m_aug["sgvae_aug_nine_acc_min_pct"]}
    text = study.aug_sentence(level)
    assert "the S-GVAE-aug is ahead or level on every count: ahead on 3 of the four, level on the other 1" in text
    assert "neither" not in text
    behind = {**level, **{f"svae_aug_{d}_acc_{st}_pct": 99.0 for d in ("six", "nine") for st in ("mean", "min")
                          if (d, st) != ("nine", "min")}}
    assert "the S-VAE-aug is ahead or level on every count: ahead on 3" in study.aug_sentence(behind)
    ahead = {**m_aug, "svae_aug_six_acc_mean_pct": 10.0, "svae_aug_nine_acc_mean_pct": 10.0,
             "svae_aug_six_acc_min_pct": 5.0, "svae_aug_nine_acc_min_pct": 5.0}
    assert "the S-GVAE-aug is ahead" in study.aug_sentence(ahead)
    assert "no rotation-augmented" in study.aug_sentence({})
    tie = {**m_aug, **{f"svae_aug_{d}_acc_{s}_pct": m_aug[f"sgvae_aug_{d}_acc_{s}_pct"] for d in ("six", "nine")
                       for s in ("mean", "min")}}
    assert "tie" in study.aug_sentence(tie)
    assert "against upright training (S-GVAE)" in study.aug_sentence(tie)
    orbit = study.orbit_text(study.PROFILES["cpu"])
    assert orbit == "−22.5°/+22.5°" and study.orbit_text(dataclasses.replace(study.PROFILES["cpu"],
                                                                             sgvae_orbit_deg=())) == ""
    assert f"upright training with orbit pooling over {orbit} (S-GVAE)" in study.aug_sentence(
        {**tie, "sgvae_orbit_deg": orbit})
    collapsed = {**ahead, "svae_aug_collapsed": True}
    assert "not compared, because the S-VAE-aug has collapsed" in study.aug_sentence(collapsed)
    p = {"probe_auc_69_upright": 0.97, "probe_auc_69_rot180": 0.97, "svae_probe_auc_69_upright": 0.99,
         "svae_probe_auc_69_rot180": 0.02}
    s = study.probe_sentence(p)
    assert "as invariance forces" in s and "almost all" in s and "below chance" in s
    assert "not exactly invariant" in study.probe_sentence({**p, "probe_auc_69_rot180": 0.9})
    c = {"sgvae_nine_top_confusion": 4, "sgvae_nine_top_confusion_pct": 12.5, "sgvae_six_top_confusion": 5,
         "sgvae_six_top_confusion_pct": 3.0}
    assert "**4** (12.5 %" in study.confusion_sentence(c) and "as the seed reported" in study.confusion_sentence(c)
    assert "not the 4s or 3s" in study.confusion_sentence({**c, "sgvae_nine_top_confusion": 7})


def test_binarised_control_feeds_binary_rotated_sixes_and_nines(monkeypatch):
    cfg = report.resolve_config(study, "smoke")
    data = study.load_data(cfg)
    torch.manual_seed(0)
    vae = build_vae(study.vae_config("svae", cfg))
    seen = []
    orig = vae.posterior_params
    monkeypatch.setattr(vae, "posterior_params", lambda b: (seen.append(b.detach().clone()), orig(b))[1])
    judge = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    df = study.evaluate_binarised_six_nine(study.Trained("svae", "S-VAE", None, vae, None), judge, data, cfg)
    n69 = int(((data.test.y == 6) | (data.test.y == 9)).sum())
    assert sum(len(b) for b in seen) == n69 * len(cfg.test_angles_deg)
    assert all(((b == 0) | (b == 1)).all() for b in seen)  # binarised after rotating, like the training inputs
    assert sorted(set(df.label)) == ["6", "9"] and len(df) == 2 * len(cfg.test_angles_deg)
    assert (df.inputs == "binarised").all() and df.n.sum() == n69 * len(cfg.test_angles_deg)
    # an escnn encoder reads one angle per class modulo 90° and copies it: what reading every angle gives
    torch.manual_seed(0)
    judge[1].weight.data.normal_()
    evae = build_vae(study.vae_config("sgvae", cfg))
    orig, seen = evae.posterior_params, []
    monkeypatch.setattr(evae, "posterior_params", lambda b: (seen.append(len(b)), orig(b))[1])
    t = study.Trained("sgvae", "S-GVAE", None, evae, None)
    fast = study.evaluate_binarised_six_nine(t, judge, data, cfg)
    n_fast = sum(seen)
    full = study.evaluate_binarised_six_nine(t, judge, data, cfg, reuse_quarter_turns=False)
    assert fast.equals(full)
    classes = {study.quarter_turn_class(a) for a in cfg.test_angles_deg}
    assert n_fast == n69 * len(classes) < sum(seen) - n_fast == n69 * len(cfg.test_angles_deg)
    m = {f"sgvae_{d}_acc_{s}{b}_pct": 50.0 for d in ("six", "nine") for s in ("mean", "min") for b in ("", "_bin")}
    ci = {f"sgvae_{d}_acc_{s}_pct_ci95": [45.0, 55.0] for d in ("six", "nine") for s in ("mean", "min")}
    assert "no interval" in study.binarised_sentence(m)
    within = {**m, **ci, "sgvae_nine_acc_min_bin_pct": 42.0}  # moves by 8 points, under the 10-point width
    assert "no more than the width of its 95 % interval" in study.binarised_sentence(within)
    assert "no effect beyond that noise" in study.binarised_sentence(within)
    beyond = {**m, **ci, "sgvae_nine_acc_min_bin_pct": 30.0}
    assert "matters, 1 of the 4 numbers" in study.binarised_sentence(beyond)
    assert "up to 20.0 points, against 10.0" in study.binarised_sentence(beyond)
    # like with like: with two seeds, the control (first seed's model) is set beside the first seed's numbers
    seeds = {**beyond, "sgvae_n_seeds": 2, **{f"sgvae_{d}_acc_{s}_pct_seed0": 32.0 for d in ("six", "nine")
                                                for s in ("mean", "min")}}
    text = study.binarised_sentence(seeds)
    assert "first training seed's S-GVAE" in text and "against 32.0 % (32.0 %) and 32.0 % (32.0 %) on grayscale" in text
    assert "did not record" in study.binarised_sentence({**beyond, "sgvae_n_seeds": 2})


def test_mode_label_table_and_the_collapse_sentence():
    healthy = study.RotatedEval(None, torch.arange(10).repeat(2, 3), None)  # every label equally often
    collapsed = study.RotatedEval(None, torch.tensor([[1, 1, 1, 7], [1, 1, 2, 1]]), None)
    t = study.mode_label_table({"sgvae": healthy, "svae_aug": collapsed})
    assert t.loc["sgvae", "mode_pct"] == pytest.approx(10.0)
    assert t.loc["svae_aug", "mode_label"] == 1 and t.loc["svae_aug", "mode_pct"] == pytest.approx(75.0)
    m = {"sgvae_mode_label": 0, "sgvae_mode_label_pct": 10.0, "svae_aug_mode_label": 1,
         "svae_aug_mode_label_pct": 75.0, "kl_sgvae": 8.3, "kl_svae_aug": 4.1}
    s = study.collapse_sentence(m)
    assert "The S-VAE-aug has collapsed.**" in s and "75.0 %" in s and "as a 1" in s
    assert "4.1 nats" in s and "S-GVAE: 8.3 nats" in s and "S-GVAE has" not in s
    fine = {**m, "svae_aug_mode_label_pct": 30.0}
    assert study.collapse_sentence(fine).startswith("No VAE has collapsed") and "30.0 %" in study.collapse_sentence(fine)
    # spread labels but one digit never drawn right: failed, said as such, not as "collapsed to one label"
    digit = {**fine, "svae_aug_collapsed": True, "svae_aug_worst_digit": 6, "svae_aug_worst_digit_acc_pct": 0.0,
             "sgvae_collapsed": False, "sgvae_worst_digit": 9, "sgvae_worst_digit_acc_pct": 93.0}
    s = study.collapse_sentence(digit)
    assert "The S-VAE-aug fails its task on one digit.**" in s and "reads none of its decoded upright 6s" in s
    several = {**digit, "svae_aug_n_failed_digits": 4, "svae_aug_failed_digits": "4, 5, 6, 9",
               "svae_aug_upright_decode_acc_pct": 55.8}
    s4 = study.collapse_sentence(several)
    assert "fails its task on 4 digits.**" in s4 and "(4s, 5s, 6s and 9s)" in s4 and "on one digit" not in s4
    assert "55.8 % of all its upright decodes" in s4 and "reads none of its decoded upright 6s" in s4
    assert "on one digit" in study.collapse_sentence({**several, "svae_aug_n_failed_digits": 1,
                                                      "svae_aug_failed_digits": "6"})
    assert "has collapsed" not in s
    some = {**digit, "svae_aug_worst_digit_acc_pct": 12.5}
    assert "reads only 12.5 % of its decoded upright 6s" in study.collapse_sentence(some)
    ok = {**digit, "svae_aug_collapsed": False, "svae_aug_worst_digit_acc_pct": 80.0}
    assert "lowest share of one digit's upright decodes read right is 80.0 %" in study.collapse_sentence(ok)
    assert study.collapse_sentence({}) == ""


def test_gap_sentence_names_the_limit():
    low = {"sgvae_six_acc_upright_pct": 95.0, "sgvae_nine_acc_upright_pct": 71.3}
    assert "even **upright**" in study.gap_sentence(low) and "only 71.3 % of the S-GVAE's decoded 9s" in study.gap_sentence(low)
    assert "6s" not in study.gap_sentence(low)
    high = {"sgvae_six_acc_upright_pct": 99.0, "sgvae_nine_acc_upright_pct": 98.0}
    assert "lost with the rotation" in study.gap_sentence(high) and "first limit" not in study.gap_sentence(low)
    assert "does not measure" in study.gap_sentence(low)
    assert study.gap_sentence({}) == ""


def test_upright_subset_sentence_says_when_the_subset_flatters_the_worst_angle():
    m = {"sgvae_aug_six_acc_upright_pct": 93.6, "sgvae_aug_six_acc_upright_pct_n": 958,
         "sgvae_aug_six_acc_min_pct": 93.8, "sgvae_aug_six_acc_min_pct_n": 48,
         "sgvae_aug_nine_acc_upright_pct": 90.4, "sgvae_aug_nine_acc_upright_pct_n": 1009,
         "sgvae_aug_nine_acc_min_pct": 93.2, "sgvae_aug_nine_acc_min_pct_n": 44}
    s = study.upright_subset_sentence(m)
    assert s.startswith("Upright, on 958 test 6s and 1,009 test 9s (the upright readings' digits, not the evaluation "
                        "subset), the S-GVAE-aug reads 93.6 % and 90.4 % right.")
    assert "upright 6s there read **below** its worst angle on the 48-digit evaluation subset (93.8 %)" in s
    assert "over those 9s its worst angle is at most 90.4 %, 4.6 points or more short of the 95 % target." in s
    # upright above the subset's minimum: nothing to flag
    fine = {**m, "sgvae_aug_six_acc_upright_pct": 97.0, "sgvae_aug_nine_acc_upright_pct": 96.0}
    assert "below" not in study.upright_subset_sentence(fine) and "97.0 % and 96.0 %" in study.upright_subset_sentence(fine)
    # below the subset's minimum but above the target: flagged, no shortfall claimed
    above = {**fine, "sgvae_aug_nine_acc_min_pct": 97.5}
    assert study.upright_subset_sentence(above).endswith("its worst angle is at most 96.0 %.")
    assert study.upright_subset_sentence({}) == ""

    # its target comes from the study's anchor, looked up through rotcore.report.anchor (a clear KeyError)
    assert report.anchor(study, "sgvae_aug_nine_acc_min_pct") is study._anchor("sgvae_aug_nine_acc_min_pct")
    with pytest.raises(KeyError, match="03_gcnn_hyperspherical_vae has no anchor 'sgvae_nine'"):
        study._anchor("sgvae_nine")


class _StubVAE(torch.nn.Module):
    """Decodes to ``out(x)``; a fixed KL per image (what collapse_table reads from evaluate_elbo)."""

    def __init__(self, out, kl, d=4):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.out, self.kl_value, self.config = out, kl, VAEConfig(latent_dim=d)

    def forward(self, x):
        return x.flatten(1)[:, :4]

    def reconstruct(self, x):
        return self.out(x)

    def elbo_terms(self, x):
        return torch.zeros(len(x)), torch.full((len(x),), self.kl_value)


class _DecodingStubVAE(_StubVAE):
    """A :class:`_StubVAE` whose code is the image itself and whose decoder draws ``out(code)``, as the study's
    readings decode a code (``sigmoid(decode(z))``, :func:`judge_decoded`)."""

    def forward(self, x):
        return x

    def decode(self, z):
        return torch.logit(self.out(z).clamp(1e-6, 1 - 1e-6))


class _PixelJudge(torch.nn.Module):
    """Reads the label a test image encodes in its first pixel (label / 10)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.nn.functional.one_hot((x[:, 0, 0, 0] * 10).round().long().clamp(0, 9), 10).float()


def _collapse_fixture():
    """Forty digit stand-ins (pixel (0, 0) holds label / 10, read back by :class:`_PixelJudge`), the smoke config
    reading all of them, a VAE that rebuilds its input (KL 8) and one that always draws a 1 (KL 0.2)."""
    y = torch.arange(40) % 10
    x = torch.zeros(40, 1, 28, 28)
    x[:, 0, 0, 0] = y / 10
    data = study.StudyData(None, None, study.Images(x, y), (x > 0.5).float())
    cfg = dataclasses.replace(study.PROFILES["smoke"], collapse_test_size=40)
    ones = torch.zeros(1, 1, 28, 28)
    ones[0, 0, 0, 0] = 0.1
    return data, cfg, _DecodingStubVAE(lambda b: b, 8.0), _DecodingStubVAE(lambda b: ones.expand(len(b), -1, -1, -1), 0.2)


def test_collapse_table_flags_a_decoder_that_draws_one_digit():
    data, cfg, good, bad = _collapse_fixture()
    trained = [study.Trained("good", "good", good.config, good, None),
               study.Trained("bad", "bad", bad.config, bad, None)]
    t = study.collapse_table(trained, _PixelJudge(), data, cfg)
    assert not t.loc["good", "collapsed"] and t.loc["good", "upright_decode_acc_pct"] == 100.0
    assert t.loc["good", "mode_pct"] == pytest.approx(10.0) and t.loc["good", "kl_per_dim"] == pytest.approx(2.0)
    assert t.loc["bad", "collapsed"] and t.loc["bad", "mode_label"] == 1 and t.loc["bad", "mode_pct"] == 100.0
    # never draws a 6 (draws a 0 instead): spread labels (mode 20 %) and 90 % right overall, but its worst digit
    # is read right 0 % of the time, so it fails the per-digit floor
    no_six = _DecodingStubVAE(lambda b: torch.where((b[:, :1, :1, :1] - 0.6).abs() < 1e-6, torch.zeros_like(b), b), 8.0)
    trained.append(study.Trained("no_six", "no six", no_six.config, no_six, None))
    t = study.collapse_table(trained, _PixelJudge(), data, cfg)
    assert t.loc["no_six", "upright_decode_acc_pct"] == pytest.approx(90.0) and t.loc["no_six", "mode_pct"] == 20.0
    assert t.loc["no_six", "worst_digit"] == 6 and t.loc["no_six", "worst_digit_acc_pct"] == 0.0
    assert t.loc["no_six", "collapsed"] and t.loc["good", "worst_digit_acc_pct"] == 100.0
    m = study.headline_metrics(*_empty_frames(), collapse_df=t)
    assert m["bad_collapsed"] is True and m["good_collapsed"] is False and m["no_six_collapsed"] is True
    assert m["no_six_worst_digit"] == 6 and m["no_six_worst_digit_acc_pct"] == 0.0
    # a model trained with several seeds: one row per seed; the model counts as collapsed if any seed did, and
    # its worst digit is the worst over its seeds (the row names are not parsed: "good_seed" is another model)
    trained += [study.Trained("good", "good", no_six.config, no_six, None, seed=1, replicate=True),
                study.Trained("good_seed", "good seed", bad.config, bad, None)]
    t = study.collapse_table(trained, _PixelJudge(), data, cfg)
    assert t.loc["good_seed1", "key"] == "good" and t.loc["good_seed1", "seed"] == 1
    m = study.headline_metrics(*_empty_frames(), collapse_df=t)
    assert m["good_collapsed"] is True and m["good_seed1_collapsed"] is True and m["good_worst_digit"] == 6
    assert m["good_seed_collapsed"] is True and m["good_worst_digit_acc_pct"] == 0.0
    # a collapsed model is not compared: the ELBO sentence and the like-with-like comparison say so
    elbo = {"ps_d2_collapsed": True, "gauss_d2_collapsed": False, "iwll_ps_d2": -140.0, "iwll_gauss_d2": -139.0}
    assert "not compared" in study.discussion({**_discussion_metrics(), **elbo})["sv_elbo_sentence"]


def test_angle_class_table_groups_angles_modulo_a_quarter_turn():
    import pandas as pd

    rows = []
    for a in range(0, 360, 45):
        for label, acc in (("6", 90.0 if a % 90 == 0 else 60.0 + a / 45), ("9", 80.0), ("all", 85.0)):
            rows.append({"model": "S-GVAE", "angle_deg": float(a), "label": label, "judge_acc_pct": acc})
    t = study.angle_class_table(pd.DataFrame(rows))
    assert t.loc[("S-GVAE", 0.0), ("mean", "6")] == 90.0 and t.loc[("S-GVAE", 0.0), ("spread", "6")] == 0.0
    assert t.loc[("S-GVAE", 45.0), ("mean", "6")] == pytest.approx(60.0 + 4.0)  # 45, 135, 225, 315 -> 1, 3, 5, 7
    assert t.loc[("S-GVAE", 45.0), ("spread", "6")] == pytest.approx(6.0)


def test_the_cpu_profile_tests_every_15_degrees_with_45_and_trains_four_models():
    cfg = study.PROFILES["cpu"]
    assert 45.0 in cfg.test_angles_deg and all(a % 15 == 0 for a in cfg.test_angles_deg) and len(cfg.test_angles_deg) == 24
    assert set(study.MODEL_LABELS) == {"svae", "sgvae", "svae_aug", "sgvae_aug"}
    assert study.vae_config("sgvae_aug", cfg).encoder == cfg.equivariant_encoder
    assert study.loss_for("sgvae_aug") is study.vae_aug_loss and study.loss_for("sgvae") is study.vae_loss


def test_the_upright_judge_is_resized_per_study_without_changing_the_shared_profile():
    from rotcore import judges

    shared = judges.UPRIGHT_JUDGE_PROFILES["cpu"]
    jc = study.PROFILES["cpu"].judge_config()
    assert (jc.train_size, jc.fit.epochs) == (study.PROFILES["cpu"].judge_train_size, study.PROFILES["cpu"].judge_epochs)
    assert jc.model == shared.model and jc.fit.lr == shared.fit.lr and not jc.rotated
    assert study.PROFILES["smoke"].judge_config() == judges.UPRIGHT_JUDGE_PROFILES["smoke"]
    with pytest.raises(ConfigError, match="judge_epochs"):
        dataclasses.replace(study.PROFILES["smoke"], judge_epochs=0)


def test_quarter_turn_reuse_reads_what_encoding_every_angle_reads(monkeypatch):
    """For the escnn encoder, :func:`evaluate_rotated` encodes one angle per class modulo 90° and copies its
    readings to the other three: the same judge and k-NN readings as encoding every angle, at a quarter of the
    encodings. The plain encoder is not invariant, so by default it encodes every angle."""
    cfg = dataclasses.replace(report.resolve_config(study, "smoke"), test_size=64)
    data = study.load_data(cfg)
    judge = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    torch.manual_seed(0)
    judge[1].weight.data.normal_()
    for key in ("sgvae", "svae"):
        torch.manual_seed(0)
        vae = build_vae(study.vae_config(key, cfg))
        seen = []
        orig = vae.posterior_params
        monkeypatch.setattr(vae, "posterior_params", lambda b, seen=seen, orig=orig: (seen.append(len(b)), orig(b))[1])
        t = study.Trained(key, key, study.vae_config(key, cfg), vae, None)
        ref = len(seen)
        fast = study.evaluate_rotated(t, judge, data, cfg)
        n_fast = len(seen)
        full = study.evaluate_rotated(t, judge, data, cfg, reuse_quarter_turns=False)
        classes = {study.quarter_turn_class(a) for a in cfg.test_angles_deg}
        if key == "sgvae":
            assert torch.equal(fast.judge_pred, full.judge_pred)
            assert torch.equal(fast.knn_pred, full.knn_pred)
            assert fast.df.drop(columns="model").equals(full.df.drop(columns="model"))
            assert sum(seen[ref:n_fast]) < sum(seen[n_fast:])  # fewer digits encoded
            assert len(classes) < len(cfg.test_angles_deg)
        else:
            assert sum(seen[ref:n_fast]) == sum(seen[n_fast:])
    assert study.quarter_turn_class(375.0) == study.quarter_turn_class(15.0) == 15.0
    assert study.quarter_turn_class(-90.0) == study.quarter_turn_class(270.0) == 0.0


def test_reading_in_fp32_is_reconstruct_then_judge_and_the_code_is_always_fp32(monkeypatch):
    """``judge_reconstructions`` at ``precision="fp32"`` is the plain path (``VAE.reconstruct``, then the judge's
    argmax); at any precision the code is computed outside autocast (fp32), so the quarter-turn reuse of the
    escnn models is unaffected; at the page's ``READ_PRECISION`` the labels are a deterministic function of the
    codes."""
    cfg = report.resolve_config(study, "smoke")
    x = torch.rand(48, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    judge = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    torch.manual_seed(0)
    vae = build_vae(study.vae_config("sgvae", cfg)).eval()
    plain = judge(vae.reconstruct(x)).argmax(-1)
    assert torch.equal(study.judge_reconstructions(vae, judge, x, precision="fp32"), plain)
    dtypes = []
    orig = vae.posterior_params
    monkeypatch.setattr(vae, "posterior_params",
                        lambda b: (dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                                                 else torch.float32), orig(b))[1])
    a = study.judge_reconstructions(vae, judge, x, precision="bf16")
    assert dtypes and all(d == torch.float32 for d in dtypes)
    assert torch.equal(a, study.judge_reconstructions(vae, judge, x, precision="bf16"))
    assert torch.equal(study.judge_decoded(vae, judge, vae(x), precision="bf16"), a)


def test_upright_six_nine_reads_what_the_rotated_evaluation_reads_at_0(monkeypatch):
    """On the same digits, :func:`upright_six_nine` gives the 0° accuracy of :func:`evaluate_rotated` for 6s and
    9s, with an interval inside [0, 100] over the digits it read."""
    import rotcore.data

    cfg = dataclasses.replace(report.resolve_config(study, "smoke"), test_size=300, upright_six_nine_size=None)
    data = study.load_data(cfg)
    monkeypatch.setattr(rotcore.data, "load_mnist", lambda split="test", **kw: data.test)
    torch.manual_seed(0)
    vae = build_vae(study.vae_config("sgvae", cfg))
    t = study.Trained("sgvae", "S-GVAE", study.vae_config("sgvae", cfg), vae, None)
    # a judge that reads "6" or "9" from a random projection of the decoded image, split between two of the
    # 6s' order statistics (about half the 6s read "6"; no digit sits on the threshold)
    direction = torch.randn(784, generator=torch.Generator().manual_seed(2))
    vae.eval()  # as predict() runs it
    vae.decoder.fc.weight.data.mul_(100.0)  # a random decoder draws every code alike: make the codes show
    with torch.no_grad():
        scores = torch.sigmoid(vae.decode(vae(data.test.x))).flatten(1) @ direction
    six = scores[data.test.y == 6].sort().values
    k = len(six) // 2
    assert six[k] - six[k - 1] > 1e-5, "the random VAE decodes the 6s too alike for this test"
    threshold = float(six[k - 1] + six[k]) / 2

    class ProjectionJudge(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # predict() reads the device from a parameter

        def forward(self, x):
            v = x.flatten(1) @ direction - threshold
            return torch.zeros(len(x), 10).index_copy(1, torch.tensor([6, 9]), torch.stack([v, -v], 1))

    judge = ProjectionJudge()
    ev = study.evaluate_rotated(t, judge, data, cfg)
    up = study.upright_six_nine({"sgvae": t}, judge, cfg, n_boot=100)
    at0 = ev.df[ev.df.angle_deg == 0].set_index("label").judge_acc_pct
    for digit, name in ((6, "six"), (9, "nine")):
        assert up[f"sgvae_{name}_acc_upright_pct"] == pytest.approx(at0[str(digit)])
        assert up[f"sgvae_{name}_acc_upright_pct_n"] == int((data.test.y == digit).sum())
        lo, hi = up[f"sgvae_{name}_acc_upright_pct_ci95"]
        assert 0.0 <= lo <= up[f"sgvae_{name}_acc_upright_pct"] <= hi <= 100.0
    assert 5.0 < up["sgvae_six_acc_upright_pct"] < 95.0  # readings that could differ between the two paths
    with pytest.raises(ConfigError, match="upright_six_nine_size"):
        dataclasses.replace(cfg, upright_six_nine_size=0)


def test_angle_accuracy_ci_over_seeds_resamples_seeds_and_digits():
    """Several training seeds of one model: the estimate is the statistic of the seed-averaged per-angle accuracy,
    and the interval resamples the seeds too. One seed gives exactly the one-model interval; two seeds that
    disagree completely give an interval that spans both; two identical seeds keep the estimate."""
    import numpy as np

    g = torch.Generator().manual_seed(0)
    correct = torch.rand(5, 60, generator=g) < torch.tensor([0.9, 0.8, 0.6, 0.85, 0.95])[:, None]  # (angles, N)
    for stat in ("mean", "min"):
        assert study.angle_accuracy_ci(correct[None], stat, n_boot=200) == study.angle_accuracy_ci(correct, stat,
                                                                                                   n_boot=200)
    # seed 0 reads every digit right, seed 1 none: the pooled estimate is 50 %, and a quarter of the resamples
    # draw seed 0 twice (100 %), a quarter seed 1 twice (0 %)
    split = torch.stack([torch.ones(5, 60, dtype=torch.bool), torch.zeros(5, 60, dtype=torch.bool)])
    for stat in ("mean", "min"):
        est, (lo, hi), n, method = study.angle_accuracy_ci(split, stat, n_boot=400)
        assert est == 50.0 and (lo, hi) == (0.0, 100.0) and n == 60
        assert "2 training seeds and 60 digits" in method
    # two seeds that read alike: the same estimate, an interval of about the one-seed width
    twin = torch.stack([correct, correct])
    for stat in ("mean", "min"):
        one, two = study.angle_accuracy_ci(correct, stat, n_boot=400), study.angle_accuracy_ci(twin, stat, n_boot=400)
        assert two.estimate == pytest.approx(one.estimate)
        assert two.ci[1] - two.ci[0] == pytest.approx(one.ci[1] - one.ci[0], abs=4.0)
        assert 0.0 <= two.ci[0] <= two.estimate <= two.ci[1] <= 100.0
    # the worst angle of the seed-averaged accuracy, not the mean of each seed's worst angle
    # (seeds, angles, N): seed 0 reads every digit wrong at angle 1, seed 1 every digit wrong at angle 0; each
    # seed's worst angle is 0 %, the seed-averaged accuracy is 50 % at both angles
    c = torch.tensor([[True, False], [False, True]])[:, :, None].expand(2, 2, 10)
    assert study.angle_accuracy_ci(c, "min", n_boot=50).estimate == 50.0
    assert np.isclose(study.angle_accuracy_ci(c, "mean", n_boot=50).estimate, 50.0)
    with pytest.raises(ValueError, match="seeds, angles, N"):
        study.angle_accuracy_ci(torch.ones(2, 3, 4, 5, dtype=torch.bool))


def test_seeds_are_pooled_in_the_tables_and_resampled_in_the_headline_intervals():
    """:func:`evaluate_rotated_seeds` lays two seeds' readings side by side: the per-angle accuracies are their
    mean, the 6/9 confusion and label tables pool them, each seed stays visible apart, and the headline
    intervals resample seeds (a seed that reads every 6 wrong widens the interval to include it)."""
    from rotcore.data import Images

    y = torch.tensor([6, 6, 9, 9, 1, 2])
    test = Images(torch.zeros(6, 1, 28, 28), y)
    right = torch.stack([y, y])  # (angles, N): both angles read right
    sixes_as_nine = torch.stack([torch.where(y == 6, 9, y)] * 2)  # another seed: every 6 read as 9
    one, other = (study.rotated_eval(p, right, y, (0.0, 90.0), "S-GVAE") for p in (right, sixes_as_nine))
    ev = study.pool_seeds([one, other], y, (0.0, 90.0))
    assert ev.n_seeds == 2 and ev.seeds == (one, other) and study.pool_seeds([one], y, (0.0, 90.0)) is one
    assert torch.equal(ev.judge_pred, torch.cat([right, sixes_as_nine], 1))
    assert torch.equal(ev.labels(y), torch.cat([y, y])) and ev.per_seed(ev.judge_pred).shape == (2, 2, 6)
    # the pooled accuracies are the seeds' mean, and count test digits, not readings
    six = ev.df[ev.df.label == "6"]
    assert six.judge_acc_pct.tolist() == [50.0, 50.0] and six.n.tolist() == [2, 2] and set(ev.df.model) == {"S-GVAE"}
    out = study.headline_cis({"sgvae": ev}, test, n_boot=400)
    assert out["sgvae_six_acc_mean_pct"] == 50.0 and out["sgvae_nine_acc_mean_pct"] == 100.0
    assert out["sgvae_six_acc_mean_pct_ci95"] == [0.0, 100.0] and out["sgvae_six_acc_mean_pct_n"] == 2
    assert out["sgvae_n_seeds"] == 2 and "2 training seeds" in out["sgvae_six_acc_mean_pct_ci_method"]
    six_nine = study.six_nine_table({"sgvae": ev}, test, (0.0, 90.0), {"sgvae": "S-GVAE"})
    assert six_nine.six_as_nine_pct.tolist() == [50.0, 50.0] and set(six_nine.model) == {"S-GVAE"}
    labels = study.judge_label_table({"sgvae": ev}, test)
    assert labels.loc[("sgvae", 6), "9"] == 50.0 and labels.loc[("sgvae", 9), "9"] == 100.0
    seeds = study.seed_spread_table({"sgvae": ev})
    assert seeds["six_acc_mean_pct"].tolist() == [100.0, 0.0] and seeds["latent_knn_acc_min_pct"].tolist() == [100.0] * 2
    assert set(seeds.columns) == {"label", *study.SEED_SPREAD_COLUMNS}
    assert study.seed_spread_table({"sgvae": one}).empty
    m = study.headline_metrics(*_seeded_frames(), cis=out, seeds_df=seeds)
    assert [m["sgvae_six_acc_mean_pct_seed0"], m["sgvae_six_acc_mean_pct_seed1"]] == [100.0, 0.0]
    text = study.seeds_sentence(m)
    assert "trained with 2 seeds" in text and "100.0 / 0.0 %" in text and "up to 100.0 points" in text
    assert "one training seed each" in study.seeds_text({}, ("svae", "sgvae"))
    assert study.seeds_text({"sgvae_n_seeds": 2}, ("svae", "sgvae")) == "S-VAE: one, S-GVAE: 2 training seeds"


def _seeded_frames():
    """The DataFrames :func:`study.headline_metrics` needs, for one model (the S-GVAE) at two angles."""
    import pandas as pd

    rows = [{"model": study.MODEL_LABELS["sgvae"], "angle_deg": a, "label": lab, "judge_acc_pct": 90.0,
             "knn_acc_pct": 90.0, "n": 2} for a in (0.0, 90.0) for lab in ("all", "6", "9")]
    rot_df = pd.DataFrame(rows)
    inv_df = pd.DataFrame({"rot90_max": [0.0]}, index=["sgvae"])
    empty = pd.DataFrame(columns=["elbo", "iwll", "recon", "kl"])
    models = pd.DataFrame({"parameters": [1]}, index=["sgvae"])
    judge_df = pd.DataFrame({"acc_pct": [99.0], "acc_pct_6": [99.0], "acc_pct_9": [99.0]})
    six_nine = pd.DataFrame({"model": [study.MODEL_LABELS["sgvae"]] * 2, "angle_deg": [0.0, 90.0],
                             "six_as_nine_pct": [0.0, 0.0], "nine_as_six_pct": [0.0, 0.0]})
    return rot_df, inv_df, empty, empty, models, judge_df, six_nine


def test_replicates_train_the_same_model_with_other_seeds(tmp_path, monkeypatch):
    """:func:`train_replicates` trains each ``replicated`` model once per ``replicate_seeds`` seed: the same
    config, other weights; its collapse-table row is named by its seed. Bad replicate settings raise."""
    monkeypatch.setenv("ROTBOOK_RUNS", str(tmp_path))
    cfg = report.resolve_config(study, "smoke", {"train_size": 96, "val_size": 32, "test_size": 16,
                                                 "fit.batch_size": 32, "replicated": ["svae"], "replicate_seeds": [3]})
    assert cfg.seeds("svae") == (0, 3) and cfg.seeds("sgvae") == (0,)
    data = study.load_data(cfg)
    reps = study.train_replicates(cfg, data, progress=False)
    (t,) = reps["svae"]
    assert list(reps) == ["svae"] and t.seed == 3 and t.replicate and t.name == "svae_seed3"
    assert t.config == study.vae_config("svae", cfg) and "seed 3" in t.label
    first = study.train_vae("svae", "S-VAE", study.vae_config("svae", cfg), cfg.fit, cfg, data, progress=False)
    assert first.name == "svae" and not torch.equal(first.model.decoder.fc.weight, t.model.decoder.fc.weight)
    assert study.replicated_text(cfg) == "S-VAE: seeds 0 and 3"
    with pytest.raises(ConfigError, match="replicated"):
        report.resolve_config(study, "smoke", {"replicated": ["gvae"]})
    with pytest.raises(ConfigError, match="seed of its own"):
        report.resolve_config(study, "smoke", {"replicate_seeds": [0]})
    with pytest.raises(ConfigError, match="seed of its own"):
        report.resolve_config(study, "smoke", {"replicate_seeds": [1, 1]})


# ---------------------------------------------------------------------------------------------------------
# Audit of the page's sentences, tables and curves (collapse flags, per-angle bands, generated wording)


def test_collapse_status_and_the_elbo_tables_collapse_column():
    data, cfg, good, bad = _collapse_fixture()
    # draws 6s and 9s as 0s: labels spread, 80 % right overall, two digits below the floor
    no69 = _DecodingStubVAE(lambda b: torch.where(((b[:, :1, :1, :1] - 0.6).abs() < 1e-6) | ((b[:, :1, :1, :1] - 0.9).abs()
                                                                                    < 1e-6), torch.zeros_like(b), b), 8.0)
    trained = [study.Trained(k, k, v.config, v, None) for k, v in (("good", good), ("bad", bad), ("no69", no69))]
    t = study.collapse_table(trained, _PixelJudge(), data, cfg)
    assert t.loc["good", "status"] == "learned its task" and t.loc["good", "n_failed_digits"] == 0
    assert t.loc["bad", "status"] == "collapsed" and t.loc["bad", "collapsed"]
    assert t.loc["no69", "status"] == "failed its task" and t.loc["no69", "collapsed"]
    assert t.loc["no69", "n_failed_digits"] == 2 and t.loc["no69", "failed_digits"] == "6, 9"
    assert (t.collapsed == (t.status != "learned its task")).all()
    assert study.collapse_status(60.0, 90.0, 0) == "collapsed" and study.collapse_status(20.0, 40.0, 0) == "failed its task"
    import pandas as pd

    elbo = pd.DataFrame({"elbo": [-100.0, -180.0, -150.0, -120.0]}, index=["good", "bad", "no69", "other"])
    col = study.with_collapse_column(elbo, t)["collapse check"]
    assert col["good"] == "learned its task" and col["bad"].startswith("collapsed (label 1: 100 %")
    assert col["no69"] == "failed its task (digits 6, 9 below 50 %)" and col["other"] == "not checked"
    m = study.headline_metrics(*_empty_frames(), collapse_df=t)
    assert m["no69_n_failed_digits"] == 2 and m["no69_failed_digits"] == "6, 9"
    assert m["no69_collapse_status"] == "failed its task" and m["bad_collapse_status"] == "collapsed"


def test_a_collapsed_or_failed_model_is_flagged_in_the_results_table():
    """A model-quality target (the mode share, which a model that never draws a 6 can meet) counts only for a
    model that passed the collapse check; a failed model's bound beside the paper's is flagged, not compared."""
    by = {a.metric: a for a in study.ANCHORS}
    mode, ps, svae_mean = by["svae_aug_mode_label_pct"], by["iwll_ps_d2"], by["svae_six_acc_mean_pct"]
    ok = {"svae_aug_mode_label_pct": 16.6, "svae_aug_collapsed": False, "iwll_ps_d2": -130.0, "ps_d2_collapsed": False,
          "svae_six_acc_mean_pct": 27.9, "svae_nine_acc_mean_pct": 32.7, "svae_collapsed": False}
    assert mode.assess(ok) == "yes" and mode.verdict_for(ok).startswith("meets")
    assert ps.assess(ok) == "—" and ps.verdict_for(ok).startswith("is reported")
    failed = {**ok, "svae_aug_collapsed": True, "ps_d2_collapsed": True, "svae_collapsed": True}
    assert mode.assess(failed).startswith("not measurable: floor missed") and "S-VAE-aug" in mode.assess(failed)
    assert "collapse check: yes" in mode.assess(failed) and "yes" != mode.assess(failed)
    assert mode.verdict_for(failed).startswith("cannot be judged") and "16.6 %" in mode.verdict_for(failed)
    assert ps.assess(failed).startswith("not comparable") and "d = 2 hyperspherical" in ps.assess(failed)
    assert ps.verdict_for(failed).startswith("is not comparable")
    assert svae_mean.assess(failed).startswith("not comparable")
    assert mode.assess({"svae_aug_mode_label_pct": 16.6}).startswith("not measurable: floor not measured")
    from rotcore import report

    results, _ = report.tables(study, failed)
    flagged = results[results.met.str.startswith("not ")]
    assert len(flagged) == 4  # the mode share, the S-VAE's two means, the d = 2 bound (the Gaussian's: not measured)


def test_per_angle_wilson_bands_stay_in_range_and_hold_their_estimate():
    from rotcore.metrics import wilson_band, wilson_ci95

    lo, hi = wilson_band([0.0, 50.0, 100.0, 80.0], [10, 10, 10, 10])
    assert (lo >= 0).all() and (hi <= 100).all() and lo[0] == 0.0 and hi[2] == pytest.approx(100.0)
    assert (lo <= [0.0, 50.0, 100.0, 80.0]).all() and (hi >= [0.0, 50.0, 100.0, 80.0]).all()
    assert (lo[3], hi[3]) == pytest.approx(wilson_ci95(8, 10).ci)
    assert wilson_band(50.0, 40)[1][0] - wilson_band(50.0, 40)[0][0] < hi[1] - lo[1]  # more outcomes: narrower
    # the rotated evaluation's per-angle bands count every reading (seeds pooled), the 6/9 table's too
    y = torch.tensor([6, 6, 9, 9, 1, 2])
    right = torch.stack([y, y])
    wrong = torch.stack([torch.where(y == 6, 9, y)] * 2)
    one, other = (study.rotated_eval(p, right, y, (0.0, 90.0), "S-GVAE") for p in (right, wrong))
    ev = study.pool_seeds([one, other], y, (0.0, 90.0))
    six = ev.df[ev.df.label == "6"]
    assert six.readings.tolist() == [4, 4] and six.n.tolist() == [2, 2]
    assert six.judge_acc_lo.iloc[0] == pytest.approx(wilson_ci95(2, 4).ci[0])
    assert ((ev.df.judge_acc_lo <= ev.df.judge_acc_pct) & (ev.df.judge_acc_pct <= ev.df.judge_acc_hi)).all()
    assert ((ev.df.knn_acc_lo >= 0) & (ev.df.knn_acc_hi <= 100)).all()
    sn = study.six_nine_table({"sgvae": ev}, study.Images(torch.zeros(6, 1, 28, 28), y), (0.0, 90.0), {"sgvae": "S"})
    assert sn.six_as_nine_pct_lo.iloc[0] == pytest.approx(wilson_ci95(2, 4).ci[0])
    assert (sn.nine_as_six_pct_lo == 0.0).all() and (sn.nine_as_six_pct_hi > 0).all()
    # the curves draw them as bands (one filled area per line)
    from rotcore import plots

    fig = plots.plot_vs_angle(ev.df[ev.df.label.isin(["6", "9"])], y="judge_acc_pct", hue="label",
                              band=("judge_acc_lo", "judge_acc_hi"))
    assert len(fig.axes[0].collections) == 2
    fig = plots.plot_six_nine(sn)
    assert all(len(ax.collections) == 1 for ax in fig.axes)
    plots.plt.close("all")


def test_code_change_sentence_names_the_worst_digit_at_its_own_angle():
    # the published S-GVAE-aug: the mean moves most at 30°, the worst digit at 15°
    m = {"sgvae_aug_latent_invariance_err_rot15": 0.62, "sgvae_aug_latent_invariance_err_rot15_mean": 0.211,
         "sgvae_aug_latent_invariance_err_rot30": 0.45, "sgvae_aug_latent_invariance_err_rot30_mean": 0.215,
         "sgvae_aug_latent_invariance_err_rot45": 0.31, "sgvae_aug_latent_invariance_err_rot45_mean": 0.139,
         "sgvae_aug_latent_invariance_err_rot90": 1e-15, "sgvae_aug_latent_invariance_err_rot90_mean": 1e-7}
    s = study.code_change_sentence(m, "sgvae_aug")
    assert "moves most on average at 30° (0.21" in s and "worst probe digit moves most at 15° (0.62)" in s
    assert "by 0.45 for the worst" not in s
    same = {**m, "sgvae_aug_latent_invariance_err_rot30": 0.9}
    assert study.code_change_sentence(same, "sgvae_aug").startswith("The S-GVAE-aug's code moves most at 30°: by 0.90")
    assert study.code_change_sentence({}, "sgvae") == ""


def test_between_quarter_turns_sentence_words_the_code_change_from_the_numbers():
    def m(means, worst, dist=1.37, key="sgvae"):
        out = {f"{key}_code_between_digits_mean": dist}
        for a, mc, w in zip((15, 30, 45), means, worst):
            out[f"{key}_latent_invariance_err_rot{a}_mean"] = mc
            out[f"{key}_latent_invariance_err_rot{a}"] = w
        return out

    s = study.between_quarter_turns_sentence(m((0.64, 0.67, 0.09), (1.08, 1.19, 0.22)), "sgvae")
    assert "far from invariant at 15°, 30°, close to it at 45°" in s and "**not** exactly invariant" in s
    assert "0.64 at 15°" in s and "up to 1.19" in s and "1.37 between the codes" in s
    aug = study.between_quarter_turns_sentence(m((0.21, 0.21, 0.14), (0.62, 0.45, 0.31)), "sgvae")
    assert "close to invariant on average but not for every digit" in aug and "45 % of that distance" in aug
    tight = study.between_quarter_turns_sentence(m((0.05, 0.05, 0.05), (0.1, 0.1, 0.1)), "sgvae")
    assert "close to invariant there too" in tight
    far = study.between_quarter_turns_sentence(m((0.9, 1.0, 1.2), (1.5, 1.6, 1.7)), "sgvae")
    assert "far from invariant at every such angle" in far
    assert study.between_quarter_turns_sentence({}, "sgvae") == ""
    probe = study.Images(torch.eye(4).repeat(1, 196).reshape(4, 1, 28, 28), torch.tensor([0, 0, 1, 1]))
    vae = _StubVAE(lambda b: b, 1.0)  # code: the first 4 pixels, one-hot per image
    assert study.between_digit_distance(vae, probe) == pytest.approx(2 ** 0.5)


def test_elbo_failure_sentence_says_how_each_model_failed():
    m = {"ps_d2_collapsed": True, "gauss_d2_collapsed": True, "kl_ps_d2": 2.9, "ps_d2_kl_per_dim": 1.43,
         "kl_gauss_d2": 3.4, "gauss_d2_kl_per_dim": 1.67, "ps_d2_upright_decode_acc_pct": 28.0,
         "gauss_d2_upright_decode_acc_pct": 31.2, "ps_d2_upright_mode_pct": 38.2, "gauss_d2_upright_mode_pct": 30.8,
         "sgvae_kl_per_dim": 1.39}
    s = study.discussion({**_discussion_metrics(), **m})["sv_elbo_sentence"]
    assert s.startswith("Both d = 2 VAEs fail the collapse check") and "not compared" in s
    assert s.count("fails by its decodes, not by posterior collapse") == 2 and "ignores its code" not in s
    assert "2.9 nats of KL (1.43 per dimension; the S-GVAE's: 1.39)" in s and "28.0 %" in s
    post = study.elbo_failure_sentence({**m, "ps_d2_kl_per_dim": 0.01, "kl_ps_d2": 0.02}, ["ps_d2"])
    assert post.startswith("The d = 2 hyperspherical VAE fails") and "posterior collapsed onto the prior" in post
    mode = study.elbo_failure_sentence({**m, "gauss_d2_upright_mode_pct": 70.0}, ["gauss_d2"])
    assert "draws nearly one digit (70.0 %" in mode


def test_kappa_sentence_says_where_kappa_sits_in_the_validation_grid():
    top = study.kappa_sentence({"kappa_init": 3000.0})
    assert "**largest** value tried, at the edge of the grid" in top and "was chosen on validation −ELBO, the lowest of the sweep" in top
    assert "still falling there (by 1.0 nats" in top and "choose_kappa_init.py" in top
    assert "**smallest** value tried" in study.kappa_sentence({"kappa_init": 150.0})
    assert "did not give the sweep's lowest validation −ELBO (κ₀ = 3,000 did)" in study.kappa_sentence(
        {"kappa_init": 150.0})
    assert "inside the grid" in study.kappa_sentence({"kappa_init": 300.0})
    assert "not a value of the validation sweep" in study.kappa_sentence({"kappa_init": 100.0})
    assert study.kappa_sentence({}) == "" and study.PROFILES["cpu"].kappa_init == max(study.KAPPA_INIT_SWEEP)


def test_misread_note_points_at_examples_only_when_there_are_some():
    assert "reads none of the 207 upright test 6s and 9s" in study.misread_note(
        {"sgvae_upright_six_nine_misread_n": 0, "sgvae_upright_six_nine_n": 207})
    some = study.misread_note({"sgvae_upright_six_nine_misread_n": 3, "sgvae_upright_six_nine_n": 207})
    assert "examples above are the S-GVAE's own misreadings: 3 of the 207" in some
    assert study.misread_note({}) == ""
