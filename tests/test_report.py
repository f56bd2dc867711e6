"""The study contract: anchors drive verdicts, checks are not results, one CI helper, profiles by machine."""

import json

import numpy as np
import pytest

from rotcore import paths, report, runner
from rotcore.config import ConfigError
from rotcore.metrics import bootstrap_ci95, mean_ci95, with_ci
from rotcore.studies import STUDIES, Anchor


def test_every_study_fills_in_the_contract():
    for info in STUDIES.values():
        module = info.load()
        report.check_study(module)
        assert isinstance(module, report.StudyModule)
        assert set(paths.PROFILES) <= set(module.PROFILES)
        for a in module.ANCHORS:
            assert a.kind in ("result", "check")


def test_full_profile_points_to_cpu_and_gpu():
    module = STUDIES["05"].load()
    with pytest.raises(ConfigError, match="use `cpu`.*or `gpu`"):
        report.resolve_config(module, "full")


def test_anchor_verdicts_come_from_the_anchor():
    a = Anchor("err_pct", "error", 0.68, "paper", "≤ 1.2", "lower", 1.2, unit=" %")
    assert a.verdict(1.0) == "meets the target (1.00 % ≤ 1.20 %)"
    assert a.verdict(1.5) == "misses the target (1.50 %; target ≤ 1.20 %, off by 0.30 points)"
    assert a.verdict(None) == "was not measured in this run"
    assert Anchor("x", "x", None, "s", "informative").verdict(3.0).startswith("is reported")
    with pytest.raises(ValueError, match="names the test"):
        Anchor("inv", "invariance", None, "by construction", "≤ 1e-9", kind="check")


def test_mean_ci95_is_the_student_t_interval():
    m, (lo, hi), n, method = mean_ci95([1.0, 2.0, 3.0])
    # t_{0.975, 2} = 4.302653; sd = 1; half = 4.302653 / sqrt(3)
    assert m == 2.0 and n == 3 and hi - m == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-6) and m - lo == hi - m
    assert method == "Student t over 3 seeds"
    assert mean_ci95([5.0])[:3] == (5.0, None, 1)
    with pytest.raises(ValueError):
        mean_ci95([])


def test_bootstrap_singleton_clusters_equal_the_plain_bootstrap():
    v = np.random.default_rng(1).normal(size=200)
    plain = bootstrap_ci95(v, seed=3)
    clustered = bootstrap_ci95(v, clusters=np.arange(200)[::-1], seed=3)
    assert plain[2] == 200 and clustered[2] == 200
    assert plain[0] == pytest.approx(clustered[0])
    # same number of units, same draws up to a relabelling of the units: same interval width to sampling noise
    assert (plain[1][1] - plain[1][0]) == pytest.approx(clustered[1][1] - clustered[1][0], rel=0.15)


def test_clustered_bootstrap_on_a_toy_case_with_a_known_answer():
    """400 photos, each seen at 8 angles with the *same* error: 8 copies add no information, so the clustered
    interval is the interval of 400 independent values (±1.96 σ/√400), and the naive one is √8 too narrow."""
    rng = np.random.default_rng(0)
    per_photo = rng.normal(10.0, 2.0, size=400)
    values, photo = np.repeat(per_photo, 8), np.repeat(np.arange(400), 8)
    est, (lo, hi), n, _ = bootstrap_ci95(values, clusters=photo, n_boot=4000)
    expected_half = 1.96 * per_photo.std() / 400 ** 0.5
    assert n == 400 and est == pytest.approx(per_photo.mean())
    assert (hi - lo) / 2 == pytest.approx(expected_half, rel=0.12)
    _, (nlo, nhi), *_ = bootstrap_ci95(values, n_boot=4000)
    assert (hi - lo) / (nhi - nlo) == pytest.approx(8 ** 0.5, rel=0.15)
    with pytest.raises(ValueError, match="clusters"):
        bootstrap_ci95(values, clusters=photo[:-1])


def test_with_ci_is_the_results_json_form():
    assert with_ci("e_pct", 1, (0.5, 1.5), 3, "t") == {"e_pct": 1.0, "e_pct_ci95": [0.5, 1.5], "e_pct_n": 3,
                                                     "e_pct_ci_method": "t"}
    assert with_ci("e_pct", 1, None, 1)["e_pct_ci95"] is None


def _write(rdir, study, metrics):
    rdir.mkdir(parents=True, exist_ok=True)
    (rdir / f"{study}.json").write_text(json.dumps({
        "study": study, "profile": "smoke", "device": "CPU", "git_commit": "abc", "created": "now",
        "runtime_s": 60.0, "metrics": metrics}))


def test_summary_splits_results_from_checks_and_shows_cis(tmp_path, monkeypatch):
    monkeypatch.setenv("ROTBOOK_ROOT", str(tmp_path))
    module = STUDIES["05"].load()
    results = [a for a in module.ANCHORS if a.kind == "result" and a.threshold is not None]
    checks = [a for a in module.ANCHORS if a.kind == "check"]
    assert results and checks, "study 05 anchors a judged result and a by-construction check"
    r, c = results[0], checks[0]
    good = r.threshold * (0.5 if r.better == "lower" else 1.01)
    _write(paths.results_dir("smoke"), module.STUDY,
           {r.metric: good, f"{r.metric}_ci95": [good * 0.9, good * 1.1], f"{r.metric}_n": 3, c.metric: 0.0})
    text = runner.summary_markdown("smoke")
    section = text[text.index("## 05"):]
    result_rows = section[section.index("| result |"):section.index("| check |")]
    check_rows = section[section.index("| check |"):]
    assert r.label in result_rows and "95 % CI" in result_rows and "| yes |" in result_rows
    assert c.label in check_rows and c.label not in result_rows and c.test in check_rows


def test_injected_parameters_are_hidden(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("profile = 'cpu'",
                                                                   metadata={"tags": ["injected-parameters"]}),
                                         nbformat.v4.new_code_cell("x = 1")])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    runner.hide_injected_parameters(path)
    cells = nbformat.read(path, as_version=4).cells
    assert "remove-cell" in cells[0].metadata.tags and "remove-cell" not in cells[1].metadata.get("tags", [])
