"""The studies: one module each, holding its config dataclass, ``PROFILES`` and study-specific glue.

``STUDIES`` maps the two-digit study number to its notebook name and module. The runner and the summary
page read it. What a study module provides is the contract in :mod:`rotcore.report` (``StudyModule``):
``STUDY`` (its notebook name), ``TITLE``, ``PROFILES`` (``smoke``/``cpu``/``gpu``), ``ANCHORS`` (headline
results and by-construction checks beside their sources) and ``discussion(metrics)``.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

KINDS = ("result", "check")


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A headline metric of a study, set beside the number a source measured, and its target.

    ``kind="result"``: something the run found out (shown in the summary's results table, with its CI when
    the run wrote ``<metric>_ci95``). ``kind="check"``: a property that holds by construction (exact
    invariance at 90°, say); it is shown in a separate checks table beside ``test``, the test that
    guarantees it, never as a "target met". ``threshold`` is the target as a number (``None``: reported,
    not judged); every verdict on a page or in the summary is computed from it, so a threshold is typed once.
    ``source`` says who measured ``anchor`` and how; ``caveat`` says when that number is not comparable
    one to one (another protocol, unverified, an aggregate of something else).
    """

    metric: str
    label: str
    anchor: float | None
    source: str
    target: str
    better: str = "lower"  # or "higher"
    threshold: float | None = None
    unit: str = ""  # appended to numbers: " %", "°", " dB", " nats"
    fmt: str = "{:.2f}"
    kind: str = "result"
    test: str | None = None  # checks: the test that guarantees the property
    caveat: str = ""

    def __post_init__(self):
        if self.better not in ("lower", "higher"):
            raise ValueError(f"Anchor {self.metric}: better={self.better!r}; use 'lower' or 'higher'")
        if self.kind not in KINDS:
            raise ValueError(f"Anchor {self.metric}: kind={self.kind!r}; use one of {KINDS}")
        if self.kind == "check" and not self.test:
            raise ValueError(f"Anchor {self.metric}: a check names the test that guarantees it (test=...)")

    def met(self, value: float | None) -> bool | None:
        if value is None or self.threshold is None:
            return None
        return value <= self.threshold if self.better == "lower" else value >= self.threshold

    def format(self, value: float | None) -> str:
        """``value`` in this anchor's format and unit (``"—"`` when missing)."""
        if value is None:
            return "—"
        return self.fmt.format(value) + self.unit

    def verdict(self, value: float | None) -> str:
        """A sentence fragment: "meets the target (0.95 % ≤ 1.20 %)" or "misses the target (…, off by …)"."""
        if self.threshold is None:
            return "is reported, not judged against a target"
        from rotcore.results import verdict

        return verdict(value, self.threshold, better=self.better, unit=self.unit, fmt=self.fmt)


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
