import pytest
import torch

from rotcore import judges
from rotcore.config import ConfigError
from rotcore.data import load_mnist


def test_judges_train_once_then_load(runs_dir, mnist_available):
    a = judges.angle_judge("smoke", progress=False)
    ckpts = list((runs_dir / "judges").glob("angle-*/checkpoint.pt"))
    assert len(ckpts) == 1
    mtime = ckpts[0].stat().st_mtime
    b = judges.angle_judge("smoke", progress=False)
    assert ckpts[0].stat().st_mtime == mtime  # loaded, not retrained
    x = load_mnist("test").x[:8]
    assert torch.equal(a.predict_deg(x), b.predict_deg(x))
    assert ((a.predict_deg(x) >= 0) & (a.predict_deg(x) < 360)).all()
    # its evaluation in one pass: the per-image errors are the readings behind the summary, seed-major
    test = load_mnist("test").head(40)
    summary, per_digit = judges.evaluate_angle_judge(a, test, seeds=(0, 1))
    s2, _, err = judges.evaluate_angle_judge(a, test, seeds=(0, 1), per_image=True)
    assert err.shape == (80,) and s2 == summary
    assert err.mean().item() == pytest.approx(summary["mae_deg"], rel=1e-5)
    assert err[40:].mean().item() != pytest.approx(err[:40].mean().item())  # two draws, not one read twice


def test_digit_judges_are_separate(runs_dir, mnist_available):
    rot = judges.digit_judge("smoke", progress=False)
    up = judges.digit_judge("smoke", rotated=False, progress=False)
    assert rot.config.rotated and not up.config.rotated
    assert {p.parent.name.split("-")[1] for p in (runs_dir / "judges").glob("*/checkpoint.pt")} == {"rotated", "upright"}
    test = load_mnist("test").head(50)
    df = judges.evaluate_digit_judge(up, test, [0.0, 90.0])
    assert list(df.angle_deg) == [0.0, 90.0] and {"acc_pct", "acc_pct_9"} <= set(df.columns)


def test_judge_config_errors():
    with pytest.raises(ConfigError, match="unknown profile"):
        judges.angle_judge("huge")
    with pytest.raises(ConfigError, match="interpolation"):
        judges.AngleJudgeConfig(interpolation="lanczos")
    with pytest.raises(ConfigError, match="binarize_prob"):
        judges.DigitJudgeConfig(binarize_prob=2.0)
    with pytest.raises(ConfigError, match="binarize_prob"):
        judges.AngleJudgeConfig(binarize_prob=-0.1)


def test_angle_judge_trains_on_bilinear_rotations_as_at_test():
    from rotcore.rotate import rotate_batch

    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    out, angle = judges._augment(x, interpolation="bicubic", binarize_prob=0.0, bilinear_prob=1.0)
    assert torch.equal(out, rotate_batch(x, angle, interpolation="bilinear").clamp(0, 1))
    torch.manual_seed(1)
    out, angle = judges._augment(x, interpolation="bicubic", binarize_prob=0.0, bilinear_prob=0.0)
    assert torch.equal(out, rotate_batch(x, angle, interpolation="bicubic").clamp(0, 1))
    with pytest.raises(ConfigError, match="bilinear_prob"):
        judges.AngleJudgeConfig(bilinear_prob=1.5)
    # the published angle judge takes more optimiser steps than the former 10 epochs at batch 256
    cpu = judges.ANGLE_JUDGE_PROFILES["cpu"]
    assert cpu.bilinear_prob > 0 and cpu.fit.epochs / cpu.fit.batch_size > 10 / 256
