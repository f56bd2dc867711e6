"""Every study notebook executes on the smoke profile, and the book builds with -W from those outputs."""

import json
import shutil

import nbformat
import pytest

from rotcore import paths, runner
from rotcore.results import REQUIRED_KEYS
from rotcore.studies import STUDIES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed(tmp_path_factory, mnist_available):
    mp = pytest.MonkeyPatch()
    mp.setenv("ROTBOOK_RUNS", str(tmp_path_factory.mktemp("runs")))  # train from scratch, not from a cache
    out = {}
    try:
        for info in STUDIES.values():
            out[info.number] = runner.execute(info, "smoke", {}, log=lambda *a: None)
        yield out
    finally:
        mp.undo()


@pytest.mark.parametrize("number", list(STUDIES))
def test_notebook_runs_on_smoke(executed, number):
    info = STUDIES[number]
    nb = nbformat.read(executed[number], as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    rec = json.loads((paths.results_dir("smoke") / f"{info.name}.json").read_text())
    assert set(REQUIRED_KEYS) <= set(rec) and rec["profile"] == "smoke" and rec["metrics"]
    for anchor in info.load().ANCHORS:
        assert anchor.metric in rec["metrics"], f"headline metric {anchor.metric} missing"
    assert any(c.cell_type == "markdown" and "colab.research.google.com" in c.source for c in nb.cells)
    figures = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures, "the executed notebook has no figures (is the kernel's matplotlib backend inline?)"


def test_book_builds_with_warnings_as_errors(executed):
    html = runner.build_book("smoke", log=lambda *a: None)
    for info in STUDIES.values():
        page = (html / "studies" / f"{info.name}.html").read_text()
        assert "glue" not in page.lower() or "{glue" not in page  # every glue reference was resolved
    assert (html / "summary.html").exists()
    shutil.rmtree(paths.profile_root("smoke") / "book", ignore_errors=True)
