import json

import pytest

from rotcore import paths
from rotcore.results import REQUIRED_KEYS, read_results, verdict, write_results
from rotcore.train import FitConfig


def test_results_schema(tmp_path):
    path = write_results("99_demo", {"a_pct": 1.5, "b": 2, "name": "c8", "nan": float("nan")}, profile="smoke",
                         runtime_s=12.34, config=FitConfig(), out_dir=tmp_path)
    rec = json.loads(path.read_text())
    assert set(REQUIRED_KEYS) <= set(rec)
    assert rec["profile"] == "smoke" and rec["runtime_s"] == 12.3 and rec["metrics"]["nan"] is None
    assert rec["config"]["epochs"] == 10
    assert read_results(path)["study"] == "99_demo"


def test_metrics_must_be_flat(tmp_path):
    with pytest.raises(TypeError, match="flat"):
        write_results("99_demo", {"nested": {"a": 1}}, profile="smoke", runtime_s=1, out_dir=tmp_path)


def test_quick_profiles_never_write_published_results(tmp_path, monkeypatch):
    monkeypatch.setenv("ROTBOOK_ROOT", str(tmp_path))
    assert paths.results_dir("smoke") != paths.results_dir(paths.PUBLISHED_PROFILE) == tmp_path / "results"
    assert paths.results_dir("gpu") != tmp_path / "results"
    with pytest.raises(PermissionError, match="may not overwrite"):
        write_results("99_demo", {}, profile="smoke", runtime_s=1, out_dir=tmp_path / "results")
    p = write_results("99_demo", {}, profile="smoke", runtime_s=1)
    assert p.parent == tmp_path / "_build" / "runs" / "smoke" / "results"


def test_verdict():
    assert verdict(0.5, 0.68).startswith("meets")
    assert "off by 0.32" in verdict(1.0, 0.68)
    assert "off by 2.00 points" in verdict(95.0, 97.0, better="higher", unit=" %")
    assert verdict(98.0, 97.0, better="higher").startswith("meets")
    assert verdict(None, 1.0) == "was not measured in this run"


def test_the_page_states_its_own_studys_cpu_budget():
    """The profile note and the run card say the study's own budget (05: 40 minutes), read from STUDIES."""
    from rotcore import report
    from rotcore.results import profile_note, run_card
    from rotcore.studies import STUDIES

    assert "at most 40 minutes" in profile_note("cpu", 40.0) and "at most 25 minutes" in profile_note("cpu")
    assert "≤ 40 min on 2 cores" in run_card("05_rotation_invariance", profile="cpu", budget_min=40.0)
    budgets = {n: report.study_info(type("M", (), {"STUDY": i.name})).cpu_budget_min for n, i in STUDIES.items()}
    assert budgets == {"01": 25.0, "02": 25.0, "03": 25.0, "04": 25.0, "05": 40.0}


def test_results_and_run_card_say_what_precision_auto_computed_in(tmp_path, monkeypatch):
    """Every results file and run card stamps what fit's precision="auto" meant on the machine (bf16 autocast or
    fp32: the two train along different trajectories), and the CPU's model name where /proc/cpuinfo has one."""
    import rotcore.train
    from rotcore import runner
    from rotcore.results import cpu_model_name, describe_precision, run_card

    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(rotcore.train, "cpu_has_native_bf16", lambda native=native: native)
        assert describe_precision("cpu") == expected
        rec = json.loads(write_results("99_demo", {}, profile="smoke", runtime_s=1, device="cpu",
                                       out_dir=tmp_path).read_text())
        assert rec["auto_precision"] == expected
        assert f"**precision** {expected}" in run_card("99_demo", profile="smoke", device="cpu")
        assert runner._precision(rec) == f" · {expected}"
    assert runner._precision({"device": "CPU (2 cores)"}) == ""  # records written before the stamp
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Intel(R)  Xeon(R) Processor\nflags\t: avx2\n")
    assert cpu_model_name(info) == "Intel(R) Xeon(R) Processor"
    assert cpu_model_name(tmp_path / "missing") is None
    info.write_text("processor\t: 0\n")
    assert cpu_model_name(info) is None
