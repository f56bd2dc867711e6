"""Sphinx extension: write ``summary.md`` from ``results/*.json`` when the book is built, and mark stale pages.

So the plain ``jupyter-book build book/`` (no runner) has the summary page, always current with the committed
results. The runner's staged builds of other profiles set ``ROTBOOK_BOOK_PROFILE`` to show theirs.

Stale pages: where a study's sources (its notebook, study module and the rotcore modules they import) changed
since the commit recorded in its results JSON (:mod:`rotcore.staleness`), a warning admonition is put at the
top of the study's page and of its section in the summary.
"""

import html
import os
import re
from pathlib import Path

_CODE = re.compile(r"`([^`]*)`")


def _profile() -> str:
    from rotcore import paths

    return os.environ.get("ROTBOOK_BOOK_PROFILE", paths.PUBLISHED_PROFILE)


def stale_notes(profile: str) -> dict[str, str]:
    """Study number -> Markdown note, for every study whose results exist and whose sources changed since."""
    from rotcore import paths, staleness
    from rotcore.results import read_results
    from rotcore.studies import STUDIES

    notes = {}
    for info in STUDIES.values():
        path = paths.results_dir(profile) / f"{info.name}.json"
        if path.exists():
            s = staleness.study_staleness(info, read_results(path))
            if s.stale:
                notes[info.number] = staleness.note(info.number, s, profile=profile)
    return notes


def with_notes(summary: str, notes: dict[str, str]) -> str:
    """Insert each note as a warning right under its study's ``## NN · title`` heading."""
    lines = summary.split("\n")
    out = []
    for line in lines:
        out.append(line)
        number = line[3:5] if line.startswith("## ") else None
        if number in notes:
            out += ["", ":::{warning}", notes[number], ":::"]
    return "\n".join(out)


def write_summary(app) -> None:
    from rotcore import runner
    from rotcore.studies import STUDIES

    profile = _profile()
    notes = stale_notes(profile)
    app.rotbook_stale = {f"studies/{STUDIES[n].name}": text for n, text in notes.items()}
    text = with_notes(runner.summary_markdown(profile), notes)
    target = Path(app.srcdir) / "summary.md"
    if not target.exists() or target.read_text() != text:  # unchanged files keep their mtime: no rebuild
        target.write_text(text)


def _md_to_html(text: str) -> str:
    return _CODE.sub(r"<code>\1</code>", html.escape(text, quote=False))


def notes_changed(app, env, added, changed, removed) -> list[str]:
    """Pages whose stale note appeared, changed or went away are rebuilt even when their source did not."""
    previous = getattr(env, "rotbook_stale", {})
    current = getattr(app, "rotbook_stale", {})
    env.rotbook_stale = current
    return [d for d in set(previous) | set(current) if previous.get(d) != current.get(d) and d in env.found_docs]


def dedupe_scripts(context) -> None:
    """Drop repeated <script> entries: sphinx-thebe's inline ``const THEBE_JS_URL = ...`` is added twice under
    jupyter-book 1.0.4 / Sphinx 7.4, and the second declaration is a JavaScript SyntaxError on every page."""
    seen, kept = set(), []
    for js in context.get("script_files", []):
        key = (getattr(js, "filename", str(js)) or "", repr(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(js)
    if "script_files" in context:
        context["script_files"] = kept


def page_context(app, pagename, templatename, context, doctree) -> None:
    """Every page: no duplicate scripts. A stale study page: its note first."""
    dedupe_scripts(context)
    note = getattr(app, "rotbook_stale", {}).get(pagename)
    if note and "body" in context:
        context["body"] = ('<div class="admonition warning rotbook-stale"><p class="admonition-title">'
                           f"This page is stale</p><p>{_md_to_html(note)}</p></div>\n" + context["body"])


def setup(app):
    app.connect("builder-inited", write_summary)
    app.connect("env-get-outdated", notes_changed)
    app.connect("html-page-context", page_context)
    return {"version": "2", "parallel_read_safe": True, "parallel_write_safe": True}
