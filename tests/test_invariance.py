"""Study 05's training entry point: checkpoints are keyed by the whole run, fit settings included."""
import dataclasses

import pytest

from rotcore.data import load_mnist, subset
from rotcore.studies import invariance as study


@pytest.mark.usefixtures("mnist_available")
def test_a_run_with_other_fit_settings_gets_its_own_checkpoint(runs_dir):
    cfg = study.resolve_config("smoke", {"upright_fit.batch_size": 32})
    data = subset(load_mnist("train"), 64, seed=0)
    kw = dict(val_set=subset(load_mnist("test"), 32, seed=0), progress=False)
    first = study.train("cnn", cfg, "upright", data, **kw)
    longer = dataclasses.replace(cfg, upright_fit=dataclasses.replace(cfg.upright_fit, epochs=2))
    again = study.train("cnn", longer, "upright", data, **kw)  # not refused by the 1-epoch run
    assert again.result.resumed_from_epoch == 0 and len(again.result.history) == 2
    assert again.result.checkpoint != first.result.checkpoint
    # the same settings load the finished run instead of training again
    assert study.train("cnn", cfg, "upright", data, **kw).result.resumed_from_epoch == 1
