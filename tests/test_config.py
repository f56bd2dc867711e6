import dataclasses

import pytest

from rotcore import report
from rotcore.config import ConfigError, config_hash, diff, flat_keys, override, resolve, to_dict
from rotcore.studies import invariance
from rotcore.train import FitConfig


def test_every_profile_resolves():
    for name in invariance.PROFILES:
        assert isinstance(resolve(invariance.PROFILES, name), invariance.InvarianceConfig)


def test_unknown_profile_lists_choices():
    with pytest.raises(ConfigError, match="unknown profile 'fast'.*smoke, cpu, gpu"):
        report.resolve_config(invariance, "fast")


def test_unknown_key_suggests_and_lists():
    with pytest.raises(ConfigError, match=r"unknown override key 'upright_fit\.epoch'.*did you mean upright_fit\.epochs"):
        report.resolve_config(invariance, "smoke", {"upright_fit.epoch": 3})
    with pytest.raises(ConfigError, match="valid keys: width"):
        report.resolve_config(invariance, "smoke", {"nope": 1})


def test_nested_override_and_coercion():
    cfg = report.resolve_config(invariance, "smoke", {"upright_fit.epochs": 3.0, "test_angles_deg": [0, 90],
                                                      "replica_seeds": [5]})
    assert cfg.upright_fit.epochs == 3 and isinstance(cfg.upright_fit.epochs, int)
    assert cfg.test_angles_deg == (0, 90) and cfg.replica_seeds == (5,)
    assert invariance.PROFILES["smoke"].upright_fit.epochs == 1  # profiles are not mutated


@pytest.mark.parametrize("overrides, message", [
    ({"upright_fit.epochs": -1}, "epochs must be >= 0"),
    ({"upright_fit.epochs": 1.5}, "expects an integer"),
    ({"test_angles_deg": [0, 400]}, r"out of range; angles are degrees in \[0, 360\)"),
    ({"test_angles_deg": []}, "at least one angle"),
    ({"test_angles_deg": [0, 0]}, "duplicate"),
    ({"test_angles_deg": ["up"]}, "not a finite number"),
    ({"upright_fit.lr": 0}, "lr must be > 0"),
    ({"upright_fit.optimizer": "lion"}, "optimizer='lion' is not one of"),
    ({"upright_models": ["resnet"]}, "unknown model"),
    ({"width": "wide"}, "expects a number"),
    ({"replica_train_on_val": 1}, "expects true/false"),
])
def test_bad_values_raise_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        report.resolve_config(invariance, "smoke", overrides)


def test_overrides_must_be_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        override(FitConfig(), [("epochs", 1)])


def test_early_stopping_needs_monitor():
    with pytest.raises(ConfigError, match="monitor"):
        FitConfig(early_stopping_patience=3)


def test_hash_is_stable_and_sensitive():
    a = FitConfig(epochs=3)
    assert config_hash(a) == config_hash(FitConfig(epochs=3))
    assert config_hash(a) != config_hash(dataclasses.replace(a, epochs=4))
    assert len(config_hash(a)) == 8


def test_flat_keys_and_diff():
    keys = flat_keys(invariance.PROFILES["gpu"])
    assert "upright_fit.epochs" in keys and "width" in keys
    d = diff(to_dict(FitConfig(epochs=1)), to_dict(FitConfig(epochs=2, lr=0.1)))
    assert d == ["epochs: 1 != 2", "lr: 0.001 != 0.1"]


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        FitConfig().epochs = 3


def test_check_profile_names_the_profiles():
    from rotcore.config import ConfigError, check_profile

    for p in ("smoke", "cpu", "gpu"):
        check_profile("judge_profile", p)
    with pytest.raises(ConfigError, match="judge_profile='full' is not one of 'smoke', 'cpu', 'gpu'"):
        check_profile("judge_profile", "full")
