"""Straighten photos with a trained angle model (study 04): ``rotbook predict-angle CHECKPOINT PATH...``.

A study-04 run leaves a ``fit`` checkpoint (``runs/04_angle_regression/<run>-<hash>/checkpoint.pt``) that
holds the model's config and weights. :func:`write_card` puts a small ``predict_angle.json`` beside it with
the abstention threshold, chosen on the **validation** photos: the confidence (length of the predicted
(cos θ, sin θ) vector) above which ``coverage_pct`` % of the validation predictions lie. The tool abstains
below it ("the model says so").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

CARD = "predict_angle.json"


def write_card(checkpoint: str | Path, *, val_confidence: torch.Tensor, coverage_pct: float = 80.0,
               tta: bool = True) -> Path:
    """Write ``predict_angle.json`` beside ``checkpoint``: the validation confidence quantile that keeps
    ``coverage_pct`` % of the predictions, and whether to use rot90 test-time augmentation. Returns its path."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}: train the run first")
    if not 0 < coverage_pct <= 100:
        raise ValueError(f"coverage_pct must be in (0, 100], got {coverage_pct}")
    conf = torch.as_tensor(val_confidence, dtype=torch.float64).flatten()
    if not len(conf):
        raise ValueError("val_confidence is empty: the threshold is chosen on validation predictions")
    card: dict[str, Any] = {
        "checkpoint": checkpoint.name,
        "min_confidence": float(torch.quantile(conf, 1 - coverage_pct / 100)),
        "coverage_pct": float(coverage_pct),
        "tta": bool(tta),
        "chosen_on": f"{len(conf)} validation predictions",
    }
    path = checkpoint.with_name(CARD)
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def shown_path(path: str | Path) -> str:
    """``path`` relative to the project root when it lies inside it (for pages and messages)."""
    from rotcore import paths

    path = Path(path).resolve()
    try:
        return str(path.relative_to(paths.project_root().resolve()))
    except ValueError:
        return str(path)


def read_card(checkpoint: str | Path) -> dict[str, Any] | None:
    """The card beside ``checkpoint`` (``None`` if there is none)."""
    path = Path(checkpoint).with_name(CARD)
    return json.loads(path.read_text()) if path.is_file() else None
