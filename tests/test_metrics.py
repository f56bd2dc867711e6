import pytest
import torch
from torch import nn

from rotcore.metrics import (
    accuracy_by_angle,
    accuracy_pct,
    angle_error_summary,
    circular_error_deg,
    confusion_matrix,
    equivariance_error,
    invariance_error,
    invariance_errors,
    latent_invariance_error,
    precision_recall_f1,
    psnr_db,
    six_nine_confusion,
    ssim,
)
from rotcore.rotate import rotate_batch


def test_circular_error_identities():
    cae = lambda a, b: circular_error_deg(torch.tensor([float(a)]), torch.tensor([float(b)])).item()  # noqa: E731
    assert cae(37, 37) == 0
    assert cae(359, 1) == pytest.approx(2) and cae(1, 359) == pytest.approx(2)
    assert cae(0, 180) == pytest.approx(180) and cae(10, 190) == pytest.approx(180)
    assert cae(720 + 5, 0) == pytest.approx(5)
    a, b = (torch.rand(2, 1000, dtype=torch.float64) * 1000 - 500).unbind(0)
    e = circular_error_deg(a, b)
    assert torch.allclose(e, circular_error_deg(b, a)) and e.max() <= 180 and e.min() >= 0


def test_angle_error_summary():
    s = angle_error_summary(torch.tensor([0.0, 1.0, 3.0, 6.0, 12.0, 100.0]))
    assert s["mae_deg"] == pytest.approx(122 / 6)
    assert s["within2_pct"] == pytest.approx(100 * 2 / 6) and s["within15_pct"] == pytest.approx(100 * 5 / 6)
    assert s["median_deg"] == pytest.approx(4.5)


def test_accuracy_and_confusion_against_sklearn():
    from sklearn.metrics import confusion_matrix as sk_cm
    from sklearn.metrics import precision_recall_fscore_support

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (500,), generator=g)
    p = torch.where(torch.rand(500, generator=g) < 0.7, y, torch.randint(0, 4, (500,), generator=g))
    cm = confusion_matrix(y, p, 4)
    assert cm.tolist() == sk_cm(y.numpy(), p.numpy(), labels=[0, 1, 2, 3]).tolist()
    prf = precision_recall_f1(cm)
    sp, sr, sf, _ = precision_recall_fscore_support(y.numpy(), p.numpy())
    assert torch.allclose(prf["precision_pct"], torch.tensor(100 * sp, dtype=torch.float64))
    assert torch.allclose(prf["f1_pct"], torch.tensor(100 * sf, dtype=torch.float64))
    assert accuracy_pct(p, y) == pytest.approx(100 * (p == y).float().mean().item())
    logits = torch.nn.functional.one_hot(p, 4).float()
    assert accuracy_pct(logits, y) == accuracy_pct(p, y)


