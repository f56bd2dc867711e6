"""The studies: one module each, holding its config dataclass, ``PROFILES`` and study-specific glue.

``STUDIES`` maps the two-digit study number to its notebook name and module. The runner and the summary
page read it. What a study module provides is the contract in :mod:`rotcore.report` (``StudyModule``):
``STUDY`` (its notebook name), ``TITLE``, ``PROFILES`` (``smoke``/``cpu``/``gpu``), ``ANCHORS`` (headline
results and by-construction checks beside their sources) and ``discussion(metrics)``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

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

    A relative target (a drop, a gap, a ratio) can be met by failing: a generator that ignores its label has
    no accuracy drop at unseen angles. Such an anchor names its absolute ``floor``: another metric of the run
    that must reach ``floor_threshold`` (``floor_better`` says in which direction) for the target to be
    judged at all. Below it, :meth:`assess` says "not measurable: floor missed" with the floor's number, and
    the target is never "met".

    A floor may also be a yes/no flag that a model failed its task (a collapse check: ``floor`` a boolean metric,
    ``floor_better="lower"``, ``floor_threshold=0``): then it holds when the flag is false, and it also flags an
    informative anchor (no ``threshold``), whose number is then "not comparable" instead of set beside its source
    unremarked.
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
    floor: str | None = None  # the metric an absolute floor is read from
    floor_threshold: float | None = None
    floor_better: str = "higher"
    floor_label: str = ""  # what the floor is, in words ("samples read as the intended digit")
    floor_unit: str = ""

    def __post_init__(self):
        if self.better not in ("lower", "higher"):
            raise ValueError(f"Anchor {self.metric}: better={self.better!r}; use 'lower' or 'higher'")
        if self.kind not in KINDS:
            raise ValueError(f"Anchor {self.metric}: kind={self.kind!r}; use one of {KINDS}")
        if self.kind == "check" and not self.test:
            raise ValueError(f"Anchor {self.metric}: a check names the test that guarantees it (test=...)")
        if (self.floor is None) != (self.floor_threshold is None):
            raise ValueError(f"Anchor {self.metric}: a floor needs both `floor` (a metric) and `floor_threshold`")
        if self.floor_better not in ("lower", "higher"):
            raise ValueError(f"Anchor {self.metric}: floor_better={self.floor_better!r}; use 'lower' or 'higher'")

    def met(self, value: float | None) -> bool | None:
        if value is None or self.threshold is None:
            return None
        return value <= self.threshold if self.better == "lower" else value >= self.threshold

    def floor_holds(self, metrics: Mapping[str, Any]) -> bool | None:
        """Whether the run reached this anchor's absolute floor (``True`` without a floor, ``None`` when the
        floor's metric was not measured)."""
        if self.floor is None:
            return True
        value = metrics.get(self.floor)
        if value is None:
            return None
        return value >= self.floor_threshold if self.floor_better == "higher" else value <= self.floor_threshold

    def floor_text(self, metrics: Mapping[str, Any]) -> str:
        """``"samples read as the intended digit 31.0 % (floor ≥ 90 %)"``: the floor's value against its bound."""
        value = metrics.get(self.floor)
        if isinstance(value, bool):  # a failed-task flag
            return f"{self.floor_label or self.floor}: {'yes' if value else 'no'}"
        shown = "not measured" if value is None else f"{value:.1f}{self.floor_unit}"
        sign = "≥" if self.floor_better == "higher" else "≤"
        return f"{self.floor_label or self.floor} {shown} (floor {sign} {self.floor_threshold:g}{self.floor_unit})"

    def assess(self, metrics: Mapping[str, Any]) -> str:
        """The summary's "met" cell: ``yes``, ``no``, ``—`` (not judged or not measured), or ``not measurable:
        floor missed (…)`` when the run is below this anchor's floor, whatever the value."""
        value = metrics.get(self.metric)
        floor = self.floor_holds(metrics)
        if value is not None and floor is not True:  # True without a floor
            return ("not measurable" if self.threshold is not None else "not comparable") + ": floor " + \
                ("not measured" if floor is None else "missed") + f" ({self.floor_text(metrics)})"
        met = self.met(value)
        return "—" if met is None else ("yes" if met else "no")

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

    def verdict_for(self, metrics: Mapping[str, Any]) -> str:
        """:meth:`verdict` of the run's value, unless the run is below this anchor's floor: then the sentence
        says the target cannot be judged, with the floor's number."""
        value = metrics.get(self.metric)
        if value is not None and self.floor_holds(metrics) is not True:
            what = "cannot be judged against its target" if self.threshold is not None else "is not comparable"
            if isinstance(metrics.get(self.floor), bool):
                return f"{what} ({self.format(value)}; {self.floor_text(metrics)})"
            return (f"{what} ({self.format(value)}, but "
                    f"{self.floor_text(metrics)} is below the floor this comparison needs)")
        return self.verdict(value)


@dataclasses.dataclass(frozen=True)
class StudyInfo:
    """A study's number, notebook name, module and title, and ``cpu_budget_min``: the wall-clock minutes its
    published (``cpu``) profile is sized for on the 2-core CPU machine (issue 10; study 05, the costliest,
    gets 40). The page's profile note, its run card and the summary's runtime table all read it from here."""

    number: str
    name: str
    module: str
    title: str
    cpu_budget_min: float = 25.0

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
                    "Rotation invariance of digit classifiers", cpu_budget_min=40.0),
}


def get(number_or_name: str) -> StudyInfo:
    key = str(number_or_name)
    for info in STUDIES.values():
        if key in (info.number, info.name):
            return info
    raise KeyError(f"unknown study {number_or_name!r}; choose from: "
                   + ", ".join(f"{i.number} ({i.name})" for i in STUDIES.values()))
