"""Where data, caches, runs and results live.

Every location comes from an environment variable with a default under the project root, so the same code
runs from a checkout, in CI (which points ``ROTBOOK_DATA`` at ``../shared/data``) and in Colab.

=====================  ==========================================  =======================================
variable               default                                     holds
=====================  ==========================================  =======================================
``ROTBOOK_ROOT``       the checkout that holds ``rotcore/``, else  base for the defaults below
                       the current directory
``ROTBOOK_DATA``       ``../shared/data`` beside the checkout      raw data (may be read-only): ``MNIST/raw``,
                       when it exists, else ``$ROTBOOK_ROOT/data``  ``photos/``, ``clothing/``, ``taesd/``
``ROTBOOK_CACHE``      ``$ROTBOOK_ROOT/.cache``                    derived data we may write (unpacked MNIST)
``ROTBOOK_RUNS``       ``$ROTBOOK_ROOT/runs``                      checkpoints, one folder per config
=====================  ==========================================  =======================================

Results of the published profile (:data:`PUBLISHED_PROFILE`, ``cpu``) go to ``$ROTBOOK_ROOT/results`` and the
executed notebooks to ``book/studies`` (both committed); every other profile (``smoke``, ``gpu``) writes under
``$ROTBOOK_ROOT/_build/runs/<profile>/`` so that other runs never overwrite published numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The profile whose executed notebooks and results JSON are committed and shown on the site. The one place
#: it is named: ``cpu`` is sized for the 2-core machines this project has (each study <= 25 min there);
#: ``gpu`` keeps the anchors' scale for GPU users and would be published only from a real GPU run.
PUBLISHED_PROFILE = "cpu"
#: Every study defines these profiles (sizes and epochs only, never code paths).
PROFILES = ("smoke", "cpu", "gpu")


class MissingDataError(FileNotFoundError):
    """Raised when a data set is neither on disk nor downloadable; the message says what to set."""


def project_root() -> Path:
    env = os.environ.get("ROTBOOK_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists() and (here / "rotcore").is_dir():
        return here
    return Path.cwd().resolve()


def _env_dir(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def default_data_root() -> Path:
    """``../shared/data`` beside the checkout when it holds MNIST (the offline machines), else ``./data``
    (where torchvision downloads MNIST on a networked machine). The one place this default is decided: the CLI,
    ``make`` and the notebooks all use it."""
    root = project_root()
    shared = root.parent / "shared" / "data"
    return shared.resolve() if (shared / "MNIST").is_dir() else root / "data"


def data_root() -> Path:
    return _env_dir("ROTBOOK_DATA", default_data_root())


def cache_root() -> Path:
    return _env_dir("ROTBOOK_CACHE", project_root() / ".cache")


def runs_root() -> Path:
    return _env_dir("ROTBOOK_RUNS", project_root() / "runs")


def profile_root(profile: str) -> Path:
    """Folder for the outputs of a non-published profile (executed notebooks, results JSON)."""
    return project_root() / "_build" / "runs" / profile


def results_dir(profile: str) -> Path:
    """``results/`` for the published profile, a scratch folder for every other profile.

    ``ROTBOOK_RESULTS_STAGING`` (set by ``rotbook run`` for the notebook's kernel) redirects the write to a
    staging folder: the runner moves the file into place only when the whole notebook succeeded."""
    staging = os.environ.get("ROTBOOK_RESULTS_STAGING")
    if staging:
        return Path(staging).expanduser().resolve()
    if profile == PUBLISHED_PROFILE:
        return project_root() / "results"
    return profile_root(profile) / "results"


def studies_dir(profile: str) -> Path:
    """Where the runner writes executed notebooks for ``profile``."""
    if profile == PUBLISHED_PROFILE:
        return project_root() / "book" / "studies"
    return profile_root(profile) / "studies"
