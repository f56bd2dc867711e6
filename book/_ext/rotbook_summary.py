"""Sphinx extension: write ``summary.md`` from ``results/*.json`` when the book is built.

So the plain ``jupyter-book build book/`` (no runner) has the summary page, always current with the committed
results. The runner's staged builds of other profiles set ``ROTBOOK_BOOK_PROFILE`` to show theirs.
"""

import os
from pathlib import Path


def write_summary(app) -> None:
    from rotcore import paths, runner

    profile = os.environ.get("ROTBOOK_BOOK_PROFILE", paths.PUBLISHED_PROFILE)
    text = runner.summary_markdown(profile)
    target = Path(app.srcdir) / "summary.md"
    if not target.exists() or target.read_text() != text:  # unchanged files keep their mtime: no rebuild
        target.write_text(text)


def setup(app):
    app.connect("builder-inited", write_summary)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
