
import json
import os
import shutil

import pytest

from rotcore import paths, runner
from rotcore.config import ConfigError
from rotcore.studies import STUDIES, get


def test_parse_overrides():
    assert runner.parse_overrides(["a=1", "b.c=[0, 90]", "d=text", "e=true"]) == \
        {"a": 1, "b.c": [0, 90], "d": "text", "e": True}
    with pytest.raises(ConfigError, match="key=value"):
        runner.parse_overrides(["oops"])


def test_bad_parameters_stop_before_any_work(monkeypatch, capsys):
    executed = []
    monkeypatch.setattr(runner, "execute", lambda *a, **k: executed.append(a))
    for argv, message in [
        (["run", "--profile", "turbo"], "unknown profile 'turbo'; choose one of: smoke, cpu, gpu"),
        (["run", "--only", "05", "-p", "upright_fit.epochs=-2"], "epochs must be >= 0"),
        (["run", "--only", "05", "-p", "bogus=1"], "unknown override key 'bogus'"),
        (["run", "--only", "05", "-p", "test_angles_deg=[0, 360]"], "out of range"),
        (["run", "--only", "42"], "unknown study '42'"),
        (["run", "--only", "05", "--profile", "full"], "use `cpu`"),
    ]:
        assert runner.main(argv) == 2
        assert message in capsys.readouterr().err
    assert executed == []


def test_a_published_run_without_native_bf16_says_it_will_not_compute_as_the_pages(tmp_path, monkeypatch, capsys):
    published = paths.PUBLISHED_PROFILE
    note = runner.precision_note(published, auto_precision="fp32")
    assert "native bf16" in note and "trains in fp32" in note
    assert runner.precision_note(published, auto_precision="bf16") is None
    assert runner.precision_note("smoke", auto_precision="fp32") is None
    # `rotbook run` prints it before the first notebook starts, on stderr
    monkeypatch.setattr(runner, "execute", lambda *a, **k: None)
    monkeypatch.setattr(paths, "studies_dir", lambda profile: tmp_path)  # where a published run clears its placeholder
    monkeypatch.setattr(runner, "precision_note", lambda profile: f"NOTE {profile}")
    assert runner.main(["run", "--only", "05", "--profile", published, "--no-book", "--no-speed-check"]) == 0
    assert f"NOTE {published}" in capsys.readouterr().err


def test_a_published_run_on_a_cpu_first_estimates_each_runtime_here(tmp_path, monkeypatch, capsys):
    """Before a `cpu` run on a CPU, `rotbook run` probes the training speed and scales each selected page's runtime
    by it (on stderr); `--no-speed-check` and the other profiles skip the probe."""
    import torch

    from rotcore import speed, train

    monkeypatch.setattr(train, "default_device", lambda: torch.device("cpu"))  # as on a machine without CUDA
    monkeypatch.setattr(runner, "execute", lambda *a, **k: None)
    monkeypatch.setattr(runner, "precision_note", lambda profile: None)
    monkeypatch.setattr(paths, "studies_dir", lambda profile: tmp_path)
    rdir = tmp_path / "results"
    rdir.mkdir()
    monkeypatch.setattr(paths, "results_dir", lambda profile: rdir)
    probes = []
    monkeypatch.setattr(speed, "probe", lambda: probes.append(1) or {k: v / 2 for k, v in speed.REFERENCE_IMG_S.items()})
    (rdir / f"{get('05').name}.json").write_text(json.dumps(
        {"study": get("05").name, "profile": "cpu", "device": speed.REFERENCE_DEVICE, "git_commit": "abc",
         "created": "now", "runtime_s": 60 * 30.0, "metrics": {}}))
    assert runner.main(["run", "--only", "05", "--only", "03", "--profile", "cpu", "--no-book"]) == 0
    err = capsys.readouterr().err
    assert "05: 60-60 min (its page: 30.0 min; budget 40) · OVER its budget here" in err
    assert "03: no published page to scale" in err and probes == [1]
    (rdir / f"{get('05').name}.json").write_text("{}")  # a broken results file: the estimate is skipped, not the run
    assert runner.main(["run", "--only", "05", "--profile", "cpu", "--no-book"]) == 0
    assert "speed check skipped: " in capsys.readouterr().err and probes == [1, 1]
    assert runner.main(["run", "--only", "05", "--profile", "cpu", "--no-book", "--no-speed-check"]) == 0
    assert runner.main(["run", "--only", "05", "--profile", "smoke", "--no-book"]) == 0
    assert "speed check" not in capsys.readouterr().err and probes == [1, 1]
    monkeypatch.setattr(train, "default_device", lambda: torch.device("cuda"))  # a GPU: the CPU budgets say nothing
    assert runner.main(["run", "--only", "05", "--profile", "cpu", "--no-book"]) == 0
    assert probes == [1, 1]

