import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# Defaults for the whole session (before rotcore reads them): offline data beside the checkout when present,
# no progress bars, a headless matplotlib, offline hubs.
if "ROTBOOK_DATA" not in os.environ and (SHARED / "MNIST").is_dir():
    os.environ["ROTBOOK_DATA"] = str(SHARED)
os.environ.setdefault("ROTBOOK_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _have_mnist() -> bool:
    try:
        from rotcore.data import mnist_root

        mnist_root(download=False)
        return True
    except FileNotFoundError:
        return False


@pytest.fixture(scope="session")
def mnist_available():
    if not _have_mnist():
        pytest.skip("MNIST is not available offline: set ROTBOOK_DATA to a folder with MNIST/raw/")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """A private checkpoint folder for one test."""
    d = tmp_path / "runs"
    monkeypatch.setenv("ROTBOOK_RUNS", str(d))
    return d