class Pool(nn.Module):
    """Sum over the image: invariant to every rotation that keeps the pixels (quarter turns)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.w * x.sum(dim=(-2, -1))


def test_invariance_error_of_an_invariant_model():
    x = torch.rand(4, 1, 9, 9)
    assert invariance_error(Pool(), x, [90, 180, 270], dtype=torch.float64) == {90.0: 0.0, 180.0: 0.0, 270.0: 0.0}
    assert invariance_error(Pool(), x, 45.0) > 0  # corners are cut
    assert next(Pool().parameters()).dtype == torch.float32


def test_invariance_errors_table_matches_the_single_metrics():
    torch.manual_seed(0)
    x = torch.rand(5, 1, 9, 9)
    models = {"pool": Pool(), "linear": nn.Sequential(nn.Flatten(), nn.Linear(81, 4))}
    df = invariance_errors(models, x, [90, 180, 45], labels={"pool": "sum pooling"})
    assert list(df.index) == ["pool", "linear"] and list(df.label) == ["sum pooling", "linear"]
    assert list(df.columns) == ["label", "rot90", "rot180", "rot45", "rot90_max"]
    assert df.loc["pool", "rot90_max"] == 0.0 and df.loc["pool", "rot45"] > 0  # quarter turns exact (float64)
    lin = models["linear"]
    assert df.loc["linear", "rot90"] == invariance_error(lin, x, 90.0, dtype=torch.float64)
    assert df.loc["linear", "rot45"] == invariance_error(lin, x, 45.0)
    assert df.loc["linear", "rot90_max"] == max(df.loc["linear", "rot90"], df.loc["linear", "rot180"])
    l2 = invariance_errors({"linear": lin}, x, [90, 45], distance="l2")
    assert l2.loc["linear", "rot90"] == latent_invariance_error(lin, x, 90.0, dtype=torch.float64)
    assert invariance_errors({"pool": Pool()}, x, [45]).rot90_max.isna().all()
    with pytest.raises(ValueError, match="distance"):
        invariance_errors(models, x, [90], distance="cosine")


def test_six_nine_confusion_counts_swaps_per_angle():
    y = torch.tensor([6, 6, 6, 6, 9, 9, 1])
    preds = {"a": torch.tensor([[6, 9, 9, 6, 6, 9, 1],    # 0°: 2 of 4 sixes read as 9, 1 of 2 nines as 6
                                [9, 9, 9, 9, 9, 9, 9]])}  # 180°: every six read as 9, no nine as 6
    df = six_nine_confusion(preds, y, [0.0, 180.0], names={"a": "model A"})
    assert list(df.columns) == ["model", "angle_deg", "six_as_nine_pct", "nine_as_six_pct"]
    assert df.model.tolist() == ["model A", "model A"] and df.angle_deg.tolist() == [0.0, 180.0]
    assert df.six_as_nine_pct.tolist() == [50.0, 100.0] and df.nine_as_six_pct.tolist() == [50.0, 0.0]
    assert six_nine_confusion({"b": preds["a"]}, y, [0.0, 180.0]).model.tolist() == ["b", "b"]
    with pytest.raises(ValueError, match="shape"):
        six_nine_confusion(preds, y, [0.0])
    # the figure both studies 03 and 05 draw from this table: one line per model in each panel, the data as given
    from rotcore import plots

    fig = plots.plot_six_nine(df, what="decoded ")
    left, right = fig.axes
    assert left.get_ylabel() == "% of decoded 6s read as 9" and right.get_title() == "9 → 6"
    assert list(left.lines[0].get_ydata()) == [50.0, 100.0] and list(right.lines[0].get_ydata()) == [50.0, 0.0]
    plots.plt.close(fig)


def test_equivariance_error_of_an_equivariant_map():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[0, 1.0, 0], [1, 4, 1], [0, 1, 0]])[None, None])  # rot90-symmetric stencil
    x = torch.rand(2, 1, 8, 8)
    rot = lambda t: torch.rot90(t, 1, dims=(-2, -1))  # noqa: E731
    assert equivariance_error(conv, x, rot, rot) < 1e-6
    assert equivariance_error(conv, x, rot) > 0.1  # not invariant


def test_accuracy_by_angle_matches_manual_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    x, y = torch.rand(30, 1, 8, 8), torch.randint(0, 3, (30,))
    df, preds = accuracy_by_angle(model, x, y, [0.0, 30.0, 90.0], batch_size=7)
    for i, a in enumerate([0.0, 30.0, 90.0]):
        manual = model(rotate_batch(x, a)).argmax(-1)
        assert torch.equal(preds[i], manual)
        row = df[(df.angle_deg == a) & (df.label == "all")].iloc[0]
        assert row.acc_pct == pytest.approx(100 * (manual == y).float().mean().item())
    assert set(df.label) == {"all", "0", "1", "2"}


def test_image_metrics():
    x = torch.rand(4, 1, 16, 16)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert 10 < psnr_db(noisy, x) < 30
    mse = ((noisy - x) ** 2).mean().item()
    assert psnr_db(noisy, x) == pytest.approx(10 * torch.log10(torch.tensor(1 / mse)).item(), rel=1e-4)


def test_the_app_error_metric_is_circular_error_deg():
    from rotcore.fiftyone_io import circular_error  # no FiftyOne needed: the import of fiftyone is lazy

    for p, t in [(359.0, 1.0), (10.0, 190.0), (725.0, 0.0), (-30.0, 30.0)]:
        assert circular_error(p, t) == circular_error_deg(torch.tensor(p, dtype=torch.float64),
                                                          torch.tensor(t, dtype=torch.float64)).item()
    assert circular_error(359.0, 1.0) == pytest.approx(2.0)


def test_intervals_apart_only_when_both_exist_and_do_not_touch():
    from rotcore.metrics import intervals_apart

    assert intervals_apart((1.0, 2.0), (2.5, 3.0)) and intervals_apart([2.5, 3.0], [1.0, 2.0])
    assert not intervals_apart((1.0, 2.0), (2.0, 3.0))  # touching ends overlap
    assert not intervals_apart((1.0, 3.0), (2.0, 2.5))
    assert not intervals_apart(None, (2.5, 3.0)) and not intervals_apart((1.0, 2.0), None)
