"""Is a study's page stale? Its sources compared with the commit recorded in its results JSON.

A study's sources are its notebook (``notebooks/NN_name.py``), its study module and every ``rotcore`` module
those import, followed transitively by a static scan of ``import rotcore...`` / ``from rotcore... import``
lines (no code is imported or run). The book build (``book/_ext/rotbook_stale.py``) puts a note on the page
and in the summary of every study whose sources changed since the commit that produced its results.

Not guaranteed: imports made dynamically (``importlib``), data files and dependency versions are not
followed; a change that does not alter the numbers (a comment) still marks the page stale.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rotcore import paths

_SHA = re.compile(r"^[0-9a-f]{4,40}$")


@dataclasses.dataclass(frozen=True)
class Staleness:
    """``commit`` as recorded; ``changed``: repository-relative sources changed since it; ``reason``: why the
    page is stale ("" when it is current)."""

    commit: str
    changed: tuple[str, ...] = ()
    reason: str = ""

    @property
    def stale(self) -> bool:
        return bool(self.reason)


def _module_file(name: str, root: Path) -> Path | None:
    base = root / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _rotcore_imports(path: Path, root: Path) -> set[Path]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[Path] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]  # `from rotcore import paths`
        for name in names:
            if name == "rotcore" or name.startswith("rotcore."):
                f = _module_file(name, root)
                if f is not None:
                    found.add(f)
    return found


def source_files(entry_points: Iterable[Path], root: Path) -> list[Path]:
    """``entry_points`` and every ``rotcore`` module they import, transitively (static scan), sorted."""
    todo = [Path(p) for p in entry_points]
    seen: set[Path] = set()
    while todo:
        p = todo.pop()
        if p in seen or not p.is_file():
            continue
        seen.add(p)
        if p.suffix == ".py":
            todo.extend(_rotcore_imports(p, root) - seen)
    return sorted(seen)


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)


def check(commit: str, files: Sequence[Path], root: Path) -> Staleness:
    """Compare ``files`` (in the working tree of the git checkout ``root``) with ``commit``.

    Stale when the commit is ``unknown`` or stamped ``+dirty`` (the code that ran cannot be recovered), when it
    is not in this repository's history, or when any file differs from that commit (untracked files count).
    """
    commit = (commit or "unknown").strip()
    if commit.endswith("+dirty"):
        return Staleness(commit, reason="it was run from a checkout with uncommitted changes")
    if not _SHA.match(commit):
        return Staleness(commit, reason="the commit that produced it is not known")
    rel = [str(Path(f).resolve().relative_to(root.resolve())) for f in files]
    try:
        if _git(root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
            return Staleness(commit, reason="that commit is not in this repository's history")
        diff = _git(root, "diff", "--name-only", commit, "--", *rel)
        untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--", *rel)
    except (OSError, subprocess.SubprocessError):
        return Staleness(commit, reason="git is not available to compare its sources")
    if diff.returncode != 0:
        return Staleness(commit, reason="git could not compare its sources with that commit")
    changed = tuple(sorted(set(diff.stdout.split()) | set(untracked.stdout.split())))
    if changed:
        return Staleness(commit, changed, reason="the study's code has changed since")
    return Staleness(commit)


def study_sources(notebook: Path, module: str, root: Path) -> list[Path]:
    """A study's notebook, its study module (dotted name) and the rotcore modules they import."""
    entry = [notebook]
    f = _module_file(module, root)
    if f is not None:
        entry.append(f)
    return source_files(entry, root)


def study_staleness(info: Any, record: Mapping[str, Any], root: Path | None = None) -> Staleness:
    """:func:`check` for a study (a :class:`rotcore.studies.StudyInfo`) and its results record."""
    root = Path(root) if root is not None else paths.project_root()
    files = study_sources(root / "notebooks" / f"{info.name}.py", info.module, root)
    return check(str(record.get("git_commit", "unknown")), files, root)


def note(number: str, s: Staleness, *, profile: str) -> str:
    """The sentence shown on a stale page and in its summary section (Markdown)."""
    text = f"Produced at commit `{s.commit}`; {s.reason}"
    if s.changed:
        shown = ", ".join(f"`{c}`" for c in s.changed[:6]) + (f" and {len(s.changed) - 6} more"
                                                             if len(s.changed) > 6 else "")
        text += f" ({shown})"
    return text + f": rerun with `rotbook run --only {number} --profile {profile}`."
