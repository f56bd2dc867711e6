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


# ---------------------------------------------------------------------------------------------------------
# Relative targets need their floor; intervals stay in their range


def test_a_label_blind_generator_cannot_meet_the_drop_target():
    """Study 01: a generator whose samples are the intended digit 31 % of the time everywhere has no drop at
    unseen angles (-0.5 points); the drop target is then 'not measurable', never met."""
    from rotcore.studies import cvae

    drop = next(a for a in cvae.ANCHORS if a.metric == "gen_digit_acc_drop_pts_latent")
    gap = next(a for a in cvae.ANCHORS if a.metric == "gen_angle_err_gap_deg_latent")
    blind = {"gen_digit_acc_drop_pts_latent": -0.5, "gen_angle_err_gap_deg_latent": 0.2,
             "gen_digit_acc_seen_pct_latent": 31.0}
    for a in (drop, gap):
        assert a.met(blind[a.metric]) is True  # the bare relative number would pass...
        assert a.assess(blind).startswith("not measurable: floor missed")  # ...but not below its floor
        assert "31.0 %" in a.assess(blind) and "≥ 90 %" in a.assess(blind)
        assert a.verdict_for(blind).startswith("cannot be judged")
    good = {**blind, "gen_digit_acc_seen_pct_latent": 93.0}
    assert drop.assess(good) == "yes" and drop.verdict_for(good).startswith("meets")
    assert drop.assess({"gen_digit_acc_drop_pts_latent": -0.5}).startswith("not measurable: floor not measured")


def test_a_worse_reconstruction_cannot_lower_the_judged_round_trip_ratio():
    """Study 02: the target is judged on the round trip against the twin's reconstruction MSE (a fixed
    reference). A fine-tune that reconstructs 3x worse halves its own-reconstruction ratio, not this one."""
    from rotcore.studies import eqvae

    anchors = {a.metric: a for a in eqvae.ANCHORS}
    judged = anchors["ft_roundtrip_vs_twin_ratio_max"]
    assert judged.threshold is not None and anchors["ft_roundtrip_ratio_max"].threshold is None
    twin_mse, roundtrip = 0.002, 0.0066
    for own_mse in (0.002, 0.006):  # the worse model's own ratio drops from 3.3 to 1.1
        m = {"ft_roundtrip_ratio_max": roundtrip / own_mse, "ft_roundtrip_vs_twin_ratio_max": roundtrip / twin_mse,
             "twin_recon_psnr_db": 27.0}
        assert judged.assess(m) == "no"
    collapsed_twin = {"ft_roundtrip_vs_twin_ratio_max": 1.0, "twin_recon_psnr_db": 12.0}
    assert judged.assess(collapsed_twin).startswith("not measurable")


def test_every_relative_target_names_its_floor():
    from rotcore.studies import STUDIES

    relative = ("drop", "gap", "ratio", "cost")
    for info in STUDIES.values():
        for a in info.load().ANCHORS:
            if a.kind == "result" and a.threshold is not None and any(w in a.metric for w in relative):
                assert a.floor is not None, f"{a.metric}: a relative target needs an absolute floor"


@pytest.mark.parametrize("seed", range(20))
def test_intervals_stay_in_range_and_contain_their_estimate(seed):
    from rotcore.metrics import wilson_ci95

    rng = np.random.default_rng(seed)
    p = rng.uniform(0.9, 1.0)
    seeds = np.clip(100 * rng.normal(p, 0.05, size=3), 0, 100)  # 3 seeds of a percentage near 100
    row = with_ci("acc_pct", *mean_ci95(seeds))
    lo, hi = row["acc_pct_ci95"]
    assert 0 <= lo <= row["acc_pct"] <= hi <= 100
    outcomes = rng.random(200) < p
    est, (lo, hi), n, method = wilson_ci95(outcomes)
    assert 0 <= lo <= est <= hi <= 100 and n == 200 and "Wilson" in method
    r2 = with_ci("probe_r2_x", *mean_ci95(rng.normal(0.9, 0.2, size=3)))
    assert r2["probe_r2_x_ci95"][1] <= 1 and r2["probe_r2_x_ci95"][0] <= r2["probe_r2_x"]
    boot = with_ci("b_pct", *bootstrap_ci95(100.0 * outcomes, n_boot=300, seed=seed))
    assert 0 <= boot["b_pct_ci95"][0] <= boot["b_pct"] <= boot["b_pct_ci95"][1] <= 100


def test_a_clipped_interval_says_so_and_wilson_matches_a_known_value():
    from rotcore.metrics import wilson_ci95

    row = with_ci("acc_pct", 84.1, (63.9, 104.3), 3, "Student t over 3 seeds")
    assert row["acc_pct_ci95"] == [63.9, 100.0]
    assert row["acc_pct_ci_method"] == "Student t over 3 seeds, clipped to the range [0, 100]"
    # Wilson score interval for 8 of 10 (a textbook value): [49.0, 94.3] %
    est, (lo, hi), *_ = wilson_ci95(8, 10)
    assert est == 80.0 and lo == pytest.approx(49.02, abs=0.01) and hi == pytest.approx(94.33, abs=0.01)
    assert wilson_ci95(0, 10)[1][0] == 0.0 and wilson_ci95(10, 10)[1][1] == pytest.approx(100.0)


def test_the_summary_never_shows_an_interval_outside_its_range():
    """A results file written before intervals were bounded (104.3 %) is shown without its interval."""
    from rotcore.report import with_ci_text

    a = Anchor("gen_digit_acc_seen_pct_x", "acc", None, "s", "≥ 90", "higher", 90.0, unit=" %", fmt="{:.1f}")
    old = {"gen_digit_acc_seen_pct_x": 84.1, "gen_digit_acc_seen_pct_x_ci95": [63.9, 104.3]}
    assert "104.3" not in with_ci_text(a, old) and "not shown" in with_ci_text(a, old)
    new = {**old, "gen_digit_acc_seen_pct_x_ci95": [63.9, 100.0]}
    assert "63.9 %–100.0 %" in with_ci_text(a, new)


def test_committed_intervals_with_a_recorded_method_are_in_range():
    """Every interval in results/*.json written by the current code (it records its method) lies inside its
    quantity's range and contains its estimate."""
    from rotcore.results import value_range

    for path in sorted((paths.project_root() / "results").glob("*.json")):
        m = json.loads(path.read_text())["metrics"]
        for key, ci in m.items():
            name = key[: -len("_ci95")]
            if not key.endswith("_ci95") or ci is None or f"{name}_ci_method" not in m:
                continue
            low, high = value_range(name)
            assert low <= ci[0] and ci[1] <= high, f"{path.name}: {key} = {ci}"
            if m.get(name) is not None and "ratio" not in name and "gap_db" not in name:
                assert ci[0] <= m[name] <= ci[1], f"{path.name}: {key} = {ci} does not contain {m[name]}"
