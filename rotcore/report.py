"""The study contract: what every study module provides, and the two calls every notebook makes.

A study is a module (``rotcore.studies.<topic>``) that fills in :class:`StudyModule`: its notebook name,
title, ``PROFILES`` (``smoke``, ``cpu``, ``gpu``), ``ANCHORS`` (results and checks, each with its source,
unit and target) and ``discussion(metrics)``, which writes the sentences that interpret a result from the
run's own numbers. A notebook then makes two calls around its narrative::

    run = report.start(study, profile, overrides)    # config (checked before any work), device, clock, run card
    ...                                               # a handful of study calls and figures
    run.publish(metrics)                              # results JSON, glued numbers, verdicts and sentences

Plain functions and a Protocol, not a base class: a sixth study is a module with these names and a notebook
with these two calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from rotcore import config as _config
from rotcore import paths
from rotcore.studies import Anchor, StudyInfo
from rotcore.studies import get as _study_info


@runtime_checkable
class StudyModule(Protocol):
    """What a study module provides (checked by :func:`check_study` and a test over every study)."""

    STUDY: str  # the notebook's name, e.g. "05_rotation_invariance"
    TITLE: str
    PROFILES: Mapping[str, Any]  # smoke / cpu / gpu -> a frozen dataclass config
    ANCHORS: Sequence[Anchor]

    def discussion(self, metrics: Mapping[str, Any]) -> Mapping[str, str]:
        """Glue key -> sentence, written from the metrics (a sentence must hold whatever the outcome)."""
        ...


def check_study(study: ModuleType) -> None:
    """Raise ``TypeError`` naming what a study module lacks."""
    missing = [n for n in ("STUDY", "TITLE", "PROFILES", "ANCHORS", "discussion") if not hasattr(study, n)]
    if missing:
        raise TypeError(f"{study.__name__} does not fill in the study contract: missing {', '.join(missing)}")
    lacking = [p for p in paths.PROFILES if p not in study.PROFILES]
    if lacking:
        raise TypeError(f"{study.__name__}: PROFILES lacks {', '.join(lacking)} (every study defines "
                        f"{', '.join(paths.PROFILES)})")
    names = [a.metric for a in study.ANCHORS]
    if len(set(names)) != len(names):
        raise TypeError(f"{study.__name__}: an anchor metric is listed twice: {names}")


def resolve_config(study: ModuleType, profile: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """``study.PROFILES[profile]`` with ``overrides``; every mistake raises :class:`rotcore.config.ConfigError`."""
    return _config.resolve(study.PROFILES, profile, overrides)


def study_info(study: ModuleType) -> StudyInfo:
    """The :class:`rotcore.studies.StudyInfo` of a study module (its number, title, ``cpu`` budget)."""
    return _study_info(study.STUDY)


def anchor(study: ModuleType, metric: str) -> Anchor:
    for a in study.ANCHORS:
        if a.metric == metric:
            return a
    raise KeyError(f"{study.STUDY} has no anchor {metric!r}; anchors: {', '.join(a.metric for a in study.ANCHORS)}")


def with_ci_text(a: Anchor, metrics: Mapping[str, Any]) -> str:
    """``"1.23 % (95 % CI 1.10–1.36 %, n = 3)"`` for an anchor's metric, or just the value.

    An interval outside the range its quantity can take (:func:`rotcore.metrics.value_range`; a results file
    written before intervals were bounded) is not shown: the text says so instead."""
    from rotcore.results import value_range

    value = metrics.get(a.metric)
    text = a.format(value)
    ci, n = metrics.get(f"{a.metric}_ci95"), metrics.get(f"{a.metric}_n")
    if value is not None and ci is not None:
        low, high = value_range(a.metric)
        if ci[0] < low or ci[1] > high:
            return text + " (its recorded interval leaves the quantity's range and is not shown: rerun the study)"
        text += f" (95 % CI {a.format(ci[0])}–{a.format(ci[1])}" + (f", n = {n})" if n is not None else ")")
    return text


def ci_method(a: Anchor, metrics: Mapping[str, Any]) -> str:
    """How the anchor's interval was computed (``<metric>_ci_method`` in the results), or ``—``."""
    if metrics.get(f"{a.metric}_ci95") is None:
        return "—"
    return metrics.get(f"{a.metric}_ci_method") or "not recorded (run before methods were recorded)"


