import subprocess
from pathlib import Path

import pytest

from rotcore import staleness
from rotcore.studies import StudyInfo


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A tiny checkout: a notebook importing a study module, which imports one rotcore module of two."""
    files = {
        "notebooks/01_demo.py": "from rotcore import report\nfrom rotcore.studies import demo\n",
        "rotcore/__init__.py": "",
        "rotcore/report.py": "X = 1\n",
        "rotcore/studies/__init__.py": "",
        "rotcore/studies/demo.py": "import torch\nfrom rotcore.helpers.maths import f\n",
        "rotcore/helpers/__init__.py": "",
        "rotcore/helpers/maths.py": "def f():\n    return 1\n",
        "rotcore/unrelated.py": "Y = 2\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return tmp_path


INFO = StudyInfo("01", "01_demo", "rotcore.studies.demo", "Demo")


def test_sources_follow_rotcore_imports_transitively(repo):
    files = staleness.study_sources(repo / "notebooks/01_demo.py", INFO.module, repo)
    assert [str(f.relative_to(repo)) for f in files] == [
        "notebooks/01_demo.py", "rotcore/__init__.py", "rotcore/helpers/maths.py", "rotcore/report.py", "rotcore/studies/__init__.py",
        "rotcore/studies/demo.py"]


def test_fresh_then_stale_after_a_change_to_an_imported_module(repo):
    commit = _git(repo, "rev-parse", "--short=12", "HEAD")
    assert not staleness.study_staleness(INFO, {"git_commit": commit}, repo).stale
    (repo / "rotcore/unrelated.py").write_text("Y = 3\n")  # not a source of the study
    assert not staleness.study_staleness(INFO, {"git_commit": commit}, repo).stale
    (repo / "rotcore/helpers/maths.py").write_text("def f():\n    return 2\n")
    s = staleness.study_staleness(INFO, {"git_commit": commit}, repo)
    assert s.stale and s.changed == ("rotcore/helpers/maths.py",)
    # committed changes count too, and so does a new, untracked module the study now imports
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "second")
    (repo / "rotcore/extra.py").write_text("Z = 1\n")
    (repo / "rotcore/studies/demo.py").write_text("from rotcore import extra\nfrom rotcore.helpers.maths import f\n")
    s = staleness.study_staleness(INFO, {"git_commit": commit}, repo)
    assert s.changed == ("rotcore/extra.py", "rotcore/helpers/maths.py", "rotcore/studies/demo.py")
    text = staleness.note("01", s, profile="cpu")
    assert text.startswith(f"Produced at commit `{commit}`; the study's code has changed since")
    assert text.endswith("rerun with `rotbook run --only 01 --profile cpu`.")


@pytest.mark.parametrize("commit, reason", [("abc1234+dirty", "uncommitted"), ("unknown", "not known"),
                                            ("", "not known"), ("deadbeef1234", "not in this repository")])
def test_unrecoverable_commits_are_stale(repo, commit, reason):
    s = staleness.study_staleness(INFO, {"git_commit": commit}, repo)
    assert s.stale and reason in s.reason


def test_book_extension_puts_the_note_under_the_study_heading():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "book" / "_ext" / "rotbook_summary.py"
    spec = importlib.util.spec_from_file_location("rotbook_summary", path)
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    text = ext.with_notes("# S\n\n## 01 · A\n\nbody\n\n## 02 · B\n", {"02": "Produced at commit `x`; …"})
    assert text.endswith("## 02 · B\n\n:::{warning}\nProduced at commit `x`; …\n:::\n")
    assert "## 01 · A\n\nbody" in text
