"""The built site: the plain book build from a clean checkout, and the browser check (rotcore.sitecheck)."""

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rotcore import runner, sitecheck
from rotcore.studies import get

ROOT = Path(__file__).resolve().parents[1]
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def _browser_or_skip():
    pytest.importorskip("selenium")
    if not (os.access(sitecheck.CHROMIUM, os.X_OK) and os.access(sitecheck.CHROMEDRIVER, os.X_OK)):
        pytest.skip("Debian's chromium and chromium-driver are not installed (bash scripts/browser_setup.sh)")


def test_browser_check_catches_a_broken_image_a_js_error_and_a_dead_link(tmp_path):
    _browser_or_skip()
    site = tmp_path / "html"
    site.mkdir()
    (site / "dot.png").write_bytes(PNG)
    (site / "index.html").write_text('<html><body><h1>Home</h1><img src="dot.png"><a href="good.html">ok</a>'
                                     '</body></html>')
    (site / "good.html").write_text('<html><body><h1>Good</h1><img src="dot.png">'
                                    '<div class="animation"><img src="dot.png"><input type="range"><button>▶</button>'
                                    '</div><a href="index.html#top">home</a></body></html>')
    (site / "broken.html").write_text('<html><body><h1>Broken</h1><img src="missing.png">'
                                      '<script>notDefinedAnywhere();</script><a href="gone.html">dead</a>'
                                      '<div class="cell_output"><div class="output text_html"></div></div>'
                                      '<div class="animation"><img src="dot.png"></div></body></html>')
    failures = sitecheck.check_site(site, shots=tmp_path / "shots", log=lambda *_: None)
    text = "\n".join(failures)
    assert all(f.startswith(("broken.html: ", "gone.html: ")) for f in failures), text
    assert "broken.html: image not loaded: missing.png" in text
    assert "broken.html: JS console error:" in text and "notDefinedAnywhere" in text
    assert "gone.html: link target answers 404" in text
    assert "broken.html: empty output box" in text
    assert "broken.html: animation 1 lacks its controls" in text
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == ["broken.png", "good.png", "index.png"]


def _render(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(markdown)


def test_summary_numbers_are_compared_with_the_results_json(tmp_path, monkeypatch):
    """A synthetic results JSON for study 05 -> the summary page -> parsed back, number by number."""
    monkeypatch.setenv("ROTBOOK_ROOT", str(tmp_path))
    info = get("05")
    anchors = info.load().ANCHORS
    metrics = {a.metric: 1.2345 + i for i, a in enumerate(anchors)}
    first = next(a for a in anchors if a.kind == "result")
    metrics[f"{first.metric}_ci95"] = [1.0, 1.5]
    metrics[f"{first.metric}_n"] = 3
    rdir = tmp_path / "_build" / "runs" / "smoke" / "results"
    rdir.mkdir(parents=True)
    (rdir / f"{info.name}.json").write_text(json.dumps(
        {"study": info.name, "profile": "smoke", "device": "CPU", "git_commit": "abc123", "created": "now",
         "runtime_s": 6.0, "metrics": metrics}))
    from rotcore import paths

    page = _render(runner.summary_markdown("smoke"))
    assert sitecheck.check_summary(page, paths.results_dir) == []
    shown = first.format(metrics[first.metric])
    wrong = page.replace(shown, first.format(metrics[first.metric] + 0.5), 1)
    assert wrong != page
    failures = sitecheck.check_summary(wrong, paths.results_dir)
    assert len(failures) == 1 and failures[0].startswith("summary.html: study 05:") and first.label in failures[0]


def test_title_word():
    assert sitecheck.title_word("Angle regression over the full circle") == "regression"
    assert sitecheck.title_word("A rotation-invariant embedding: are 6s just rotated 9s?") == "invariant"


@pytest.mark.slow
def test_plain_book_build_from_a_clean_checkout(tmp_path):
    """`jupyter-book build book/`, exactly as a reader types it in a fresh clone: no warning, a summary page."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    exe = Path(sys.executable).with_name("jupyter-book")
    env = {k: v for k, v in os.environ.items() if k not in ("ROTBOOK_BOOK_PROFILE", "ROTBOOK_ROOT")}
    env["PYTHONPATH"] = str(clone)  # the clone's rotcore, whatever the venv's editable install points at
    proc = subprocess.run([str(exe) if exe.exists() else shutil.which("jupyter-book"), "build", "book/"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "WARNING" not in out, [line for line in out.splitlines() if "WARNING" in line]
    assert (clone / "book" / "_build" / "html" / "summary.html").exists()
    assert "Summary of results" in (clone / "book" / "_build" / "html" / "summary.html").read_text()


def test_summary_labels_match_through_smart_quotes():
    """Sphinx renders a typed apostrophe as ’: the check must still find the row."""
    from rotcore.sitecheck import _plain

    assert _plain("the seed\u2019s \u201cleaky\u201d split") == "the seed's \"leaky\" split"
