import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rotcore.config import ConfigError
from rotcore.train import (
    CheckpointMismatchError,
    FitConfig,
    NonFiniteLossError,
    TensorLoader,
    fit,
    lr_at,
    lr_schedule,
    predict,
    run_dir,
)


def toy_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def toy_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def loss_fn(model, batch):
    x, y = batch
    noise = 0.1 * torch.randn_like(x)  # draws from the global RNG, like rotation augmentation does
    logits = model(x + noise)
    return F.cross_entropy(logits, y), {"acc": (logits.argmax(-1) == y).float().mean()}


CFG = FitConfig(epochs=2, batch_size=32, lr=1e-2, lr_schedule="step", lr_step_epochs=1, lr_gamma=0.5,
                precision="fp32", seed=7)


def run(cfg=CFG, ckpt=None, validate=None, run_config=None, model_seed=0):
    x, y = toy_data()
    model = toy_model(model_seed)
    loader = TensorLoader(x, y, batch_size=cfg.batch_size, seed=cfg.seed)
    res = fit(model, loss_fn, loader, config=cfg, checkpoint=ckpt, validate=validate,
              run_config=run_config or {"name": "toy"}, device="cpu", progress=False)
    return model, res


def same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def crash_in_epoch(n):
    """A validate callback that raises KeyboardInterrupt at the end of epoch ``n`` (a simulated interruption)."""
    calls = {"n": 0}

    def validate(model):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt("simulated interruption")
        return {}

    return validate


def test_seeded_runs_are_identical():
    a, ra = run()
    b, rb = run()
    assert same_weights(a, b)
    assert [h["train_loss"] for h in ra.history] == [h["train_loss"] for h in rb.history]


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    """fit 2 epochs == fit 1 epoch, crash, fit again (resumes epoch 2 from the checkpoint)."""
    full, full_res = run(ckpt=tmp_path / "full.pt")

    with pytest.raises(KeyboardInterrupt):
        run(ckpt=tmp_path / "resumed.pt", validate=crash_in_epoch(2))
    torch.manual_seed(12345)  # a different global RNG state: resuming must restore its own
    resumed, res = run(ckpt=tmp_path / "resumed.pt", validate=lambda m: {})
    assert res.resumed_from_epoch == 1
    assert same_weights(full, resumed)
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in full_res.history]


def test_finished_checkpoint_is_reused_without_training(tmp_path):
    trained, _ = run(ckpt=tmp_path / "c.pt")

    def no_training(model, batch):
        raise AssertionError("a finished checkpoint must not train again")

    x, y = toy_data()
    model = toy_model(seed=99)  # different init: the checkpoint's weights must win
    res = fit(model, no_training, TensorLoader(x, y, batch_size=32), config=CFG, checkpoint=tmp_path / "c.pt",
              run_config={"name": "toy"}, device="cpu", progress=False)
    assert same_weights(model, trained) and len(res.history) == 2


def test_checkpoint_with_another_config_is_refused(tmp_path):
    run(ckpt=tmp_path / "c.pt")
    with pytest.raises(CheckpointMismatchError, match=r"lr: 0\.01 != 0\.02"):
        run(cfg=dataclasses.replace(CFG, lr=0.02), ckpt=tmp_path / "c.pt")
    with pytest.raises(CheckpointMismatchError, match="run.name"):
        run(ckpt=tmp_path / "c.pt", run_config={"name": "other"})


def test_run_dir_separates_configs(tmp_path):
    a = run_dir("s", "m", {"w": 1}, root=tmp_path)
    assert a == run_dir("s", "m", {"w": 1}, root=tmp_path) and a != run_dir("s", "m", {"w": 2}, root=tmp_path)


def test_early_stopping_restores_the_best_epoch():
    scores = iter([0.5, 0.9, 0.7, 0.6, 0.8, 0.95])
    snapshots = []

    def validate(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"val_acc": next(scores)}

    cfg = dataclasses.replace(CFG, epochs=6, monitor="val_acc", monitor_mode="max", early_stopping_patience=2)
    model, res = run(cfg=cfg, validate=validate)
    assert res.stopped_early and len(res.history) == 4 and res.best_epoch == 2 and res.best_metric == 0.9
    assert all(torch.equal(v, snapshots[1][k]) for k, v in model.state_dict().items())


def test_min_delta():
    scores = iter([1.0, 0.995, 0.99, 0.985])
    cfg = dataclasses.replace(CFG, epochs=4, monitor="loss", early_stopping_patience=2, early_stopping_min_delta=0.02)
    _, res = run(cfg=cfg, validate=lambda m: {"loss": next(scores)})
    assert res.stopped_early and res.best_epoch == 1


def test_nan_loss_raises_a_clear_error():
    def nan_loss(model, batch):
        return model(batch[0]).sum() * float("nan")

    x, y = toy_data()
    with pytest.raises(NonFiniteLossError, match="non-finite loss in epoch 1"):
        fit(toy_model(), nan_loss, TensorLoader(x, y, batch_size=32), config=CFG, device="cpu", progress=False)


def test_history_and_schedule():
    # 256 samples / 32 = 8 steps per epoch; "step" halves the rate at each epoch boundary, counted in steps
    _, res = run(cfg=dataclasses.replace(CFG, epochs=3))
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert [h["lr"] for h in res.history] == pytest.approx([1e-2, 5e-3, 2.5e-3])
    assert {"train_loss", "train_acc", "epoch_time_s", "images_per_s", "lr_end"} <= set(res.history[0])


