"""Study 01: the cVAEs (exact equivariance of the explicit-rotation decoder), angle-interval sets, configs
round-tripping through checkpoints, and clear errors for malformed training-angle sets."""

import dataclasses

import pytest
import torch

from rotcore import config as _config
from rotcore.config import ConfigError
from rotcore.metrics import mse_per_image
from rotcore.models.cvae import CVAE, CVAEConfig, elbo_loss, load_cvae
from rotcore.rotate import (
    complement_intervals,
    distance_to_intervals_deg,
    in_intervals,
    random_angles_in,
    rot90_batch,
    rotate_batch,
)
from rotcore.studies import cvae as study

SMALL = CVAEConfig(latent_dim=4, enc_channels=(4, 8), dec_channels=(8, 4), enc_hidden=16, dec_hidden=16, film_hidden=8)


def _model(conditioning: str, seed: int = 0) -> CVAE:
    torch.manual_seed(seed)
    model = CVAE(dataclasses.replace(SMALL, conditioning=conditioning)).eval()
    with torch.no_grad():  # FiLM starts as the identity; make it do something
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _inputs(n: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, SMALL.latent_dim, generator=g), torch.randint(0, 10, (n,), generator=g)


# --- the explicit-rotation decoder ---------------------------------------------------------------------


@pytest.mark.parametrize("angle", [0.0, 90.0, 180.0, 270.0, -90.0, 450.0])
def test_rotation_decoder_is_exactly_equivariant_to_quarter_turns(angle):
    model = _model("rotation")
    z, y = _inputs()
    with torch.no_grad():
        base = model.decode(z, y, angle)
        for k in (1, 2, 3):
            turned = model.decode(z, y, angle + 90.0 * k)
            assert torch.equal(rot90_batch(base, k), turned)  # bit for bit: rotate_batch's exact path


def test_rotation_decoder_is_equivariant_between_quarter_turns_up_to_resampling():
    model = _model("rotation")
    z, y = _inputs()
    with torch.no_grad():
        for angle in (17.0, 30.0, 123.5):
            err = (rot90_batch(model.decode(z, y, angle), 1) - model.decode(z, y, angle + 90.0)).abs().max().item()
            assert err < 1e-5, (angle, err)
            # and it really is the upright drawing turned by rotate_batch
            ref = rotate_batch(model.upright_probs(z, y), angle)
            assert torch.allclose(model.decode(z, y, angle), ref, atol=1e-6)


def test_rotation_encoder_code_does_not_depend_on_quarter_turns():
    model = _model("rotation")
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        mu, logvar = model.encode(x, 30.0)
        for k in (1, 2, 3):
            mu_k, logvar_k = model.encode(rot90_batch(x, k), 30.0 + 90.0 * k)
            assert torch.allclose(mu, mu_k, atol=1e-5) and torch.allclose(logvar, logvar_k, atol=1e-5)
        mu0, _ = model.encode(x, 0.0)
        assert torch.equal(mu0, model.encode(rot90_batch(x, 1), 90.0)[0])


@pytest.mark.parametrize("conditioning", ["scalar", "film"])
def test_learned_conditionings_are_not_equivariant_by_construction(conditioning):
    # the property above is a real constraint: the other two decoders (random weights) do not satisfy it
    model = _model(conditioning)
    z, y = _inputs()
    with torch.no_grad():
        assert not torch.allclose(rot90_batch(model.decode(z, y, 0.0), 1), model.decode(z, y, 90.0), atol=1e-3)


@pytest.mark.parametrize("conditioning", ["scalar", "film", "rotation"])
def test_forward_shapes_and_elbo(conditioning):
    model = _model(conditioning).train()
    x = torch.rand(4, 1, 28, 28)
    y = torch.tensor([0, 1, 2, 3])
    out = model(x, y, torch.tensor([0.0, 45.0, 200.0, 359.0]))
    assert out.x_hat.shape == x.shape and out.x_hat.dtype == torch.float32
    assert out.mu.shape == out.logvar.shape == out.z.shape == (4, SMALL.latent_dim)
    assert float(out.x_hat.detach().min()) >= 0 and float(out.x_hat.detach().max()) <= 1
    loss, parts = elbo_loss(out, x)
    assert torch.isfinite(loss) and torch.allclose(loss, parts["bce"] + parts["kl"])
    loss.backward()


def test_scalar_conditioning_is_continuous_except_at_its_seam():
    model = _model("scalar")
    z, y = _inputs(2)
    with torch.no_grad():
        near = (model.decode(z, y, 10.0) - model.decode(z, y, 10.001)).abs().max()
        seam = (model.decode(z, y, 179.999) - model.decode(z, y, 180.0)).abs().max()
    assert seam > 0 and seam > 1_000 * near  # the scalar jumps from +1 to -1 at 180°


# --- configs ---------------------------------------------------------------------------------------------


def test_cvae_config_round_trips_through_dict_and_rejects_bad_values():
    cfg = dataclasses.replace(SMALL, conditioning="film")
    assert CVAEConfig.from_dict(_config.to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="conditioning"):
        CVAEConfig(conditioning="angle")
    with pytest.raises(ConfigError, match="divisible"):
        CVAEConfig(enc_channels=(4, 4, 4))
    with pytest.raises(ConfigError, match="unknown keys"):
        CVAEConfig.from_dict({"conditioning": "film", "latent": 3})


