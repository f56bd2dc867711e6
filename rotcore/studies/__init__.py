"""The studies: one module each, holding its config dataclass, ``PROFILES`` and study-specific glue.

``STUDIES`` maps the two-digit study number to its notebook name and module. The runner and the summary
page read it; each study module exposes ``STUDY`` (its notebook name), ``TITLE``, ``PROFILES``,
``resolve_config(profile, overrides)`` and ``ANCHORS`` (headline metrics beside published numbers).
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A headline metric of a study, set beside a number from the seed project or the literature."""

    metric: str
    label: str
    anchor: float | None
    source: str
    target: str
    better: str = "lower"  # or "higher"
    threshold: float | None = None  # the target as a number (met when the metric is on the better side)

    def met(self, value: float | None) -> bool | None:
        if value is None or self.threshold is None:
            return None
        return value <= self.threshold if self.better == "lower" else value >= self.threshold


@dataclasses.dataclass(frozen=True)
class StudyInfo:
    number: str
    name: str
    module: str
    title: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


STUDIES: dict[str, StudyInfo] = {
    "01": StudyInfo("01", "01_cvae_rotation", "rotcore.studies.cvae", "Conditional VAEs and rotation"),
    "02": StudyInfo("02", "02_equivariant_vae", "rotcore.studies.eqvae",
                    "An equivariant VAE: rotating the latent rotates the image"),
    "03": StudyInfo("03", "03_gcnn_hyperspherical_vae", "rotcore.studies.svae",
                    "A rotation-invariant embedding: are 6s just rotated 9s?"),
    "04": StudyInfo("04", "04_angle_regression", "rotcore.studies.angle_regression",
                    "Angle regression over the full circle"),
    "05": StudyInfo("05", "05_rotation_invariance", "rotcore.studies.invariance",
                    "Rotation invariance of digit classifiers"),
}


def get(number_or_name: str) -> StudyInfo:
    key = str(number_or_name)
    for info in STUDIES.values():
        if key in (info.number, info.name):
            return info
    raise KeyError(f"unknown study {number_or_name!r}; choose from: "
                   + ", ".join(f"{i.number} ({i.name})" for i in STUDIES.values()))
