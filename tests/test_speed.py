import math

import pytest
import torch

from rotcore import speed
from rotcore.runner import PageStatus

REF = speed.REFERENCE_DEVICE


def test_expected_runtime_is_the_page_runtime_over_the_largest_and_smallest_ratio():
    rates = {"cnn": speed.REFERENCE_IMG_S["cnn"] * 0.5, "c8": speed.REFERENCE_IMG_S["c8"] * 0.25}
    ratios = speed.speed_ratios(rates)
    assert ratios == pytest.approx({"cnn": 0.5, "c8": 0.25})
    assert speed.expected_runtime_s(1_500.0, ratios) == pytest.approx((3_000.0, 6_000.0))
    assert speed.expected_runtime_s(1_500.0, speed.speed_ratios(speed.REFERENCE_IMG_S)) == (1_500.0, 1_500.0)


@pytest.mark.parametrize("rates, message", [
    ({"cnn": 1_000.0}, "no rate for the probe model"),
    ({"cnn": 1_000.0, "c8": 0.0}, "positive number"),
    ({"cnn": math.nan, "c8": 100.0}, "positive number"),
])
def test_bad_rates_are_refused(rates, message):
    with pytest.raises(ValueError, match=message):
        speed.speed_ratios(rates)


def test_runtime_note_scales_only_pages_run_on_the_reference_machine():
    rates = {k: v * 0.5 for k, v in speed.REFERENCE_IMG_S.items()}
    statuses = [
        PageStatus("01", "a", ran=True, runtime_s=600.0, budget_min=25, device=REF + " · bf16"),
        PageStatus("02", "b", ran=True, runtime_s=900.0, budget_min=25, device=REF),
        PageStatus("03", "c", ran=True, runtime_s=1_200.0, budget_min=25, device="NVIDIA H100 80GB HBM3"),
        PageStatus("04", "d", ran=False),
    ]
    lines = speed.runtime_note(statuses, rates, probe_s=12.0).splitlines()
    assert lines[0].startswith("[rotbook] speed check (12 s):") and "(0.50x)" in lines[0]
    assert lines[1] == "  01: 20-20 min (its page: 10.0 min; budget 25)"
    assert lines[2] == "  02: 30-30 min (its page: 15.0 min; budget 25) · OVER its budget here"
    assert "its page ran on NVIDIA H100 80GB HBM3, not the reference machine: no estimate" in lines[3]
    assert lines[4] == "  04: no published page to scale"
    mixed = {"cnn": speed.REFERENCE_IMG_S["cnn"], "c8": speed.REFERENCE_IMG_S["c8"] * 0.5}
    assert speed.runtime_note(statuses[1:2], mixed).splitlines()[1].endswith("· may run over its budget")


def test_the_probe_times_a_real_training_step_that_updates_the_weights():
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    runner = speed.Runner(speed.classifier_case("cnn", x, y), "chosen", torch.device("cpu"))
    before = [p.detach().clone() for p in runner.model.parameters()]
    rate = runner.trial(0.0, min_steps=2)
    assert math.isfinite(rate) and rate > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, runner.model.parameters()))