def test_registry_matches_notebooks():
    for info in STUDIES.values():
        assert runner.notebook_source(info).exists()
        assert (runner.notebook_source(info).with_suffix(".ipynb")).exists(), "paired .ipynb missing"
        module = info.load()
        assert module.STUDY == info.name and {"smoke", "cpu", "gpu"} <= set(module.PROFILES)
    assert get("05").name == get("05_rotation_invariance").name


def test_summary_from_results(tmp_path, monkeypatch):
    monkeypatch.setenv("ROTBOOK_ROOT", str(tmp_path))
    text = runner.summary_markdown("smoke")
    assert "Not yet run" in text and "warning" in text
    assert "warning" not in runner.summary_markdown("cpu")  # the published profile


def test_runtime_table_against_the_budgets():
    """The published summary ends with each study's runtime against its budget and the report's total."""
    assert runner.runtime_markdown({}) == []
    minutes = {"01": 20.0, "02": 26.0, "03": 10.0, "04": 10.0, "05": 39.0}  # 02 over its 25; total 105 > 100
    runtime_s = {number: 60 * m for number, m in minutes.items()}
    rows = {line.split(" | ")[0].strip("| *").split(" · ")[0]: line for line in runner.runtime_markdown(runtime_s)
            if line.startswith("| ") and not line.startswith("| study")}
    assert rows["01"].endswith("| 20.0 | ≤ 25 | yes |") and rows["02"].endswith("| 26.0 | ≤ 25 | no |")
    assert rows["05"].endswith("| 39.0 | ≤ 40 | yes |")
    assert rows["the report"].endswith("| **105.0** | ≤ 100 | no |")
    del runtime_s["03"]
    assert "not every study has run" in runner.runtime_markdown(runtime_s)[-2]


def test_summary_ends_with_the_runtimes_of_its_results(tmp_path, monkeypatch):
    """summary_markdown feeds runtime_markdown the runtimes of the results it read (published profile only)."""
    monkeypatch.setenv("ROTBOOK_ROOT", str(tmp_path))
    rdir = paths.results_dir("cpu")
    rdir.mkdir(parents=True)
    info = STUDIES["02"]
    (rdir / f"{info.name}.json").write_text(json.dumps(
        {"study": info.name, "profile": "cpu", "device": "CPU", "git_commit": "abc", "created": "now",
         "runtime_s": 60 * 26.0, "metrics": {}}))
    assert runner.summary_markdown("cpu").rstrip().endswith(
        "\n".join(runner.runtime_markdown({"02": 60 * 26.0})).rstrip())
    assert "Runtime of the published run" not in runner.summary_markdown("smoke")


def test_paired_notebooks_are_in_sync_and_output_free():
    """notebooks/NN.py is the source; the committed .ipynb (for Colab) has the same cells and no outputs."""
    import jupytext
    import nbformat

    for info in STUDIES.values():
        py = runner.notebook_source(info)
        ipynb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
        source = jupytext.read(py)
        assert [c.source for c in ipynb.cells] == [c.source for c in source.cells], f"{py.name}: run jupytext --sync"
        assert all(not c.get("outputs") for c in ipynb.cells if c.cell_type == "code"), f"{py.name}: outputs committed"
        assert sum("parameters" in c.metadata.get("tags", []) for c in source.cells) == 1


def test_papermill_sees_every_notebooks_parameters():
    """``papermill --help-notebook`` lists a notebook's parameters only if it can parse the parameters cell: a
    comment it cannot read (``<= 40 min`` once did) hides ``profile`` and makes ``-p profile cpu`` warn
    "Passed unknown parameter"."""
    from papermill.inspection import inspect_notebook

    for info in STUDIES.values():
        params = inspect_notebook(str(runner.notebook_source(info).with_suffix(".ipynb")))
        assert {"profile", "overrides"} <= set(params), f"{info.name}: papermill sees only {sorted(params)}"
        assert params["profile"]["default"] == '"smoke"'


