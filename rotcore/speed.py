"""How fast this machine trains, against the machine that ran the published pages, measured in a few seconds.

Before a run of the published profile on a CPU, ``rotbook run`` times one training step of study 05's two
classifiers (a plain CNN and a C8 G-CNN at width 0.25, batch 128: a fresh :func:`rotcore.rotate.rotate_batch`,
cross-entropy, backward and an AdamW update, in the precision and memory format ``fit`` chooses). This is the step
``benchmarks/cpu_speed.py`` times, and the same code runs it. The rates are divided by the reference machine's
(:data:`REFERENCE_IMG_S`, the 2-core Xeon with AMX-BF16 that ran every published page), and each page's recorded
runtime is scaled by the two ratios. The studies train other networks, so the result is a rough range, not a
bound. On the 2-core AVX512-BF16 EPYC (Zen 4) of 2026-12-06, ``benchmarks/cpu_speed.py`` measured
0.44-0.76 over five models (CNN 0.47-0.59 in two runs, C8 0.43-0.44), and the probe 0.53 and 0.43
(``benchmarks/README.md``). Study 01's cells ran there at 0.59 (its judges: 792 s against 470 s) and about 0.8 (one
generator with its evaluation, ~180 s against ~140 s per model) of the Xeon's speed, so the estimate of 41-50 min
for its page was pessimistic (about 32 min from those cells): small-batch training gains less from the Xeon's AMX
than the probe's batch of 128 does."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from rotcore.rotate import random_angles, rotate_batch
from rotcore.train import autocast, use_channels_last

#: Training images per second of :func:`classifier_case`'s steps under ``fit``'s chosen setting (bf16 autocast,
#: channels_last for the CNN): ``benchmarks/cpu_speed.py`` run alone on the 2-core Intel Xeon with AMX-BF16,
#: 2 threads, best of 3 interleaved trials, 2026-12-05 (benchmarks/README.md).
REFERENCE_IMG_S: dict[str, float] = {"cnn": 2_718.0, "c8": 631.0}
#: The machine behind :data:`REFERENCE_IMG_S`, as :func:`rotcore.results.describe_device` names it (the pages'
#: results JSON ``device``): a page run elsewhere is not scaled.
REFERENCE_DEVICE = "CPU (2 cores, x86_64, Intel(R) Xeon(R) Processor)"
REFERENCE_TEXT = "the 2-core Xeon with AMX-BF16 that ran the published pages"
#: The probe's classifiers: key -> (group, name in the runtime note, label in the benchmark's table).
CLASSIFIERS: dict[str, tuple[str, str, str]] = {"cnn": ("C1", "plain CNN", "plain CNN (study 05)"),
                                                "c8": ("C8", "C8 G-CNN", "C8 G-CNN (studies 05, judges)")}


@dataclasses.dataclass
class Case:
    """One model to time: a builder, the step's batch size, and ``make_loss(model) -> (() -> loss)``."""

    key: str
    label: str
    size: str
    batch_size: int
    build: Callable[[], torch.nn.Module]
    make_loss: Callable[[torch.nn.Module], Callable[[], torch.Tensor]]


def classifier_case(key: str, x: torch.Tensor, y: torch.Tensor) -> Case:
    """Study 05's classifier ``key`` (``"cnn"``: C1, ``"c8"``: C8; width 0.25) trained on the batch ``x, y`` (28 px),
    each step at a fresh random angle per image."""
    from rotcore.models.classifier import ClassifierConfig, build_classifier  # escnn: only when a probe runs

    group, _, label = CLASSIFIERS[key]

    def make(model):
        def loss():
            return F.cross_entropy(model(rotate_batch(x, random_angles(len(x)))), y)
        return loss

    return Case(key, label, f"width 0.25, 28 px, batch {len(x)}", len(x),
                lambda: build_classifier(ClassifierConfig(group=group, width=0.25)), make)


