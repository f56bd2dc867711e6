import gzip
import shutil
import time

import pytest
import torch

from rotcore import data, paths
from rotcore.data import MNIST_FILES, load_mnist, mnist_rot_replica

PUBLISHED_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
PUBLISHED_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_label_counts(mnist_available):
    train, test = load_mnist("train"), load_mnist("test")
    assert train.x.shape == (60_000, 1, 28, 28) and test.x.shape == (10_000, 1, 28, 28)
    assert train.x.dtype == torch.float32 and 0 <= train.x.min() and train.x.max() == 1
    assert torch.bincount(train.y).tolist() == PUBLISHED_TRAIN
    assert torch.bincount(test.y).tolist() == PUBLISHED_TEST


def test_gz_files_are_unpacked_into_the_cache(tmp_path, monkeypatch, mnist_available):
    """A read-only data root with only .gz files works: they are unpacked into ROTBOOK_CACHE."""
    src = paths.data_root() / "MNIST" / "raw"
    if not (src / (MNIST_FILES[0] + ".gz")).exists():
        pytest.skip("the offline data root has no .gz files")
    root = tmp_path / "data" / "MNIST" / "raw"
    root.mkdir(parents=True)
    for name in MNIST_FILES:
        shutil.copy(src / f"{name}.gz", root / f"{name}.gz")
    monkeypatch.setenv("ROTBOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ROTBOOK_CACHE", str(tmp_path / "cache"))
    data._load_mnist_cached.cache_clear()
    assert data.mnist_root(download=False) == tmp_path / "cache"
    assert all((tmp_path / "cache" / "MNIST" / "raw" / n).is_file() for n in MNIST_FILES)
    assert len(load_mnist("test")) == 10_000


def test_uncompressed_files_are_used_in_place(tmp_path, monkeypatch, mnist_available):
    root = tmp_path / "data" / "MNIST" / "raw"
    root.mkdir(parents=True)
    src = data.mnist_root(download=False) / "MNIST" / "raw"
    for name in MNIST_FILES:
        shutil.copy(src / name, root / name)
    monkeypatch.setenv("ROTBOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ROTBOOK_CACHE", str(tmp_path / "cache"))
    assert data.mnist_root(download=False) == tmp_path / "data"
    assert not (tmp_path / "cache").exists()


def test_missing_data_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("ROTBOOK_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("ROTBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(paths.MissingDataError, match="Set ROTBOOK_DATA"):
        data.mnist_root(download=False)


def test_missing_data_and_no_network_fails_fast(tmp_path, monkeypatch):
    """With neither files nor network, the error comes within seconds and names the variable to set."""
    import torchvision.datasets.mnist as tv

    monkeypatch.setenv("ROTBOOK_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("ROTBOOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tv.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # a closed port: refused at once
    t0 = time.perf_counter()
    with pytest.raises(paths.MissingDataError, match="ROTBOOK_DATA=../shared/data"):
        load_mnist("train")
    assert time.perf_counter() - t0 < 30


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        load_mnist("validation")


def test_corrupt_gz_is_not_left_half_written(tmp_path, monkeypatch):
    root = tmp_path / "data" / "MNIST" / "raw"
    root.mkdir(parents=True)
    for name in MNIST_FILES:
        with gzip.open(root / f"{name}.gz", "wb") as f:
            f.write(b"not mnist")
    (root / f"{MNIST_FILES[0]}.gz").write_bytes(b"garbage, not gzip")
    monkeypatch.setenv("ROTBOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ROTBOOK_CACHE", str(tmp_path / "cache"))
    with pytest.raises(OSError):
        data.mnist_root(download=False)
    assert not (tmp_path / "cache" / "MNIST" / "raw" / MNIST_FILES[0]).exists()


def test_replica_protocol(mnist_available):
    rep = mnist_rot_replica(seed=0)
    assert {k: len(v) for k, v in rep.items()} == {"train": 10_000, "val": 2_000, "test": 50_000}
    for split in rep.values():
        assert split.angle_deg.min() >= 0 and split.angle_deg.max() < 360
        assert split.x.shape[1:] == (1, 28, 28)
    # angles are uniform: each quadrant holds about a quarter of the test set
    counts = torch.bincount((rep["test"].angle_deg // 90).long(), minlength=4).float() / 50_000
    assert (counts - 0.25).abs().max() < 0.01


def test_replica_is_deterministic_and_seeded(mnist_available):
    a, b, c = mnist_rot_replica(seed=3), mnist_rot_replica(seed=3), mnist_rot_replica(seed=4)
    for k in a:
        assert torch.equal(a[k].x, b[k].x) and torch.equal(a[k].angle_deg, b[k].angle_deg)
    assert not torch.equal(a["train"].angle_deg, c["train"].angle_deg)


def test_replica_splits_do_not_share_digits(mnist_available):
    up = mnist_rot_replica(seed=0, rotate=False)
    key = lambda imgs: {hash(row.numpy().tobytes()) for row in (imgs.x * 255).round().to(torch.uint8).flatten(1)}  # noqa: E731
    train, test = key(up["train"]), key(up["test"])
    assert len(train & test) < 20  # MNIST itself holds a few exact duplicate images


def test_replica_rotates_by_the_recorded_angle(mnist_available):
    rot, up = mnist_rot_replica(seed=0), mnist_rot_replica(seed=0, rotate=False)
    from rotcore.rotate import rotate_batch

    x = rotate_batch(up["val"].x[:50], up["val"].angle_deg[:50])
    assert torch.equal(x, rot["val"].x[:50])


def test_images_container():
    imgs = data.Images(torch.rand(5, 1, 4, 4), torch.arange(5))
    assert len(imgs.head(2)) == 2 and len(imgs.where(imgs.y > 2)) == 2
    r = imgs.rotated(90.0)
    assert torch.equal(r.x, torch.rot90(imgs.x, 1, dims=(-2, -1))) and r.angle_deg.tolist() == [90.0] * 5
    with pytest.raises(ValueError):
        data.Images(torch.rand(5, 1, 4, 4), torch.arange(4))
    tr, va = data.split_train_val(imgs, 2, seed=0)
    assert len(tr) == 3 and len(va) == 2 and set(tr.y.tolist()) | set(va.y.tolist()) == set(range(5))


@pytest.mark.usefixtures("mnist_available")
def test_mnist_splits_are_the_documented_seeded_splits():
    from rotcore.data import mnist_splits, split_train_val, subset

    train, val, test = mnist_splits(train_size=300, val_size=100, test_size=50)
    full_train, full_val = split_train_val(load_mnist("train"), 100, seed=0)
    assert torch.equal(val.x, full_val.x) and torch.equal(train.x, subset(full_train, 300, seed=1).x)
    assert torch.equal(test.x, subset(load_mnist("test"), 50, seed=2).x)
    # a smaller size picks a subset of a larger one's images, and validation never leaks into training
    bigger, _, _ = mnist_splits(train_size=600, val_size=100, test_size=0)
    assert torch.equal(bigger.x[:300], train.x)
    assert not set(map(bytes, val.x.flatten(1).numpy())) & set(map(bytes, bigger.x.flatten(1).numpy()))


def test_mnist_train_count_matches_the_splits_without_reading_them(mnist_available):
    from rotcore.data import mnist_splits, mnist_train_count

    for train_size, val_size in ((None, 5_000), (1_000, 500), (100_000, 2_000)):
        train, val, _ = mnist_splits(train_size=train_size, val_size=val_size, test_size=0)
        assert mnist_train_count(train_size, val_size) == len(train) and len(val) == val_size