def test_committed_anchors_file_is_current_and_the_summary_needs_no_training_stack():
    """book/anchors.json holds every study's anchors as plain data (``rotbook anchors`` writes it), so the book
    build reads them without importing torch or escnn; it must equal what the study modules say."""
    import subprocess
    import sys

    stored = json.loads((paths.project_root() / runner.ANCHORS_FILE).read_text())
    assert stored == runner.anchors_data(), "run `rotbook anchors`"
    code = ("import sys; from rotcore import runner; text = runner.summary_markdown('cpu'); "
            "assert '## 05' in text; print(sorted(m for m in ('torch', 'escnn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _fake_papermill(monkeypatch, page, *, fail=False):
    import nbformat
    import papermill

    seen = {}

    def execute_notebook(nb, out, **kw):
        seen["page_during_run"] = page.read_text()  # the committed page is untouched while the study runs
        seen["out"] = out
        new = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", metadata={"tags": ["injected-parameters"]})])
        nbformat.write(new, out)
        if fail:
            raise RuntimeError("cell failed")

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    return seen


@pytest.mark.parametrize("fail", [False, True])
def test_a_rerun_leaves_the_tracked_page_alone_until_it_ends(tmp_path, monkeypatch, fail):
    # overwriting the committed page during the run would make results.git_commit stamp the run "+dirty"; a
    # failed run never replaces it: its notebook is kept beside it as a hidden .failed file
    info = get("05")
    monkeypatch.setattr(paths, "studies_dir", lambda profile: tmp_path)
    monkeypatch.setattr(paths, "profile_root", lambda profile: tmp_path / "_build")
    page = tmp_path / f"{info.name}.ipynb"
    page.write_text("the committed page")
    seen = _fake_papermill(monkeypatch, page, fail=fail)
    if fail:
        with pytest.raises(runner.StudyFailed, match="cell failed") as err:
            runner.execute(info, "cpu", {}, log=lambda *a: None)
        assert err.value.notebook == tmp_path / f".{info.name}.failed.ipynb" and err.value.notebook.exists()
        assert page.read_text() == "the committed page"
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted([page.name, err.value.notebook.name])
    else:
        assert runner.execute(info, "cpu", {}, log=lambda *a: None) == page
        assert "injected-parameters" in page.read_text()  # replaced at the end
        assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [page.name]
    assert seen["page_during_run"] == "the committed page" and seen["out"] != str(page)


def test_a_failed_published_run_leaves_the_checkout_clean(tmp_path, monkeypatch):
    """`rotbook run --profile cpu` of a study whose notebook fails: the committed page and results JSON stay as
    they are (git status clean, the failed notebook ignored), and the CLI names the kept notebook and cell."""
    import subprocess

    import nbformat
    import papermill

    repo = tmp_path / "repo"
    info = get("05")
    (repo / "book" / "studies").mkdir(parents=True)
    (repo / "results").mkdir()
    (repo / "notebooks").mkdir()
    shutil.copy(paths.project_root() / ".gitignore", repo / ".gitignore")
    shutil.copy(runner.notebook_source(info), repo / "notebooks" / f"{info.name}.py")
    page = repo / "book" / "studies" / f"{info.name}.ipynb"
    page.write_text("the committed page")
    (repo / "results" / f"{info.name}.json").write_text("{}")
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True, check=True).stdout  # noqa: E731
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "published")
    monkeypatch.setenv("ROTBOOK_ROOT", str(repo))

    def execute_notebook(nb, out, **kw):
        # a study that publishes its results and then fails in a later cell
        from rotcore.results import write_results

        write_results(info.name, {"x": 1.0}, profile="cpu", runtime_s=1.0)
        cell = nbformat.v4.new_code_cell("1/0", execution_count=7,
                                         outputs=[nbformat.v4.new_output("error", ename="ZeroDivisionError",
                                                                         evalue="division by zero", traceback=[])])
        nbformat.write(nbformat.v4.new_notebook(cells=[cell]), out)
        raise papermill.PapermillExecutionError(0, 7, "ZeroDivisionError", "division by zero", [])

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    code = runner.main(["run", "--profile", "cpu", "--only", "05", "--no-book", "--no-speed-check"])
    assert code == 1
    assert git("status", "--porcelain") == ""
    assert page.read_text() == "the committed page"
    assert (repo / "results" / f"{info.name}.json").read_text() == "{}"
    assert (repo / "book" / "studies" / f".{info.name}.failed.ipynb").exists()