class Runner:
    """A model, its optimiser and its loss under one setting (``"fp32"``: eager float32, contiguous; ``"chosen"``:
    what ``fit`` picks with ``precision="auto"``, ``memory_format="auto"``); ``trial(min_s)`` returns images/s."""

    def __init__(self, case: Case, setting: str, device: torch.device):
        torch.manual_seed(0)
        self.case, self.device = case, device
        self.model = case.build().to(device).train()
        self.precision = "fp32" if setting == "fp32" else "auto"
        if setting != "fp32" and use_channels_last(self.model, "auto"):
            self.model.to(memory_format=torch.channels_last)  # what fit does: parameters only
        self.opt = torch.optim.AdamW(self.model.parameters(), 1e-4)
        self.loss = case.make_loss(self.model)

    def step(self) -> None:
        with autocast(self.device, self.precision):
            loss = self.loss()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def trial(self, min_s: float, min_steps: int = 1) -> float:
        self.step()  # warm-up (the first call of a setting also builds its kernels and optimiser state)
        steps, t0 = 0, time.perf_counter()
        while steps < min_steps or time.perf_counter() - t0 < min_s:
            self.step()
            steps += 1
        return steps * self.case.batch_size / (time.perf_counter() - t0)


def interleaved(trials: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each trial function once per round, alternating; all results per name (callers take the best: load from
    other processes only slows a trial down)."""
    out: dict[str, list[float]] = {k: [] for k in trials}
    for _ in range(rounds):
        for k, fn in trials.items():
            out[k].append(fn())
    return out


def probe(device: torch.device | None = None, *, rounds: int = 3, min_s: float = 1.0) -> dict[str, float]:
    """Images/s of each :data:`REFERENCE_IMG_S` model's chosen step here: best of ``rounds`` interleaved trials of at
    least ``min_s`` seconds (10-20 s in all at the defaults, building the C8 network included). Random pixels stand
    in for MNIST: a step's cost does not depend on the values."""
    device = torch.device("cpu") if device is None else device
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(128, 1, 28, 28, generator=g).to(device), torch.randint(0, 10, (128,), generator=g).to(device)
    runners = {k: Runner(classifier_case(k, x, y), "chosen", device) for k in REFERENCE_IMG_S}
    trials = interleaved({k: (lambda r=r: r.trial(min_s)) for k, r in runners.items()}, rounds)
    return {k: max(v) for k, v in trials.items()}


def speed_ratios(rates: Mapping[str, float]) -> dict[str, float]:
    """``rates`` (img/s per probe model) over :data:`REFERENCE_IMG_S`."""
    missing = set(REFERENCE_IMG_S) - set(rates)
    if missing:
        raise ValueError(f"no rate for the probe model(s) {sorted(missing)}")
    for k, v in rates.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"rate of {k!r} must be a positive number of images/s, got {v!r}")
    return {k: rates[k] / REFERENCE_IMG_S[k] for k in REFERENCE_IMG_S}


def expected_runtime_s(page_runtime_s: float, ratios: Mapping[str, float]) -> tuple[float, float]:
    """(fastest, slowest) runtime here of a page that took ``page_runtime_s`` on the reference machine: the page's
    runtime divided by the largest and by the smallest ratio."""
    return page_runtime_s / max(ratios.values()), page_runtime_s / min(ratios.values())


def runtime_note(statuses: Sequence, rates: Mapping[str, float], *, probe_s: float | None = None) -> str:
    """What the probe measured and, for each study in ``statuses`` (:class:`rotcore.runner.PageStatus`), the runtime
    it predicts here against the study's budget (a page that did not run on the reference machine is not
    scaled)."""
    ratios = speed_ratios(rates)
    measured = " and ".join(f"{CLASSIFIERS[k][1]} at {rates[k]:,.0f} img/s ({ratios[k]:.2f}x)" for k in ratios)
    took = f" ({probe_s:.0f} s)" if probe_s is not None else ""
    lines = [f"[rotbook] speed check{took}: this machine trains study 05's {measured}, against {REFERENCE_TEXT} "
             "(benchmarks/README.md). Expected runtimes here, each page's runtime over the two ratios (the studies "
             "train other networks: a rough range):"]
    for s in statuses:
        if not s.ran:
            lines.append(f"  {s.number}: no published page to scale")
        elif s.device is None or not s.device.startswith(REFERENCE_DEVICE):
            lines.append(f"  {s.number}: its page ran on {s.device}, not the reference machine: no estimate")
        else:
            lo, hi = expected_runtime_s(s.runtime_s, ratios)
            budget_s = 60 * s.budget_min if s.budget_min is not None else math.inf
            verdict = (" · OVER its budget here" if lo > budget_s
                       else " · may run over its budget" if hi > budget_s else "")
            lines.append(f"  {s.number}: {lo / 60:.0f}-{hi / 60:.0f} min (its page: {s.runtime_s / 60:.1f} min"
                         + (f"; budget {s.budget_min:g}" if s.budget_min is not None else "") + ")" + verdict)
    return "\n".join(lines)
