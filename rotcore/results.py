"""The results contract: every study writes ``results/<NN_name>.json`` through :func:`write_results`.

Schema (all studies)::

    {"study": "05_rotation_invariance", "profile": "cpu", "device": "CPU (2 cores, x86_64, <model name>)",
     "auto_precision": "bf16",                             # what fit's precision="auto" computed in
     "git_commit": "abc1234", "created": "2026-11-23T10:00:00Z", "runtime_s": 412.3,
     "metrics": {"rotmnist_test_error_pct": 0.71,         # flat: name -> number | string | null,
                 "rotmnist_test_error_pct_ci95": [0.6, 0.8], # or a [lo, hi] interval (rotcore.metrics.with_ci)
                 "rotmnist_test_error_pct_n": 3, ...},
     "config": {...}}                                      # the resolved study config

Only the published profile (:data:`rotcore.paths.PUBLISHED_PROFILE`, ``cpu``) may write into the committed ``results/`` folder; every other
profile writes under ``_build/runs/<profile>/results`` (see :mod:`rotcore.paths`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rotcore import config as _config
from rotcore import paths

REQUIRED_KEYS = ("study", "profile", "device", "git_commit", "created", "runtime_s", "metrics")


def describe_device(device: Any = None) -> str:
    """A human-readable name of the compute device, e.g. ``"NVIDIA H100 80GB HBM3"`` or ``"CPU (2 cores,
    x86_64, Intel(R) Xeon(R) Processor)"`` (the model name where ``/proc/cpuinfo`` gives one)."""
    import torch

    dev = torch.device(device) if device is not None else None
    if (dev is None or dev.type == "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(dev.index if dev is not None and dev.index is not None else 0)
    cpu = platform.processor() or platform.machine()
    model = cpu_model_name()
    return f"CPU ({os.cpu_count()} cores, {cpu}{', ' + model if model else ''})"


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``None``."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return None


def describe_precision(device: Any = None) -> str:
    """What :func:`rotcore.train.fit`'s ``precision="auto"`` computes in on ``device`` (default: the default
    device): ``"bf16"`` (bf16 autocast: CUDA, or a CPU with native bf16) or ``"fp32"``. Stamped on every results
    file, since the two train along different trajectories and at different speeds."""
    import torch

    from rotcore.train import default_device, resolve_precision

    return resolve_precision(torch.device(device) if device is not None else default_device(), "auto")


def git_commit(root: Path | None = None) -> str:
    """Short commit of the checkout (``+dirty`` when tracked files changed), or ``"unknown"``."""
    root = root or paths.project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def value_range(name: str) -> tuple[float, float]:
    """The range a metric's value can take, read from its name: ``*_pct*`` percentages [0, 100], ``*r2*`` at
    most 1, ``*auc*`` [0, 1], ``*mse*`` / ``*mae*`` at least 0; anything else unbounded."""
    inf = float("inf")
    if name.endswith("_n"):
        return 0.0, inf
    if "_pct" in name:
        return 0.0, 100.0
    if "r2" in name.split("_"):
        return -inf, 1.0
    if "auc" in name.split("_"):
        return 0.0, 1.0
    if "mse" in name or "_mae" in name or name.startswith("mae"):
        return 0.0, inf
    return -inf, inf


def _clean(name: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) or hasattr(v, "item") for v in value):
        return [_clean(name, v) for v in value]  # a [lo, hi] interval
    if hasattr(value, "item"):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    raise TypeError(f"metric {name!r} must be a number, string, None or a [lo, hi] pair (metrics are flat), "
                    f"got {type(value).__name__}")


class Stopwatch:
    """Wall-clock runtime of a study, started when the notebook starts."""

    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0