def test_study_config_round_trips_through_dict():
    cfg = study.resolve_config("smoke", {"train_angles_deg": [[300, 360], [0, 45]]})
    assert cfg.train_angles_deg == ((0.0, 45.0), (300.0, 360.0))
    assert _config.from_dict(study.CVAEStudyConfig, _config.to_dict(cfg)) == cfg
    assert _config.config_hash(cfg) == _config.config_hash(_config.from_dict(study.CVAEStudyConfig, _config.to_dict(cfg)))


@pytest.mark.parametrize("bad, match", [
    ([], "empty"),
    ((), "empty"),
    ("0-30", "list|sequence"),
    ([[30, 10]], "reversed"),
    ([[10, 10]], "reversed"),
    ([[0, 400]], "out of range"),
    ([[-30, 30]], "out of range"),
    ([[0, 30, 60]], "pair"),
    ([30], "pair"),
    ([["a", 30]], "finite"),
    ([[0, float("nan")]], "finite"),
    ([[0, 50], [40, 90]], "overlap"),
    ([[0, 360]], "whole circle"),
])
def test_training_angle_sets_are_validated(bad, match):
    with pytest.raises(ConfigError, match=match):
        study.resolve_config("smoke", {"train_angles_deg": bad})


def test_other_config_errors_are_clear():
    with pytest.raises(ConfigError, match="unknown model"):
        study.resolve_config("smoke", {"models": ["scalar", "vae"]})
    with pytest.raises(ConfigError, match="unknown profile"):
        study.resolve_config("tiny")
    with pytest.raises(ConfigError, match="judge_profile"):
        study.resolve_config("smoke", {"judge_profile": "medium"})


# --- angle sets --------------------------------------------------------------------------------------------


def test_angle_interval_helpers():
    iv = ((0.0, 30.0), (60.0, 90.0), (270.0, 360.0))
    a = random_angles_in(iv, 5_000, generator=torch.Generator().manual_seed(0))
    assert bool(in_intervals(a, iv).all())
    # each interval is drawn in proportion to its length (30 : 30 : 90)
    share = ((a >= 270).double().mean().item())
    assert abs(share - 0.6) < 0.03
    assert complement_intervals(iv) == ((30.0, 60.0), (90.0, 270.0))
    assert in_intervals(torch.tensor([0.0, 360.0, 15.0, 45.0, 180.0, -10.0]), iv).tolist() == [
        True, True, True, False, False, True]
    d = distance_to_intervals_deg(torch.tensor([45.0, 180.0, 10.0, 100.0]), iv)
    assert d.tolist() == [15.0, 90.0, 0.0, 10.0]


# --- training, checkpoints, resume ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, mnist_available):
    mp = pytest.MonkeyPatch()
    mp.setenv("ROTBOOK_RUNS", str(tmp_path_factory.mktemp("runs")))
    cfg = study.resolve_config("smoke", {"train_size": 128, "val_size": 64, "test_size": 32, "models": ["rotation"],
                                         "fit.epochs": 1, "fit.batch_size": 64})
    data = study.load_data(cfg)
    trained = study.train("rotation", cfg, data, progress=False)
    yield cfg, data, trained
    mp.undo()


def test_config_round_trips_through_a_checkpoint(tiny_run):
    cfg, data, trained = tiny_run
    loaded = load_cvae(trained.result.checkpoint)
    assert loaded.config == cfg.model_config("rotation") == trained.model.config
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(3, cfg.latent_dim, generator=g), torch.tensor([1, 5, 9])
    with torch.no_grad():
        assert torch.equal(loaded.decode(z, y, 33.0), trained.model.decode(z, y, 33.0))
    # a second call loads the finished run instead of training again
    again = study.train("rotation", cfg, data, progress=False)
    assert again.result.resumed_from_epoch == cfg.fit.epochs


def test_evaluation_tables_have_every_cell(tiny_run):
    cfg, data, trained = tiny_run
    rec = study.evaluate_reconstruction([trained], data.test, cfg)
    digits = data.test.y.unique().tolist()
    assert len(rec) == len(cfg.eval_angles_deg) * len(digits) and rec.ssim.between(-1, 1).all()
    assert set(rec.seen) == {True, False}
    # the one-batch evaluation over all angles equals reconstructing one angle at a time
    a = cfg.eval_angles_deg[1]
    x = rotate_batch(data.test.x, a)
    err = mse_per_image(study.reconstruct(trained.model, x, data.test.y, a), x)
    d = digits[0]
    row = rec[(rec.angle_deg == a) & (rec.digit == d)].iloc[0]
    assert row.n == int((data.test.y == d).sum())
    assert abs(row.mse - err[data.test.y == d].mean().item()) < 1e-5
    d, a, z = study.generation_grid(cfg, "cpu")
    assert len(d) == len(cfg.eval_angles_deg) * 10 * cfg.samples_per_cell
    # the same prior draws at every angle
    k = 10 * cfg.samples_per_cell
    assert torch.equal(z[:k], z[k:2 * k]) and torch.equal(d[:k], d[k:2 * k])


def test_a_run_with_other_fit_settings_gets_its_own_checkpoint(tiny_run):
    cfg, data, trained = tiny_run
    longer = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, epochs=2))
    again = study.train("rotation", longer, data, progress=False)  # not refused by the 1-epoch checkpoint
    assert again.result.resumed_from_epoch == 0 and len(again.result.history) == 2
    assert again.result.checkpoint != trained.result.checkpoint
