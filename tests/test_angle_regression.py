"""Study 04: circular error, codecs, the rotation-safe crop, rot90 TTA, heads, Grad-CAM, batch probing,
abstention, splits, manifests and the FiftyOne data set."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from rotcore.config import ConfigError
from rotcore.data import PhotoRecord
from rotcore.explain import angle_confidence_score, grad_cam
from rotcore.metrics import circular_error_deg, coverage_curve, error_by_angle
from rotcore.models.angle_resnet import AngleResNet, AngleResNetConfig, BrightnessCentroid, von_mises_target
from rotcore.rotate import (
    angle_to_vec,
    random_view,
    rot90_tta_vec,
    rotate_crop_batch,
    rotate_vec,
    vec_to_angle,
)
from rotcore.studies import angle_regression as study
from rotcore.train import probe_batch_size

# ---------------------------------------------------------------------------------------------------------
# Circular error and codecs


def test_circular_error_identities():
    t = torch.tensor
    assert circular_error_deg(t([37.0]), t([37.0])).item() == 0
    assert circular_error_deg(t([359.0]), t([1.0])).item() == pytest.approx(2.0)
    assert circular_error_deg(t([1.0]), t([359.0])).item() == pytest.approx(2.0)
    g = torch.Generator().manual_seed(0)
    a, b = (720 * torch.rand(1000, generator=g, dtype=torch.float64) - 360 for _ in range(2))
    e = circular_error_deg(a, b)
    assert torch.allclose(e, circular_error_deg(b, a))
    assert (e >= 0).all() and (e <= 180).all()
    assert circular_error_deg(t([10.0]), t([190.0])).item() == pytest.approx(180.0)


def test_vec_angle_codec_round_trips():
    a = torch.linspace(0, 359.9, 3600, dtype=torch.float64)
    assert torch.allclose(vec_to_angle(angle_to_vec(a)), a, atol=1e-9)
    assert torch.allclose(vec_to_angle(3.5 * angle_to_vec(a)), a, atol=1e-9)  # the length does not matter
    v = angle_to_vec(a)
    assert torch.allclose(rotate_vec(v, 30.0), angle_to_vec(a + 30.0), atol=1e-12)


# ---------------------------------------------------------------------------------------------------------
# The rotation-safe crop


@pytest.mark.parametrize("size", [8, 37])
def test_rotation_safe_crop_never_shows_padding(size):
    x = torch.ones(4, 3, size, size, dtype=torch.float64)
    angles = torch.linspace(0, 360, 721, dtype=torch.float64)[:-1]
    for chunk in angles.split(4):
        out = rotate_crop_batch(x[: len(chunk)], chunk, out_size=size, border="crop")
        assert out.min().item() > 1 - 1e-9, "padding leaked into the crop"
        scale, shift = random_view(len(chunk), min_scale=0.5, max_shift=0.3)
        out = rotate_crop_batch(x[: len(chunk)], chunk, out_size=size - 3, border="crop", scale=scale, shift=shift)
        assert out.min().item() > 1 - 1e-9, "a random view leaked padding"
    # the full-square strategies do show corners at 45°
    assert rotate_crop_batch(x[:1], 45.0, out_size=size, border="zeros").min() == 0


def test_full_view_quarter_turn_matches_torch_rot90():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    for k in range(4):
        out = rotate_crop_batch(x, 90.0 * k, out_size=16, border="reflect")
        assert torch.allclose(out, torch.rot90(x, k, dims=(-2, -1)), atol=1e-9)


def test_crop_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        rotate_crop_batch(torch.rand(1, 3, 8, 10), 10.0, out_size=8)


# ---------------------------------------------------------------------------------------------------------
# rot90 TTA and the centroid baseline


def test_centroid_baseline_is_rot90_equivariant_and_tta_exact():
    model = BrightnessCentroid()
    x = torch.rand(8, 3, 20, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    v = model(x)
    for k in range(4):
        assert torch.allclose(model(torch.rot90(x, k, dims=(-2, -1))), rotate_vec(v, 90.0 * k), atol=1e-10)
    assert torch.allclose(rot90_tta_vec(model, x), v.float(), atol=1e-6)  # TTA computes in float32


def test_centroid_reads_a_bright_top_as_upright():
    x = torch.zeros(1, 3, 16, 16)
    x[..., :4, :] = 1  # bright sky at the top
    assert circular_error_deg(vec_to_angle(BrightnessCentroid()(x)), torch.tensor([0.0])).item() < 1e-4
    turned = torch.rot90(x, 1, dims=(-2, -1))  # turned 90° counter-clockwise: sky on the left
    assert circular_error_deg(vec_to_angle(BrightnessCentroid()(turned)), torch.tensor([90.0])).item() < 1e-4


def test_tta_equals_manual_average_for_any_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    x = torch.rand(3, 3, 10, 10)
    net(x)
    manual = sum(rotate_vec(net(torch.rot90(x, k, dims=(-2, -1))), -90.0 * k) for k in range(4)) / 4
    assert torch.allclose(rot90_tta_vec(net, x), manual, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Heads


def test_bins_head_decodes_its_peak_and_targets_are_distributions():
    model = AngleResNet(AngleResNetConfig(head="bins", bins=72))
    logits = torch.full((3, 72), -50.0)
    for i, b in enumerate((0, 18, 71)):
        logits[i, b] = 50.0
    assert torch.allclose(model.decode_deg(logits), torch.tensor([0.0, 90.0, 355.0]), atol=1e-3)
    assert (model.to_vec(torch.randn(5, 72)).norm(dim=-1) <= 1 + 1e-6).all()
    target = von_mises_target(torch.tensor([92.0, 3.0]), model.bin_vecs, 30.0)
    assert torch.allclose(target.sum(-1), torch.ones(2))
    assert target.argmax(-1).tolist() == [18, 1]


def test_heads_forward_and_loss_are_finite():
    x = torch.rand(2, 3, 32, 32)
    for head in ("vec", "bins"):
        m = AngleResNet(AngleResNetConfig(head=head))
        out = m(x)
        assert out.shape == (2, 2 if head == "vec" else 72)
        assert torch.isfinite(m.loss(out, torch.tensor([10.0, 200.0])))


def test_config_errors():
    with pytest.raises(ConfigError, match="head"):
        AngleResNetConfig(head="cls")
    with pytest.raises(ConfigError, match="unknown run"):
        study.resolve_config("smoke", {"runs": ["seed", "nope"]})
    with pytest.raises(ConfigError, match="must include 'seed'"):
        study.resolve_config("smoke", {"runs": ["ours_vec"]})
    with pytest.raises(ConfigError, match="store_size"):
        study.resolve_config("smoke", {"input_size": 64})
    with pytest.raises(ConfigError):
        study.resolve_config("smoke", {"fiftyone": "maybe"})


# ---------------------------------------------------------------------------------------------------------
# Grad-CAM: with a global-average-pooled linear head it equals CAM (Zhou et al. 2016)


def test_grad_cam_equals_cam_for_gap_linear_head():
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
    linear = nn.Linear(6, 2)
    model = nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)
    x = torch.rand(3, 3, 8, 8)
    cams = grad_cam(model, features, x, angle_confidence_score(lambda out: out))
    with torch.no_grad():
        a = features(x)
        u = nn.functional.normalize(model(x), dim=-1)  # the direction each image's score projects on
        w = u @ linear.weight  # (B, K): d score / d pooled feature
        expected = torch.relu((w[:, :, None, None] * a).sum(1))
        expected = expected / expected.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    assert cams.shape == (3, 8, 8)
    assert torch.allclose(cams, expected, atol=1e-5)
    assert cams.min() >= 0 and cams.max() <= 1 + 1e-6


# ---------------------------------------------------------------------------------------------------------
# Batch size probing with a fake OOM


def test_probe_batch_size_halves_on_oom():
    tried = []

    def step(bs):
        tried.append(bs)
        if bs > 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    assert probe_batch_size(step, 256) == 64
    assert tried == [256, 128, 64]

    def plain_oom(bs):
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(RuntimeError, match="not even batch size 8"):
        probe_batch_size(plain_oom, 32, min_size=8)

    def broken(bs):
        raise ValueError("a real bug")

    with pytest.raises(ValueError, match="a real bug"):
        probe_batch_size(broken, 32)


# ---------------------------------------------------------------------------------------------------------
# Abstention and error by angle


def test_coverage_curve():
    g = torch.Generator().manual_seed(0)
    err = 180 * torch.rand(500, generator=g)
    full = coverage_curve(err, torch.rand(500, generator=g), (100,))
    assert full.mae_deg.iloc[0] == pytest.approx(err.double().mean().item(), rel=1e-9)
    oracle = coverage_curve(err, -err, (10, 50, 100))  # a perfect confidence
    assert oracle.mae_deg.is_monotonic_increasing
    assert oracle.mae_deg.iloc[0] == pytest.approx(torch.sort(err).values[:50].double().mean().item(), rel=1e-9)


def test_error_by_angle_bins():
    df = error_by_angle(torch.tensor([1.0, 3.0, 10.0]), torch.tensor([5.0, 25.0, 359.0]), bin_deg=30)
    assert df.angle_deg.tolist() == [15.0, 345.0]
    assert df.mae_deg.tolist() == [2.0, 10.0] and df.n.tolist() == [2, 1]


# ---------------------------------------------------------------------------------------------------------
# Splits and manifests (no FiftyOne)


@pytest.fixture
def photo_data(tmp_path, monkeypatch):
    from rotcore.data import photos_root

    try:
        photos_root()
    except FileNotFoundError:
        pytest.skip("no offline photos: set ROTBOOK_DATA to a folder with photos/")
    monkeypatch.setenv("ROTBOOK_CACHE", str(tmp_path / "cache"))
    cfg = study.resolve_config("smoke", {"fiftyone": "off"})
    return cfg, study.prepare_photos(cfg)


def test_split_by_photo_and_leaky_split(photo_data):
    cfg, data = photo_data
    assert "skipped" in data.registry  # never silent
    train, val, test = (set(t.tolist()) for t in (data.train_idx, data.val_idx, data.test_idx))
    assert not (train & val) and not (train & test) and not (val & test)
    assert all(data.records[i].split == "train" for i in train | val)
    assert all(data.records[i].split != "train" for i in test)
    sets = study.eval_sets(data, cfg)
    assert set(sets["test"].photo.tolist()) == test
    # the seed's split is by rotated copy: test photos' copies reach training when there are several copies
    leaky_cfg = study.resolve_config("smoke", {"fiftyone": "off", "leaky_copies": 4})
    tr, te = study.leaky_split(data, leaky_cfg)
    assert len(te.photo) == round(0.2 * 4 * len(data.records))
    assert set(te.photo.tolist()) & set(tr.photo.tolist())
    # evaluation sets are fixed: the same seed gives the same angles
    assert torch.equal(study.eval_sets(data, cfg)["test"].angle_deg, sets["test"].angle_deg)
    # a carried manifest gives the same samples without touching FiftyOne
    again = study.prepare_photos(study.resolve_config("smoke", {"fiftyone": "off", "manifest_file": str(data.manifest)}))
    assert again.records == data.records and torch.equal(again.squares, data.squares)
    assert "skipped" in again.registry


def test_manifest_round_trip_and_fingerprint(tmp_path):
    from rotcore import fiftyone_io

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(b"x" * (3 if name == "a.jpg" else 5))
    recs = [PhotoRecord(folder / "a.jpg", "s", "cc", "train"), PhotoRecord(folder / "b.jpg", "s", "cc", "val")]
    path = fiftyone_io.write_manifest(recs, tmp_path / "m.json")
    assert fiftyone_io.read_manifest(path) == recs
    moved = tmp_path / "elsewhere"
    folder.rename(moved)
    with pytest.raises(FileNotFoundError, match="missing"):
        fiftyone_io.read_manifest(path)
    assert [r.path for r in fiftyone_io.read_manifest(path, root=moved)] == [moved / "a.jpg", moved / "b.jpg"]
    before = fiftyone_io.fingerprint(fiftyone_io.read_manifest(path, root=moved))
    (moved / "b.jpg").write_bytes(b"y" * 9)  # a replaced file
    assert fiftyone_io.fingerprint(fiftyone_io.read_manifest(path, root=moved)) != before


# ---------------------------------------------------------------------------------------------------------
# The FiftyOne data set: idempotent, detects a changed folder, reloads in a new process

_BUILD = textwrap.dedent("""
    import json, shutil, sys
    from pathlib import Path
    from rotcore import fiftyone_io
    from rotcore.data import photo_records
    src, folder, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    out = {}
    if mode == "build":
        folder.mkdir()
        for p in sorted(src.glob("*.jpg"))[:4]:
            shutil.copy(p, folder / p.name)
        reports = [fiftyone_io.sync_photo_dataset(photo_records(folder), name="t04")[1] for _ in range(2)]
        shutil.copy(sorted(src.glob("*.jpg"))[5], folder / "extra.jpg")
        reports.append(fiftyone_io.sync_photo_dataset(photo_records(folder), name="t04")[1])
        out["reports"] = [[r.status, r.added, r.removed, r.samples] for r in reports]
    fo = fiftyone_io.import_fiftyone()
    ds = fo.load_dataset("t04")
    out["n"], out["splits"] = len(ds), sorted(set(ds.values("split")))
    out["tags"] = sorted(set(t for ts in ds.values("tags") for t in ts))
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.fiftyone
def test_fiftyone_dataset_is_idempotent_and_persistent(tmp_path):
    from rotcore import fiftyone_io
    from rotcore.data import photos_root

    ok, why = fiftyone_io.available()
    if not ok:
        pytest.skip(why)
    try:
        src = photos_root()
    except FileNotFoundError:
        pytest.skip("no offline photos")
    env = {**os.environ, "ROTBOOK_FIFTYONE_DB": str(tmp_path / "db"), "FIFTYONE_DO_NOT_TRACK": "true"}
    env.pop("FIFTYONE_DATABASE_DIR", None)

    def run(mode):
        proc = subprocess.run([sys.executable, "-c", _BUILD, str(src), str(tmp_path / "photos"), mode], env=env,
                              capture_output=True, text=True, timeout=240)
        text = proc.stdout + proc.stderr
        if proc.returncode != 0 and any(s in text for s in ("ServiceListenTimeout", "MongoDB could not", "mongod")):
            pytest.skip(f"FiftyOne's database cannot start here: {text.strip().splitlines()[-1]}")
        assert proc.returncode == 0, text[-3000:]
        return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))[6:])

    first = run("build")
    assert first["reports"] == [["created", 4, 0, 4], ["unchanged", 0, 0, 4], ["updated", 1, 0, 5]]
    again = run("load")  # a new process, the same database folder
    assert again["n"] == 5 and again["splits"] == first["splits"] and again["tags"] == first["splits"]


def test_ensemble_of_identical_runs_is_the_run():
    g = torch.Generator().manual_seed(0)
    true = 360 * torch.rand(20, generator=g)
    pred = 360 * torch.rand(20, generator=g)
    ev = study.Evaluation("ours_vec", "test", true, pred, torch.rand(20, generator=g) + 0.1,
                          circular_error_deg(pred, true), torch.arange(20), False)
    ens = study.ensemble({"ours_vec": {"test": ev}, "ours_bins": {"test": ev}})
    assert circular_error_deg(ens["test"].pred_deg, pred).max() < 1e-3
    assert torch.allclose(ens["test"].err_deg, ev.err_deg, atol=1e-3)
    assert study.ensemble({"ours_vec": {"test": ev}}) is None
