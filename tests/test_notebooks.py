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
    assert not stray_reprs(nb), f"cells print bare object reprs (end them with ';'): {stray_reprs(nb)}"


def stray_reprs(nb) -> list[str]:
    """Outputs that are only an object's repr ("<ErrorbarContainer object of 3 artists>"): a plotting call that
    ended a cell without ``;``. Outputs with a rich form (Markdown, HTML, images) are fine."""
    import re

    bad = []
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []):
            data = o.get("data", {})
            text = "".join(data.get("text/plain", ""))
            if set(data) == {"text/plain"} and re.search(r"^<[\w.]+ (object|at 0x)", text.strip()):
                bad.append(f"cell {i}: {text.strip()[:60]}")
    return bad


def test_stray_repr_detector():
    import nbformat

    out = nbformat.v4.new_output("execute_result", data={"text/plain": "<ErrorbarContainer object of 3 artists>"})
    rich = nbformat.v4.new_output("execute_result", data={"text/plain": "<IPython.core.display.Markdown object>",
                                                          "text/markdown": "**x**"})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[out]),
                                         nbformat.v4.new_code_cell("y", outputs=[rich])])
    assert stray_reprs(nb) == ["cell 0: <ErrorbarContainer object of 3 artists>"]


def test_book_builds_with_warnings_as_errors(executed):
    html = runner.build_book("smoke", log=lambda *a: None)
    for info in STUDIES.values():
        page = (html / "studies" / f"{info.name}.html").read_text()
        assert "glue" not in page.lower() or "{glue" not in page  # every glue reference was resolved
    assert (html / "summary.html").exists()
    shutil.rmtree(paths.profile_root("smoke") / "book", ignore_errors=True)