def write_results(study: str, metrics: Mapping[str, Any], *, profile: str, runtime_s: float,
                  config: Any = None, device: Any = None, out_dir: Path | None = None) -> Path:
    """Write ``<out_dir>/<study>.json`` (default :func:`rotcore.paths.results_dir`) and return its path.

    Raises ``PermissionError`` when a non-published profile would write into the committed ``results/``.
    """
    out_dir = Path(out_dir) if out_dir is not None else paths.results_dir(profile)
    published = (paths.project_root() / "results").resolve()
    if profile != paths.PUBLISHED_PROFILE and out_dir.resolve() == published:
        raise PermissionError(f"profile {profile!r} may not overwrite the published results in {published}")
    record = {
        "study": study,
        "profile": profile,
        "device": describe_device(device),
        "auto_precision": describe_precision(device),
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "runtime_s": round(float(runtime_s), 1),
        "metrics": {str(k): _clean(k, v) for k, v in metrics.items()},
        "config": _config.to_dict(config) if config is not None else None,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{study}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def read_results(path: Path) -> dict[str, Any]:
    record = json.loads(Path(path).read_text())
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"{path}: results file lacks {missing}")
    return record


def glue_metrics(metrics: Mapping[str, Any], *, display: bool = False) -> None:
    """``myst_nb.glue`` every metric under its own name, so prose can cite ``{glue:text}`name:.2f```."""
    from myst_nb import glue

    for key, value in metrics.items():
        glue(key, value, display=display)


def glue_text(key: str, text: str) -> None:
    """Glue a sentence (Markdown) for ``{glue:md}`key``` in prose: verdicts written by the code, not by hand."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(key, Markdown(text), display=False)


def verdict(value: float | None, threshold: float, *, better: str = "lower", unit: str = "", fmt: str = "{:.2f}") -> str:
    """A sentence fragment saying whether ``value`` meets ``threshold``, and by how much it misses."""
    if value is None:
        return "was not measured in this run"
    ok = value <= threshold if better == "lower" else value >= threshold
    cmp = "≤" if better == "lower" else "≥"
    v, t = fmt.format(value) + unit, fmt.format(threshold) + unit
    if ok:
        return f"meets the target ({v} {cmp} {t})"
    gap = fmt.format(abs(value - threshold)) + (" points" if unit.strip() == "%" else unit)
    return f"misses the target ({v}; target {cmp} {t}, off by {gap})"


def profile_note(profile: str, budget_min: float = 25.0) -> str:
    """What the page's numbers are worth, by profile (glue it as ``{glue:md}`profile_note```); ``budget_min``:
    the study's ``cpu`` budget (:attr:`rotcore.studies.StudyInfo.cpu_budget_min`)."""
    if profile == paths.PUBLISHED_PROFILE:
        return (f"This page was run on the `{profile}` profile, the published one: models and budgets sized so "
                f"that the study runs in at most {budget_min:g} minutes on a 2-core CPU. These are the numbers the "
                "report stands on; the `gpu` profile trains at the anchors' scale.")
    if profile == "gpu":
        return ("This page was run on the `gpu` profile (the anchors' scale, meant for one GPU). The published "
                f"site shows the `{paths.PUBLISHED_PROFILE}` profile; compare the two with that in mind.")
    return (f"This page was run on the `{profile}` profile: tiny models and a few epochs that check the "
            "pipeline end to end. Its numbers say nothing about what the models can do; the published page "
            f"runs the `{paths.PUBLISHED_PROFILE}` profile.")


def run_card(study: str, *, profile: str, device: Any = None, runtime_s: float | None = None,
             budget_min: float = 25.0) -> str:
    """Markdown that says how this page was produced and how to rerun it."""
    nb = f"notebooks/{study}.ipynb"
    lines = [
        f"**Profile** `{profile}` · **device** {describe_device(device)} · **precision** "
        f"{describe_precision(device)} (`precision=\"auto\"`) · **commit** `{git_commit()}`"
        + (f" · **runtime** {runtime_s / 60:.1f} min" if runtime_s is not None else ""),
        "",
        "Rerun this study (from the repository root, after `make setup`; profiles: `smoke` ~1 min, `cpu` the "
        f"published one, ≤ {budget_min:g} min on 2 cores, `gpu` the anchors' scale):",
        "",
        "```bash",
        f"rotbook run --only {study[:2]} --profile {profile}            # executes, then builds the book",
        f"jupytext --to ipynb -o - notebooks/{study}.py | papermill - out.ipynb -k python3 -p profile {profile}",
        "```",
        "",
        f"Any config key can be overridden, e.g. `-y \"overrides: {{fit.epochs: 3}}\"` for papermill "
        f"(the notebook is also at `{nb}`).",
    ]
    return "\n".join(lines)