def test_a_run_without_data_fails_before_any_notebook_starts(tmp_path, capsys):
    """No MNIST on disk and no network: the CLI stops in validate() with a message saying what to set."""
    import subprocess
    import sys

    env = {**os.environ, "ROTBOOK_DATA": str(tmp_path / "nothing"), "ROTBOOK_CACHE": str(tmp_path / "cache"),
           "ROTBOOK_OFFLINE": "1", "ROTBOOK_RUNS": str(tmp_path / "runs")}
    out = subprocess.run([sys.executable, "-m", "rotcore.runner", "run", "--profile", "cpu", "--only", "05",
                          "--no-book"], capture_output=True, text=True, env=env, timeout=120,
                         cwd=paths.project_root())
    assert out.returncode == 2, out.stderr
    assert "MNIST not found" in out.stderr and "ROTBOOK_DATA" in out.stderr
    assert "executing" not in out.stdout  # no notebook started


def test_data_root_defaults_to_shared_data_beside_the_checkout(tmp_path, monkeypatch):
    root = tmp_path / "checkout"
    (root / "rotcore").mkdir(parents=True)
    monkeypatch.setenv("ROTBOOK_ROOT", str(root))
    monkeypatch.delenv("ROTBOOK_DATA", raising=False)
    assert paths.data_root() == root / "data"
    (tmp_path / "shared" / "data" / "MNIST").mkdir(parents=True)
    assert paths.data_root() == (tmp_path / "shared" / "data").resolve()
    monkeypatch.setenv("ROTBOOK_DATA", str(tmp_path / "elsewhere"))
    assert paths.data_root() == (tmp_path / "elsewhere").resolve()


def test_status_names_each_page_that_is_stale_missing_or_over_budget(tmp_path, monkeypatch, capsys):
    """`rotbook status` reads each results JSON and asks git whether the study's sources changed since its
    commit: a current page, one from an unknown commit, one over its budget, one never run, one whose notebook
    changed since (named), and exit code 1 because not all are current."""
    import subprocess

    monkeypatch.setenv("ROTBOOK_ROOT", str(tmp_path))
    monkeypatch.setattr(runner, "precision_note", lambda profile: None)

    def git(*args):
        return subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True)

    git("init", "-q")
    nb = {n: tmp_path / "notebooks" / f"{i.name}.py" for n, i in STUDIES.items()}
    nb["01"].parent.mkdir()
    for f in nb.values():
        f.write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pages")
    sha = git("rev-parse", "--short=12", "HEAD").stdout.strip()
    rdir = paths.results_dir("cpu")
    rdir.mkdir()
    runs = {"01": (sha, 20.0), "02": ("unknown", 20.0), "03": (sha, 26.0), "05": (sha, 39.0)}
    for number, (commit, minutes) in runs.items():
        (rdir / f"{STUDIES[number].name}.json").write_text(json.dumps(
            {"study": STUDIES[number].name, "profile": "cpu", "device": "CPU (2 cores)", "git_commit": commit,
             "created": "now", "runtime_s": 60 * minutes, "metrics": {}}))
    nb["05"].write_text("x = 2\n")

    status = {s.number: s for s in runner.page_status("cpu")}
    assert status["01"].ok and status["01"].budget_min == 25 and not status["01"].stale
    assert "not known" in status["02"].staleness.reason and not status["02"].ok
    assert status["03"].over_budget and not status["03"].stale and not status["03"].ok
    assert not status["04"].ran and not status["04"].ok
    assert status["05"].staleness.changed == ("notebooks/05_rotation_invariance.py",) and not status["05"].over_budget

    assert runner.main(["status"]) == 1
    out = capsys.readouterr().out
    lines = {line[:2]: line for line in out.splitlines() if line[:2].isdigit()}
    assert lines["01"].endswith("· current") and "20.0 min of 25" in lines["01"]
    assert "OVER BUDGET" in lines["03"] and "not run on cpu: rotbook run --only 04 --profile cpu" in lines["04"]
    assert lines["05"].endswith("· STALE")
    assert "`notebooks/05_rotation_invariance.py`" in out and "rotbook run --only 05 --profile cpu" in out
    nb["05"].write_text("x = 1\n")
    for info in STUDIES.values():  # every page current and within its budget
        (rdir / f"{info.name}.json").write_text(json.dumps(
            {"study": info.name, "profile": "cpu", "device": "CPU", "git_commit": sha, "created": "now",
             "runtime_s": 60 * 20.0, "metrics": {}}))
    assert runner.main(["status", "--profile", "cpu"]) == 0
    assert runner.main(["status", "--profile", "turbo"]) == 2
    assert "unknown profile 'turbo'" in capsys.readouterr().err
    assert runner.main(["status", "--profile", "full"]) == 2
    assert "`full` profile was split in two" in capsys.readouterr().err