def tables(study: ModuleType, metrics: Mapping[str, Any]):
    """The run's results (beside their anchors and targets, with how each interval was computed) and its
    checks, as two DataFrames. A relative target whose run is below its floor reads "not measurable"."""
    import pandas as pd

    res, chk = [], []
    for a in study.ANCHORS:
        value = metrics.get(a.metric)
        if a.kind == "check":
            met = a.met(value)
            chk.append({"check": a.label, "measured": a.format(value) if a.fmt else value, "bound": a.target,
                        "holds": "—" if met is None else ("yes" if met else "NO"), "guaranteed by": a.test})
        else:
            res.append({"metric": a.label, "this run": with_ci_text(a, metrics), "interval": ci_method(a, metrics),
                        "anchor": a.format(a.anchor) if a.anchor is not None else "—",
                        "source": a.source + (f" ({a.caveat})" if a.caveat else ""), "target": a.target,
                        "met": a.assess(metrics)})
    return pd.DataFrame(res), pd.DataFrame(chk)


@dataclasses.dataclass
class Run:
    """One execution of a study notebook: its resolved config, device and clock. Made by :func:`start`."""

    study: ModuleType
    profile: str
    cfg: Any
    device: Any
    clock: Any
    overrides: Mapping[str, Any]

    @property
    def runtime_s(self) -> float:
        return self.clock.elapsed_s

    def publish(self, metrics: Mapping[str, Any], *, show: bool = True) -> Path:
        """Write ``results/<study>.json`` (for this profile), glue every metric, each anchor's verdict as
        ``<metric>_verdict`` and its value with CI as ``<metric>_with_ci``, the profile note and the study's
        discussion sentences; show the results and checks tables. Returns the JSON's path."""
        from rotcore.results import glue_metrics, glue_text, profile_note, write_results

        missing = [a.metric for a in self.study.ANCHORS if a.metric not in metrics]
        if missing:
            raise KeyError(f"{self.study.STUDY}: publish() got no value for the anchored metric(s) {missing}; "
                           "report None for a metric this run did not measure")
        path = write_results(self.study.STUDY, metrics, profile=self.profile, runtime_s=self.runtime_s,
                             config=self.cfg, device=self.device)
        glue_metrics(metrics)
        for a in self.study.ANCHORS:
            glue_text(f"{a.metric}_verdict", a.verdict_for(metrics))
            glue_text(f"{a.metric}_with_ci", with_ci_text(a, metrics))
        glue_text("profile_note", profile_note(self.profile, study_info(self.study).cpu_budget_min))
        glue_text("runtime_min", f"{self.runtime_s / 60:.1f}")
        for key, sentence in self.study.discussion(metrics).items():
            glue_text(key, sentence)
        if show:
            from IPython.display import Markdown, display

            results, checks = tables(self.study, metrics)
            display(Markdown("**Results** (targets and anchors from `ANCHORS`; CI95 where the run measured one)"))
            display(results)
            if len(checks):
                display(Markdown("**Checks** (hold by construction; each is guaranteed by the named test)"))
                display(checks)
        return path


def start(study: ModuleType, profile: str = "smoke", overrides: Mapping[str, Any] | None = None, *,
          show: bool = True) -> Run:
    """Resolve the config (raising before any work), pick the device, start the clock, set the plot style
    and show the run card (profile, device, commit, how to rerun)."""
    from rotcore import plots
    from rotcore.results import Stopwatch, run_card
    from rotcore.train import default_device

    check_study(study)
    overrides = dict(overrides or {})
    cfg = resolve_config(study, profile, overrides)
    clock = Stopwatch()
    device = default_device()
    plots.use_style()
    if show:
        from IPython.display import Markdown, display

        display(Markdown(run_card(study.STUDY, profile=profile, device=device,
                                  budget_min=study_info(study).cpu_budget_min)))
    return Run(study, profile, cfg, device, clock, overrides)