def test_schedule_is_per_step_with_warmup_and_reaches_lr_final_at_the_last_step():
    cfg = FitConfig(epochs=2, lr=1e-3, lr_schedule="cosine", warmup_steps=10, lr_final=1e-5)
    lrs = lr_schedule(cfg, steps_per_epoch=50)  # 100 steps
    assert len(lrs) == 100
    assert lrs[0] == pytest.approx(1e-4)  # step 0 of a 10-step warm-up: lr / 10, never a full step at once
    assert lrs[9] == pytest.approx(1e-3)  # end of warm-up: the peak
    assert lrs[-1] == pytest.approx(1e-5)  # the last step: lr_final
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # decays every step after the warm-up
    assert lrs[49] > lrs[50] > lrs[51]  # no plateau across the epoch boundary
    frac = FitConfig(epochs=1, lr=1.0, lr_schedule="cosine", warmup_fraction=0.25)
    assert lr_at(frac, 0, 8) == pytest.approx(0.5) and lr_at(frac, 1, 8) == pytest.approx(1.0)
    exp = FitConfig(epochs=5, lr=1.0, lr_schedule="exponential", lr_step_epochs=2, lr_gamma=0.5)
    assert [lr_at(exp, i * 4, 4) for i in range(5)] == pytest.approx([1, 1, 1, 0.5, 0.25])
    assert lr_at(exp, 13, 4) == pytest.approx(0.5 ** 1.25)  # continuous in the step


def test_the_optimizer_uses_the_schedule_step_by_step():
    cfg = dataclasses.replace(CFG, epochs=2, lr=0.1, lr_schedule="cosine", warmup_steps=3)
    x, y = toy_data()
    model = toy_model()
    loader = TensorLoader(x, y, batch_size=cfg.batch_size, seed=cfg.seed)
    opt_lrs = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **k):
        opt_lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    torch.optim.Adam.step = spy
    try:
        fit(model, loss_fn, loader, config=cfg, device="cpu", progress=False)
    finally:
        torch.optim.Adam.step = real_step
    assert opt_lrs == pytest.approx(lr_schedule(cfg, len(loader)))


def test_resume_restores_the_schedule_position(tmp_path):
    cfg = dataclasses.replace(CFG, epochs=3, lr_schedule="cosine", warmup_steps=4, lr_final=1e-4)
    _, full = run(cfg=cfg, ckpt=tmp_path / "full.pt")
    with pytest.raises(KeyboardInterrupt):
        run(cfg=cfg, ckpt=tmp_path / "resumed.pt", validate=crash_in_epoch(2))
    ckpt = torch.load(tmp_path / "resumed.pt", weights_only=False)
    assert ckpt["scheduler"]["last_epoch"] == 8  # one epoch of 8 optimiser steps taken
    _, resumed = run(cfg=cfg, ckpt=tmp_path / "resumed.pt", validate=lambda m: {})
    assert resumed.resumed_from_epoch == 1
    assert [h["lr"] for h in resumed.history] == pytest.approx([h["lr"] for h in full.history])
    assert resumed.history[-1]["lr_end"] == pytest.approx(1e-4)


def test_schedule_config_errors_are_clear():
    with pytest.raises(ConfigError, match="not both"):
        FitConfig(warmup_steps=5, warmup_fraction=0.1)
    with pytest.raises(ConfigError, match="above lr"):
        FitConfig(lr=1e-3, lr_final=1e-2, lr_schedule="cosine")
    with pytest.raises(ConfigError, match="does not use it"):
        FitConfig(lr_final=1e-5, lr_schedule="step")
    with pytest.raises(ConfigError, match="< 1"):
        FitConfig(warmup_fraction=1.0)


_TWICE = """
import sys, torch
sys.path.insert(0, {root!r})
from tests.test_train import CFG, run
import dataclasses
model, _ = run(cfg=dataclasses.replace(CFG, epochs=2, lr_schedule="cosine", warmup_steps=3, precision={prec!r}))
torch.save(model.state_dict(), {out!r})
"""


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_two_fresh_processes_train_identical_weights(tmp_path, precision):
    """The same config trained in two fresh Python processes gives bit-identical weights (seeded model, loader,
    global RNG and schedule; deterministic CPU kernels), in fp32 and in fit's default precision."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    outs = []
    for i in range(2):
        out = str(tmp_path / f"w{i}.pt")
        subprocess.run([sys.executable, "-c", _TWICE.format(root=root, prec=precision, out=out)], check=True,
                       cwd=root, timeout=120)
        outs.append(torch.load(out))
    assert outs[0].keys() == outs[1].keys()
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_loader_visits_every_sample_once_per_epoch():
    x = torch.arange(100)
    loader = TensorLoader(x, batch_size=32, seed=0)
    assert len(loader) == 4
    seen = torch.cat([b[0] for b in loader])
    assert sorted(seen.tolist()) == list(range(100))
    assert not torch.equal(seen, torch.cat([b[0] for b in loader]))  # reshuffled
    assert len(TensorLoader(x, batch_size=32, drop_last=True)) == 3
    with pytest.raises(ValueError):
        TensorLoader(x, torch.arange(5), batch_size=4)


def test_predict_is_independent_of_batch_size():
    model = toy_model()
    x, _ = toy_data()
    model.train()
    a = predict(model, x, batch_size=1)
    b = predict(model, x, batch_size=1000)
    torch.testing.assert_close(a, b)
    assert model.training  # mode restored


def test_parameters_subset_trains_only_those():
    x, y = toy_data()
    model = toy_model()
    frozen = model[0].weight.clone()
    fit(model, loss_fn, TensorLoader(x, y, batch_size=32), config=CFG, parameters=model[3].parameters(),
        device="cpu", progress=False)
    assert torch.equal(model[0].weight, frozen)
